"""Load stage: build the eager model from an allowed factory (with weights), or load a
TorchScript file. Nothing is imported before the allow-list has been checked, and weights are
read only as tensors (safetensors, or torch.load with weights_only=True)."""

from __future__ import annotations

import importlib
import traceback
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from exportq.errors import (
    ModelFailed,
    ModelImportFailed,
    ModuleNotAllowed,
    TorchScriptInvalid,
    WeightsInvalid,
)
from exportq.settings import Settings
from exportq.spec import CallableModel, TorchScriptModel

STAGE = "load"
TAIL_CHARS = 4000


def traceback_tail(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return text[-TAIL_CHARS:]


def check_allowed(model: CallableModel, settings: Settings) -> None:
    if not settings.module_allowed(model.module):
        raise ModuleNotAllowed(
            f"module {model.module!r} is not allowed on this worker; allowed prefixes: "
            f"{', '.join(settings.allowed_modules) or '(none)'} (EXPORTQ_ALLOWED_MODULES)",
            stage=STAGE,
        )


def import_factory(model: CallableModel) -> Callable[..., Any]:
    module_name, _, attr = model.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelImportFailed(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}",
            stage=STAGE,
            log_tail=traceback_tail(exc),
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelImportFailed(f"{module_name!r} has no callable {attr!r}", stage=STAGE)
    return factory


def build_model(model: CallableModel, settings: Settings, weights: Path | None) -> torch.nn.Module:
    check_allowed(model, settings)
    factory = import_factory(model)
    try:
        module = factory(**model.kwargs)
    except Exception as exc:
        raise ModelFailed(
            f"{model.target}({_kwargs_text(model.kwargs)}) raised {type(exc).__name__}: {exc}",
            stage=STAGE,
            log_tail=traceback_tail(exc),
        ) from exc
    if not isinstance(module, torch.nn.Module):
        raise ModelFailed(
            f"{model.target} returned a {type(module).__name__}, not a torch.nn.Module", stage=STAGE
        )
    if weights is not None:
        load_weights(module, weights)
    return module.eval()


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """safetensors or a torch.save'd state_dict; never unpickles arbitrary objects."""
    with open(path, "rb") as f:
        head = f.read(8)
    if zipfile.is_zipfile(path) or head[:1] == b"\x80":
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsInvalid(
                f"the weights file could not be read with weights_only=True: {_first_line(exc)}",
                stage=STAGE,
            ) from exc
    else:
        try:
            from safetensors.torch import load_file

            state = load_file(str(path))
        except Exception as exc:
            raise WeightsInvalid(
                "the weights file is neither safetensors nor a torch.save state_dict: "
                f"{_first_line(exc)}",
                stage=STAGE,
            ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsInvalid(
            "the weights file must hold a state_dict: names -> tensors", stage=STAGE
        )
    return state


def load_weights(module: torch.nn.Module, path: Path) -> None:
    state = read_state_dict(path)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsInvalid(
            "the weights do not match the model: "
            + "; ".join(
                part
                for part in (
                    f"missing keys: {_few(missing)}" if missing else "",
                    f"unexpected keys: {_few(unexpected)}" if unexpected else "",
                )
                if part
            ),
            stage=STAGE,
        )
    wrong = [
        f"{k}: weights {list(state[k].shape)} vs model {list(v.shape)}"
        for k, v in expected.items()
        if state[k].shape != v.shape
    ]
    if wrong:
        raise WeightsInvalid(f"shape mismatch: {_few(wrong)}", stage=STAGE)
    module.load_state_dict(state, strict=True)


def _few(items: list[str], limit: int = 8) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def load_torchscript(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    try:
        module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        raise TorchScriptInvalid(
            f"the TorchScript file could not be loaded: {_first_line(exc)}",
            stage=STAGE,
            log_tail=traceback_tail(exc),
        ) from exc
    return module.eval()


def load_model(
    ref: CallableModel | TorchScriptModel,
    settings: Settings,
    blob_path: Callable[[str], Path],
    device: torch.device,
) -> torch.nn.Module:
    if isinstance(ref, TorchScriptModel):
        return load_torchscript(blob_path(ref.blob), device)
    weights = blob_path(ref.weights) if ref.weights else None
    return build_model(ref, settings, weights).to(device)
