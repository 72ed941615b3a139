"""worker heartbeats, step progress in task rows, idempotency keys, one set per primary

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_workers_heartbeat", "workers", ["heartbeat_at"])
    op.add_column(
        "tasks", sa.Column("step_number", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("tasks", sa.Column("step_count", sa.Integer(), nullable=True))
    op.add_column("tasks", sa.Column("description", sa.Text(), nullable=True))
    op.create_table(
        "idempotency_keys",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "key"),
    )
    op.create_index("ix_idempotency_created", "idempotency_keys", ["created"])
    op.create_index(
        "ux_replica_sets_primary",
        "replica_sets",
        ["primary_id"],
        unique=True,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ux_replica_sets_primary", table_name="replica_sets")
    op.drop_index("ix_idempotency_created", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_column("tasks", "description")
    op.drop_column("tasks", "step_count")
    op.drop_column("tasks", "step_number")
    op.drop_index("ix_workers_heartbeat", table_name="workers")
    op.drop_table("workers")
