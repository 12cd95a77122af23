"""Settings: one object read from the environment (prefix EXPORTQ_), built once.

The embedded defaults run everything on one machine with nothing configured: SQLite and
artifacts under ./var/, the broker on the local Redis.

Artifacts on S3 or an S3-compatible service (MinIO, Ceph...): EXPORTQ_ARTIFACTS_URL=
s3://bucket/prefix, and for a service other than AWS its address in EXPORTQ_S3_ENDPOINT_URL
(e.g. http://minio:9000). Credentials and region are not exportq settings: boto3 reads them
from the standard AWS chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
AWS_PROFILE and ~/.aws, or an instance/pod role), so secrets stay out of exportq's config.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from exportq.tiers import GpuInfo

DEFAULT_ALLOWED_MODULES = ("exportq.samples",)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXPORTQ_", extra="ignore", frozen=True)

    database_url: str = "sqlite:///./var/exportq.db"
    broker_url: str = "redis://127.0.0.1:6379/0"
    artifacts_url: str = "./var/artifacts"
    # The S3-compatible service an s3:// artifacts URL lives on; AWS itself when unset.
    s3_endpoint_url: str | None = None
    work_dir: str = "./var/work"

    # Module prefixes a `callable` target may be imported from, comma-separated in the env.
    allowed_modules: Annotated[tuple[str, ...], NoDecode] = DEFAULT_ALLOWED_MODULES

    # Celery task results and custom states; the broker's Redis when unset.
    result_backend_url: str | None = None
    # The longest a job may run (a job's timeout_s is capped to it); Redis redelivers an unacked
    # message only after the visibility timeout, which must stay above this.
    max_job_timeout_s: int = Field(default=3600, gt=0)
    fleet_ttl_s: int = Field(default=30, gt=0)
    # A submitted job no live worker could serve: `refuse` answers 409 (the submitter may ask
    # to queue it anyway); `queue` accepts it with a notice, for fleets that scale from zero.
    admission: Literal["refuse", "queue"] = "refuse"
    # A worker's GPUs as JSON (`[{"name": "H200", "memory_gb": 141, "compute_capability": 9.0}]`),
    # one per visible GPU in CUDA_VISIBLE_DEVICES order; overrides detection by nvidia-smi.
    worker_gpus: list[GpuInfo] | None = None

    # Reliability (docs/RELIABILITY.md). A running job holds a lease of `lease_s` that its
    # worker renews every lease_s / 3; a job whose lease ran out lost its worker and runs
    # again, until it has been claimed `max_attempts` times: then it fails `worker_lost`.
    lease_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    # The reconciler (in the API, or `exportq reconciler`) wakes every `reconcile_interval_s`:
    # it publishes the outbox, recovers expired leases, and dispatches again a queued job
    # whose message was published over `redispatch_after_s` ago and is no longer in Redis.
    reconcile_interval_s: float = Field(default=5.0, gt=0)
    redispatch_after_s: float = Field(default=30.0, ge=0)
    reconciler_in_api: bool = True
    # Redis hands an unacked message to another worker after this long; by default 10 minutes
    # above the longest job. Set lower only to test that a job outliving it still runs once.
    broker_visibility_timeout_s: int | None = Field(default=None, gt=0)

    url: str = "http://127.0.0.1:8000"
    token: str | None = None
    flower_basic_auth: str | None = None
    # TLS to Redis: used when a broker or result backend URL is `rediss://` (a password goes
    # in the URL: rediss://:secret@host:6380/0). `required` checks the server's certificate
    # against `redis_ssl_ca_certs` (a CA bundle file; the system's when unset).
    redis_ssl_cert_reqs: Literal["required", "optional", "none"] = "required"
    redis_ssl_ca_certs: str | None = None

    # Bounds on what one job may ask for, so a typo cannot take a worker down.
    max_input_elements: int = Field(default=1 << 26, gt=0)
    max_upload_bytes: int = Field(default=1 << 30, gt=0)
    pnnx_timeout_s: float = Field(default=600.0, gt=0)
    ncnn_timeout_s: float = Field(default=300.0, gt=0)

    @field_validator("allowed_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def visibility_timeout_s(self) -> int:
        return self.broker_visibility_timeout_s or self.max_job_timeout_s + 600

    def module_allowed(self, module: str) -> bool:
        """True when `module` is one of the allowed prefixes or below one of them."""
        return any(module == p or module.startswith(p + ".") for p in self.allowed_modules)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
