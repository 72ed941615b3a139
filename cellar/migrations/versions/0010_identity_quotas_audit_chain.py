"""identity (projects, users, roles, application credentials, revocations), quotas, and
the audit trail's chain

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 12:00:00.000000
"""

import types

import sqlalchemy as sa
from alembic import op

from cellar.audit import GENESIS, digest

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

AUDIT_COLUMNS = (
    ("user_id", sa.String(length=64)),
    ("user_name", sa.String(length=255)),
    ("roles", sa.String(length=255)),
    ("app_credential_id", sa.String(length=64)),
    ("remote_addr", sa.String(length=64)),
    ("method", sa.String(length=8)),
    ("route", sa.String(length=512)),
    ("outcome", sa.String(length=32)),
    ("prev_hash", sa.String(length=64)),
    ("row_hash", sa.String(length=64)),
)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("domain_id", sa.String(length=64), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ux_projects_name", "projects", ["domain_id", "name"], unique=True)
    op.create_table(
        "users",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("default_project_id", sa.String(length=64), nullable=True),
        sa.Column("domain_id", sa.String(length=64), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ux_users_name", "users", ["domain_id", "name"], unique=True)
    op.create_table(
        "roles",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ux_roles_name", "roles", ["name"], unique=True)
    op.create_table(
        "role_assignments",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("role_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["role_id"], ["roles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "project_id", "role_id"),
    )
    op.create_index("ix_role_assignments_project", "role_assignments", ["project_id"])
    op.create_table(
        "application_credentials",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.String(length=255), nullable=False),
        sa.Column("role_ids", sa.JSON(), nullable=False),
        sa.Column("unrestricted", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_application_credentials_user_id", "application_credentials", ["user_id"])
    op.create_index(
        "ux_app_credentials_name", "application_credentials", ["user_id", "name"], unique=True
    )
    op.create_table(
        "revocations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("issued_before", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_revocations_lookup", "revocations", ["kind", "value"])
    epoch = op.create_table(
        "identity_epoch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(epoch, [{"id": 1, "value": 0}])
    op.create_table(
        "project_quotas",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("resource", sa.String(length=32), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "resource"),
    )
    op.create_table(
        "quota_locks",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("touched_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("project_id"),
    )
    _chain_audit()


def _chain_audit() -> None:
    """The audit trail's new columns, and the rows already there chained in their order."""
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        for name, kind in AUDIT_COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=False, server_default=""))
    op.create_index("ux_audit_seq", "audit_events", ["seq"], unique=True)
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_checkpoints_seq", "audit_checkpoints", ["seq"])
    bind = op.get_bind()
    events = sa.table(
        "audit_events",
        *(sa.column(n, sa.String()) for n in ("id", "project_id", "request_id", "action",
                                              "target_type", "target_id")),
        sa.column("seq", sa.BigInteger()),
        sa.column("details", sa.JSON()),
        sa.column("created", sa.DateTime()),
        *(sa.column(n, kind) for n, kind in AUDIT_COLUMNS),
    )  # fmt: skip
    rows = bind.execute(sa.select(events).order_by(events.c.created, events.c.id)).mappings()
    previous, place = GENESIS, 0
    for found in list(rows):
        place += 1
        row = types.SimpleNamespace(**{**found, "seq": place})
        row.row_hash = digest(previous, row)  # type: ignore[arg-type]
        bind.execute(
            events.update()
            .where(events.c.id == row.id)
            .values(seq=place, prev_hash=previous, row_hash=row.row_hash)
        )
        previous = row.row_hash
    head = sa.table("audit_head", sa.column("id"), sa.column("seq"), sa.column("row_hash"))
    bind.execute(head.insert().values(id=1, seq=place, row_hash=previous if place else ""))


def downgrade() -> None:
    op.drop_index("ix_audit_checkpoints_seq", table_name="audit_checkpoints")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_head")
    op.drop_index("ux_audit_seq", table_name="audit_events")
    with op.batch_alter_table("audit_events") as batch:
        for name, _ in AUDIT_COLUMNS:
            batch.drop_column(name)
        batch.drop_column("seq")
    for table in ("quota_locks", "project_quotas", "identity_epoch", "revocations", "application_credentials",
                  "role_assignments", "roles", "users", "projects"):  # fmt: skip
        op.drop_table(table)
