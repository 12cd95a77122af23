"""The spec hash: equal for the same export however it is written, different otherwise."""

from __future__ import annotations

import json
from typing import Any

from db.hashing import canonical_json, spec_document, spec_hash
from exportq.spec import JobSpec


def spec(**overrides: Any) -> JobSpec:
    doc: dict[str, Any] = {
        "model": {"kind": "callable", "target": "exportq.samples:tiny_cnn"},
        "inputs": [{"name": "x", "shape": [1, 3, 8, 8]}],
    }
    doc.update(overrides)
    return JobSpec.model_validate(doc)


def test_hash_is_sha256_hex() -> None:
    digest = spec_hash(spec())
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_defaults_written_out_hash_the_same() -> None:
    explicit = spec(
        method="trace",
        device="cpu",
        convert={"targets": ["pnnx", "ncnn"], "fp16": True, "optlevel": 2},
        validate={"trials": 3, "mode": "strict", "seed": 0},
    )
    assert spec_hash(explicit) == spec_hash(spec())


def test_key_order_does_not_matter() -> None:
    a = JobSpec.model_validate_json(
        '{"inputs": [{"shape": [1, 3], "name": "x"}],'
        ' "model": {"target": "exportq.samples:m", "kind": "callable"}}'
    )
    b = JobSpec.model_validate_json(
        '{"model": {"kind": "callable", "target": "exportq.samples:m"},'
        ' "inputs": [{"name": "x", "shape": [1, 3]}]}'
    )
    assert spec_hash(a) == spec_hash(b)


def test_scheduling_fields_do_not_change_the_hash() -> None:
    base = spec_hash(spec())
    assert spec_hash(spec(priority=9, timeout_s=60, labels={"team": "vision"})) == base


def test_output_fields_change_the_hash() -> None:
    base = spec_hash(spec())
    changed = [
        spec(inputs=[{"name": "x", "shape": [1, 3, 8, 9]}]),
        spec(method="script"),
        spec(device="cuda"),
        spec(convert={"fp16": False}),
        spec(validate={"seed": 1}),
        spec(model={"kind": "callable", "target": "exportq.samples:tiny_cnn", "kwargs": {"w": 2}}),
        spec(model={"kind": "torchscript", "blob": "sha256:" + "0" * 64}),
    ]
    hashes = {spec_hash(s) for s in changed}
    assert base not in hashes and len(hashes) == len(changed)


def test_document_round_trips_and_uses_the_alias() -> None:
    s = spec(validate={"mode": "warn"})
    doc = spec_document(s)
    assert doc["validate"]["mode"] == "warn" and "validate_" not in doc
    assert JobSpec.model_validate(json.loads(json.dumps(doc))) == s


def test_canonical_json_is_compact_and_sorted() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'
