"""The tables: jobs, the blobs users upload, and the artifacts a job produced.

Timestamps are timezone-aware UTC on every backend (`UTCDateTime` restores the zone SQLite
drops). JSON columns are JSONB on PostgreSQL. Every constraint and index gets its name from the
naming convention, so migrations can refer to them on every backend.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC; naive values are refused."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite keeps no zone; we only ever store UTC
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="status",
        ),
        sa.Index(None, "owner", "created_at"),
        sa.UniqueConstraint("owner", "idempotency_key"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_job_id)
    owner: Mapped[str] = mapped_column(sa.String(128))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(128))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    spec_hash: Mapped[str] = mapped_column(sa.String(64), index=True)
    device: Mapped[str] = mapped_column(sa.String(16))
    queue: Mapped[str] = mapped_column(sa.String(64))
    priority: Mapped[int] = mapped_column(default=5)
    status: Mapped[str] = mapped_column(sa.String(16), index=True, default=JobStatus.QUEUED)
    stage: Mapped[str | None] = mapped_column(sa.String(32))
    attempts: Mapped[int] = mapped_column(default=0)
    claim_token: Mapped[int] = mapped_column(default=0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    error_log_tail: Mapped[str | None] = mapped_column(sa.Text)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    worker: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Reliability (docs/RELIABILITY.md): a running job's claim is a lease that its worker's
    # heartbeats extend; a reconciler recovers jobs whose lease expired.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    last_signal: Mapped[str | None] = mapped_column(sa.String(32))
    # Submission: the hash of the request body an Idempotency-Key was first used with, and the
    # finished job whose artifacts this one reuses instead of exporting again.
    request_hash: Mapped[str | None] = mapped_column(sa.String(64))
    cached_from: Mapped[str | None] = mapped_column(sa.String(32), index=True)

    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="job",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Artifact.id",
    )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.status} owner={self.owner!r}>"


class Blob(Base):
    """An uploaded file, named by its content address `sha256:<hex>`."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(sa.String(71), primary_key=True)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Dispatch(Base):
    """The outbox: a message to publish for a job, written in the job's own transaction; a
    relay publishes it and stamps `published_at`, so a job is never committed without one."""

    __tablename__ = "dispatches"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    queue: Mapped[str] = mapped_column(sa.String(64))
    priority: Mapped[int] = mapped_column(default=5)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)


class Token(Base):
    """A bearer token: only its sha256 is stored; `owner` is whom it acts as."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, default=new_job_id)
    name: Mapped[str] = mapped_column(sa.String(128))
    owner: Mapped[str] = mapped_column(sa.String(128), index=True)
    admin: Mapped[bool] = mapped_column(default=False)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BlobKey(Base):
    """An Idempotency-Key used on an upload: the same key must bring the same bytes."""

    __tablename__ = "blob_keys"
    __table_args__ = (sa.UniqueConstraint("owner", "key"),)

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    owner: Mapped[str] = mapped_column(sa.String(128))
    key: Mapped[str] = mapped_column(sa.String(128))
    digest: Mapped[str] = mapped_column(sa.String(71))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Artifact(Base):
    """One output file of a job; the bytes live in the artifact store under `sha256`."""

    __tablename__ = "artifacts"
    __table_args__ = (sa.UniqueConstraint("job_id", "name"),)

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(32))
    name: Mapped[str] = mapped_column(sa.String(255))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    sha256: Mapped[str] = mapped_column(sa.String(71))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="artifacts")

    def __repr__(self) -> str:
        return f"<Artifact {self.job_id}/{self.name} {self.kind}>"
