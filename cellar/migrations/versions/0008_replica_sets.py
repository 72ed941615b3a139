"""replica sets, replication events, instances' replication fields

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 11:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replica_sets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("primary_id", sa.String(length=36), nullable=False),
        sa.Column("datastore", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("auto_failover", sa.Boolean(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("rw_port", sa.Integer(), nullable=True),
        sa.Column("ro_port", sa.Integer(), nullable=True),
        sa.Column("down_since", sa.DateTime(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_replica_sets_live", "replica_sets", ["deleted_at"])
    op.create_table(
        "replication_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("set_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("old_primary_id", sa.String(length=36), nullable=False),
        sa.Column("new_primary_id", sa.String(length=36), nullable=True),
        sa.Column("detected_at", sa.DateTime(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("promoted_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("behind_bytes", sa.BigInteger(), nullable=True),
        sa.Column("behind_seconds", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_replication_events_set", "replication_events", ["set_id", "started_at"]
    )
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("replica_set_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("replica_of_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("replication", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("replication")
        batch.drop_column("replica_of_id")
        batch.drop_column("replica_set_id")
    op.drop_index("ix_replication_events_set", table_name="replication_events")
    op.drop_table("replication_events")
    op.drop_index("ix_replica_sets_live", table_name="replica_sets")
    op.drop_table("replica_sets")
