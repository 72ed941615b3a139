"""network access rules and the TLS requirement of instances

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 20:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN: a batch rebuild would drop the view_changes triggers on SQLite
    op.add_column("instances", sa.Column("access", sa.JSON(), nullable=True))
    op.add_column(
        "instances",
        sa.Column("tls_required", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("instances", "tls_required")
    op.drop_column("instances", "access")
