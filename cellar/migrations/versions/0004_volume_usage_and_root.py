"""volume usage and root enable on instances

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 08:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("volume_used_bytes", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("volume_total_bytes", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("root_enabled_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("root_enabled_at")
        batch.drop_column("volume_total_bytes")
        batch.drop_column("volume_used_bytes")
