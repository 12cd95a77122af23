"""Settings: one object read from the environment (prefix EXPORTQ_), built once.

The embedded defaults run everything on one machine with nothing configured: SQLite and
artifacts under ./var/, the broker on the local Redis.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_ALLOWED_MODULES = ("exportq.samples",)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXPORTQ_", extra="ignore", frozen=True)

    database_url: str = "sqlite:///./var/exportq.db"
    broker_url: str = "redis://127.0.0.1:6379/0"
    artifacts_url: str = "./var/artifacts"
    work_dir: str = "./var/work"

    # Module prefixes a `callable` target may be imported from, comma-separated in the env.
    allowed_modules: Annotated[tuple[str, ...], NoDecode] = DEFAULT_ALLOWED_MODULES

    # Celery task results and custom states; the broker's Redis when unset.
    result_backend_url: str | None = None
    # The longest a job may run (a job's timeout_s is capped to it); Redis redelivers an unacked
    # message only after the visibility timeout, which must stay above this.
    max_job_timeout_s: int = Field(default=3600, gt=0)
    fleet_ttl_s: int = Field(default=30, gt=0)

    url: str = "http://127.0.0.1:8000"
    token: str | None = None
    flower_basic_auth: str | None = None

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
        return self.max_job_timeout_s + 600

    def module_allowed(self, module: str) -> bool:
        """True when `module` is one of the allowed prefixes or below one of them."""
        return any(module == p or module.startswith(p + ".") for p in self.allowed_modules)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    return Settings()
