"""published engine logs, and the samples of each instance's engine counters

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 19:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "log_publications",
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("published", sa.BigInteger(), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("location", sa.String(length=512), nullable=True),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "name"),
    )
    op.create_table(
        "metric_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("taken", sa.DateTime(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_metric_samples_instance", "metric_samples", ["instance_id", "taken"])
    op.create_index("ix_metric_samples_taken", "metric_samples", ["taken"])


def downgrade() -> None:
    op.drop_index("ix_metric_samples_taken", table_name="metric_samples")
    op.drop_index("ix_metric_samples_instance", table_name="metric_samples")
    op.drop_table("metric_samples")
    op.drop_table("log_publications")
