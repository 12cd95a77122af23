"""TLS options for Redis, when a URL says `rediss://`.

Celery refuses a `rediss://` URL unless it is told how to check certificates, and redis-py
refuses TLS keywords on a plain connection, so every client of Redis (the Celery apps, the
API's and the workers' fleet registry) takes its options from here, per URL.
"""

from __future__ import annotations

import ssl
from typing import Any

from exportq.settings import Settings

CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}


def is_tls(url: str | None) -> bool:
    return url is not None and url.lower().startswith("rediss://")


def celery_ssl(settings: Settings) -> dict[str, Any]:
    """`broker_use_ssl` / `redis_backend_use_ssl`: what kombu and Celery's Redis backend take."""
    options: dict[str, Any] = {"ssl_cert_reqs": CERT_REQS[settings.redis_ssl_cert_reqs]}
    if settings.redis_ssl_ca_certs:
        options["ssl_ca_certs"] = settings.redis_ssl_ca_certs
    return options


def client_options(settings: Settings, url: str) -> dict[str, Any]:
    """Keyword arguments for `redis.Redis.from_url(url, ...)`: TLS ones for `rediss://` only."""
    if not is_tls(url):
        return {}
    return celery_ssl(settings)
