"""the feed of changes to the rows that instance views read, written by triggers

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 17:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

from cellar import view_changes

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "view_changes",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("xid", sa.BigInteger(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sqlite_autoincrement=True,  # a seq is never given twice, so it orders the commits
    )
    op.create_index("ix_view_changes_xid", "view_changes", ["xid"])
    op.create_index("ix_view_changes_created", "view_changes", ["created"])
    if op.get_bind().dialect.name == "postgresql":
        statements = view_changes.postgres_triggers()
    else:
        statements = view_changes.sqlite_triggers()
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    for statement in view_changes.drop_triggers(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table("view_changes")
