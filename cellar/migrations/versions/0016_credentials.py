"""time-limited debug credentials, and project settings

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 23:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("access", sa.String(length=8), nullable=False),
        sa.Column("databases", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=512), nullable=False),
        sa.Column("ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("requested_by_id", sa.String(length=64), nullable=False),
        sa.Column("approved_by", sa.String(length=255), nullable=True),
        sa.Column("ended_by", sa.String(length=255), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("first_used_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("fault", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_credentials_project_id", "credentials", ["project_id"])
    op.create_index("ix_credentials_instance_id", "credentials", ["instance_id"])
    op.create_index("ix_credentials_state", "credentials", ["state", "expires_at"])
    op.create_table(
        "project_settings",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("approve_write_credentials", sa.Boolean(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("project_id"),
    )


def downgrade() -> None:
    op.drop_table("project_settings")
    op.drop_index("ix_credentials_state", table_name="credentials")
    op.drop_index("ix_credentials_instance_id", table_name="credentials")
    op.drop_index("ix_credentials_project_id", table_name="credentials")
    op.drop_table("credentials")
