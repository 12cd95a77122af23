"""Reliability and access: the dispatch outbox, job leases, idempotency and reuse columns,
bearer tokens, upload idempotency keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

Frozen like 0001: its types are spelled out, not imported from db.models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[Any]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "dispatches",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        _when("created_at"),
        _when("published_at", nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_dispatches_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatches")),
    )
    op.create_index(op.f("ix_dispatches_job_id"), "dispatches", ["job_id"])
    op.create_index(op.f("ix_dispatches_published_at"), "dispatches", ["published_at"])
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        _when("created_at"),
        _when("revoked_at", nullable=True),
        _when("last_used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
    )
    op.create_index(op.f("ix_tokens_owner"), "tokens", ["owner"])
    op.create_table(
        "blob_keys",
        sa.Column("id", _id(), autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blob_keys")),
        sa.UniqueConstraint("owner", "key", name=op.f("uq_blob_keys_owner_key")),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(_when("lease_expires_at", nullable=True))
        batch.add_column(sa.Column("last_signal", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("cached_from", sa.String(length=32), nullable=True))
        batch.create_index(batch.f("ix_jobs_lease_expires_at"), ["lease_expires_at"])
        batch.create_index(batch.f("ix_jobs_cached_from"), ["cached_from"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index(batch.f("ix_jobs_cached_from"))
        batch.drop_index(batch.f("ix_jobs_lease_expires_at"))
        batch.drop_column("cached_from")
        batch.drop_column("request_hash")
        batch.drop_column("last_signal")
        batch.drop_column("lease_expires_at")
    op.drop_table("blob_keys")
    op.drop_index(op.f("ix_tokens_owner"), table_name="tokens")
    op.drop_table("tokens")
    op.drop_index(op.f("ix_dispatches_published_at"), table_name="dispatches")
    op.drop_index(op.f("ix_dispatches_job_id"), table_name="dispatches")
    op.drop_table("dispatches")
