"""the container name a backup strategy was given (Trove's swift_container)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 18:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("backup_strategies") as batch:
        batch.add_column(sa.Column("container", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("backup_strategies") as batch:
        batch.drop_column("container")
