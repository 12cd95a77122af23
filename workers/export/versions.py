"""Versions of the tools an export depends on; part of every report and of the reuse key."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib import metadata

import exportq


@lru_cache(maxsize=1)
def tool_versions() -> dict[str, str]:
    versions = {"exportq": exportq.__version__, "python": platform.python_version()}
    for dist in ("torch", "pnnx", "ncnn"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "missing"
    return versions
