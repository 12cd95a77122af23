"""Job specs from command-line options, shared by `exportq export` (in-process) and
`exportq submit` (remote), so both read the same options the same way; and the one rendering
of a spec's validation errors, shared with the API."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from exportq.errors import SpecInvalid
from exportq.shapes import parse_shape
from exportq.spec import JobSpec


def parse_inputs(values: tuple[str, ...]) -> list[dict[str, Any]]:
    """`[NAME=]SHAPE[:DTYPE]` options -> InputSpec dicts (names default to in0, in1, ...)."""
    inputs = []
    for i, value in enumerate(values):
        name, sep, rest = value.partition("=")
        if not sep:
            name, rest = f"in{i}", value
        dims, dtype = parse_shape(rest)
        inputs.append({"name": name, "shape": dims, **({"dtype": dtype} if dtype else {})})
    return inputs


def parse_kwargs(values: tuple[str, ...]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise SpecInvalid(f"--kwarg {value!r}: write KEY=VALUE (VALUE as JSON, or a string)")
        try:
            kwargs[key] = json.loads(raw)
        except ValueError:
            kwargs[key] = raw
    return kwargs


def build_spec(
    target: str | None,
    *,
    inputs: tuple[str, ...],
    inputs2: tuple[str, ...],
    kwargs: tuple[str, ...],
    method: str,
    device: str,
    fp16: bool,
    targets: tuple[str, ...],
    mode: str,
    trials: int,
    blobs: dict[str, str | None],
    priority: int | None = None,
    gpu_min_memory: float | None = None,
    gpu_min_cc: float | None = None,
) -> JobSpec:
    """The JobSpec the CLI options describe; `blobs` holds already stored digests."""
    if bool(target) == bool(blobs.get("torchscript")):
        raise SpecInvalid("give either a TARGET (pkg.module:factory) or --torchscript FILE")
    if blobs.get("torchscript"):
        model: dict[str, Any] = {"kind": "torchscript", "blob": blobs["torchscript"]}
    else:
        model = {"kind": "callable", "target": target, "kwargs": parse_kwargs(kwargs)}
        if blobs.get("weights"):
            model["weights"] = blobs["weights"]
    declared = parse_inputs(inputs)
    raw: dict[str, Any] = {
        "model": model,
        "method": method,
        "inputs": declared,
        "device": device,
        "convert": {"fp16": fp16, **({"targets": list(targets)} if targets else {})},
        "validate": {"mode": mode, "trials": trials},
    }
    if inputs2:
        raw["dynamic"] = [d["shape"] for d in parse_inputs(inputs2)]
    if blobs.get("samples"):
        raw["samples"] = blobs["samples"]
    if priority is not None:
        raw["priority"] = priority
    if gpu_min_memory is not None or gpu_min_cc is not None:
        raw["gpu"] = {"min_memory_gb": gpu_min_memory, "min_compute_capability": gpu_min_cc}
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecInvalid(validation_text(exc)) from exc


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Each error as `{"field": "inputs.0.shape", "message": ...}` (the field path joined)."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "spec", "message": err["msg"]}
        for err in exc.errors()
    ]


def validation_text(exc: ValidationError) -> str:
    return "; ".join(f"{e['field']}: {e['message']}" for e in validation_errors(exc))
