#!/usr/bin/env python3
"""The images' HEALTHCHECK, installed as `exportq-healthcheck`. Exits 0 when healthy, 1 if not.

    exportq-healthcheck http URL   the URL answers 2xx (the API's /readyz, Flower's /healthcheck)
    exportq-healthcheck worker     this container's Celery worker answers a ping

A worker's node name is `<device>@<hostname>` (`cpu@3f2a...`, `cuda0@3f2a...`), and a container's
hostname is its own, so "a node whose name ends in @<this hostname> answered" means this
container's worker is alive and consuming its control queue: a hung or disconnected worker does
not answer. Standard library only for `http`; `worker` uses the image's Celery app (no torch).
"""

from __future__ import annotations

import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping

TIMEOUT_S = 5.0


def http_ok(url: str, timeout_s: float = TIMEOUT_S) -> bool:
    """True when `url` answers with a 2xx status (urlopen raises on 4xx/5xx)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def answered(replies: Iterable[Mapping[str, object]], hostname: str) -> bool:
    """True when one of Celery's ping replies (`[{node: {"ok": "pong"}}, ...]`) comes from a node
    on `hostname`."""
    suffix = "@" + hostname
    return any(node.endswith(suffix) for reply in replies for node in reply)


def worker_ok(timeout_s: float = TIMEOUT_S) -> bool:
    """True when this host's worker answers a broadcast ping on the broker."""
    from workers.celery_app import create_celery_app

    app = create_celery_app()
    try:
        replies = app.control.ping(timeout=timeout_s)
    except Exception as exc:  # broker unreachable, auth refused...: unhealthy, say why
        print(f"exportq-healthcheck: ping failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    return answered(replies or [], socket.gethostname())


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "http":
        ok = http_ok(argv[1])
    elif argv == ["worker"]:
        ok = worker_ok()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if not ok:
        print(f"exportq-healthcheck: {' '.join(argv)}: unhealthy", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
