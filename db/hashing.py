"""The spec hash: what makes two submissions "the same export".

The hash covers the canonical JSON of every field that changes the artifacts: defaults filled
in, keys sorted, no whitespace. Scheduling fields (`priority`, `timeout_s`, `labels`) do not
change what is produced, so they are left out: resubmitting with another label or priority
finds the finished job. Blob references are content addresses, so the hash also pins the bytes.
Tool versions are not in the spec; whoever reuses a finished job compares its report's versions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from exportq.spec import JobSpec

SCHEDULING_FIELDS = frozenset({"priority", "timeout_s", "labels"})


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, compact separators, non-ASCII kept as is."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def spec_document(spec: JobSpec) -> dict[str, Any]:
    """The spec as stored: JSON-safe, aliases used (`validate`), defaults filled in."""
    return spec.model_dump(mode="json", by_alias=True)


def spec_hash(spec: JobSpec) -> str:
    """sha256 hex of the canonical JSON of the output-relevant part of `spec`."""
    doc = {k: v for k, v in spec_document(spec).items() if k not in SCHEDULING_FIELDS}
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()
