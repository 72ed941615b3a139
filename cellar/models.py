"""Cellar's metadata: instances, the tasks that change them, their secrets and the audit trail."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cellar.status import BackupStatus, InstanceStatus, OperatingStatus, TaskState


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Instance(Base):
    __tablename__ = "instances"
    __table_args__ = (Index("ix_instances_project", "project_id", "deleted_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    flavor_id: Mapped[str] = mapped_column(String(36))
    datastore: Mapped[str] = mapped_column(String(64))
    datastore_version: Mapped[str] = mapped_column(String(64))
    volume_size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default=InstanceStatus.BUILD.value)
    operating_status: Mapped[str] = mapped_column(String(32), default=OperatingStatus.UNKNOWN.value)
    fault: Mapped[str | None] = mapped_column(Text, nullable=True)
    fault_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    agent_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    health_checked_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    configuration_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    volume_used_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    volume_total_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    root_enabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    purpose: Mapped[str | None] = mapped_column(String(16), nullable=True)  # "verify": scratch
    replica_set_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    replica_of_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # its primary
    replication: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # last seen
    access: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # is_public, cidrs
    tls_required: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class ReplicaSet(Base):
    """A primary and its replicas: who is primary now, how they replicate, their endpoints."""

    __tablename__ = "replica_sets"
    __table_args__ = (
        Index("ix_replica_sets_live", "deleted_at"),
        Index(  # an instance is the primary of one live set at most
            "ux_replica_sets_primary",
            "primary_id",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64))
    primary_id: Mapped[str] = mapped_column(String(36))
    datastore: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(8), default="async")  # or "sync"
    auto_failover: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # the replication account's password
    rw_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ro_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    down_since: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class ReplicationEvent(Base):
    """A change of primary: a switchover, or a failover (asked for or automatic)."""

    __tablename__ = "replication_events"
    __table_args__ = (Index("ix_replication_events_set", "set_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64))
    set_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(24))  # switchover, failover, automatic_failover
    state: Mapped[str] = mapped_column(String(16), default="RUNNING")  # COMPLETED, FAILED
    old_primary_id: Mapped[str] = mapped_column(String(36))
    new_primary_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    detected_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    promoted_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    behind_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    behind_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")


class Configuration(Base):
    """A named set of engine parameters that instances of one datastore version share."""

    __tablename__ = "configurations"
    __table_args__ = (Index("ix_configurations_project", "project_id", "deleted_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    datastore: Mapped[str] = mapped_column(String(64))
    datastore_version: Mapped[str] = mapped_column(String(64))
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Backup(Base):
    """One backup of an instance: a full one, or an incremental on top of ``parent_id``."""

    __tablename__ = "backups"
    __table_args__ = (
        Index("ix_backups_project", "project_id", "deleted_at"),
        Index("ix_backups_instance", "instance_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[str] = mapped_column(String(36))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    datastore: Mapped[str] = mapped_column(String(64))
    datastore_version: Mapped[str] = mapped_column(String(64))
    volume_size: Mapped[int] = mapped_column(Integer)  # of the instance, for restores
    type: Mapped[str] = mapped_column(String(16), default="full")
    parent_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=BackupStatus.NEW.value)
    fault: Mapped[str | None] = mapped_column(Text, nullable=True)
    location: Mapped[str | None] = mapped_column(String(512), nullable=True)
    format: Mapped[str | None] = mapped_column(String(16), nullable=True)
    checkpoint: Mapped[str | None] = mapped_column(String(128), nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    checksum: Mapped[str | None] = mapped_column(String(64), nullable=True)  # SHA-256, hex
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    verify_ok: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    verify_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    verify_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    strategy_id: Mapped[str | None] = mapped_column(String(36), nullable=True)  # scheduled by
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class ArchiveSegment(Base):
    """One stored file of an instance's continuous archive (a WAL segment, a binary log)."""

    __tablename__ = "archive_segments"
    __table_args__ = (Index("ix_archive_instance", "instance_id", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[str] = mapped_column(String(36))
    name: Mapped[str] = mapped_column(String(128))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str] = mapped_column(String(64))
    closed_at: Mapped[dt.datetime] = mapped_column(DateTime)  # no commit in it after this
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class BackupStrategy(Base):
    """Trove's backup strategy of an instance, with Cellar's schedule and retention."""

    __tablename__ = "backup_strategies"
    __table_args__ = (Index("ix_backup_strategies_due", "deleted_at", "next_run_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[str] = mapped_column(String(36))
    schedule: Mapped[str] = mapped_column(String(128))  # five cron fields or a nickname, UTC
    keep_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    keep_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    verify: Mapped[bool] = mapped_column(Boolean, default=False)
    incremental: Mapped[bool] = mapped_column(Boolean, default=False)
    next_run_at: Mapped[dt.datetime] = mapped_column(DateTime)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    last_backup_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    container: Mapped[str | None] = mapped_column(String(255), nullable=True)  # a label
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Task(Base):
    """One workflow run: which step it is on, and when and by whom it may run next."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_due", "state", "next_run_at"),
        Index("ix_tasks_instance", "instance_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64))
    instance_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    workflow: Mapped[str] = mapped_column(String(64))
    step: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=TaskState.RUNNING.value)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    request_id: Mapped[str] = mapped_column(String(64), default="-")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    step_started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    next_run_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)  # a worker id
    step_number: Mapped[int] = mapped_column(Integer, default=0)  # 0: no worker began it
    step_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)  # of the step
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Worker(Base):
    """A task manager worker process and when it last said it was alive."""

    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_heartbeat", "heartbeat_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(128))  # host name and boot id
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class IdempotencyKey(Base):
    """A create request's ``Idempotency-Key``, and the resource that request made."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_created", "created"),)

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of method, path and body
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    kind: Mapped[str] = mapped_column(String(32))  # instance, backup, configuration, ...
    resource_id: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(64))
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Secret(Base):
    """Encrypted values a task needs (passwords), deleted when the task ends."""

    __tablename__ = "secrets"

    task_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AuditEvent(Base):
    """One access or change: who (user, project, roles), from where, what, and how it
    ended. Rows are chained: each holds the SHA-256 of its content and of the row before
    (``cellar.audit``), so a row edited, inserted or deleted in the database shows."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_project", "project_id", "created"),
        Index("ux_audit_seq", "seq", unique=True),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # its place in the chain
    project_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    user_id: Mapped[str] = mapped_column(String(64), default="")
    user_name: Mapped[str] = mapped_column(String(255), default="")
    roles: Mapped[str] = mapped_column(String(255), default="")  # comma separated
    app_credential_id: Mapped[str] = mapped_column(String(64), default="")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    method: Mapped[str] = mapped_column(String(8), default="")
    route: Mapped[str] = mapped_column(String(512), default="")
    outcome: Mapped[str] = mapped_column(String(32), default="")  # an HTTP status, or a word
    prev_hash: Mapped[str] = mapped_column(String(64), default="")
    row_hash: Mapped[str] = mapped_column(String(64), default="")
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AuditHead(Base):
    """The end of the audit chain (one row): its last place and hash, and the lock that
    puts every new row after the one before."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    row_hash: Mapped[str] = mapped_column(String(64), default="")


class AuditCheckpoint(Base):
    """A signed statement of the chain's end at a moment: rows up to ``seq`` hash to
    ``row_hash``. Written every minute; signed with Cellar's own key."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (Index("ix_audit_checkpoints_seq", "seq"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    seq: Mapped[int] = mapped_column(BigInteger)
    row_hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ProjectQuota(Base):
    """A project's own limit for one resource (the settings' default applies otherwise)."""

    __tablename__ = "project_quotas"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(32), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class QuotaLock(Base):
    """One row per project that a create locks while it counts and adds to its usage."""

    __tablename__ = "quota_locks"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    touched_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ViewChange(Base):
    """A row that some instance's view reads was written: written by the database's own
    triggers (``cellar.view_changes``), read by the API to keep its pages up to date."""

    __tablename__ = "view_changes"
    __table_args__ = (
        Index("ix_view_changes_xid", "xid"),
        Index("ix_view_changes_created", "created"),
        {"sqlite_autoincrement": True},  # a seq is never given twice, so it orders commits
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # instance, set or configuration
    key: Mapped[str] = mapped_column(String(64))  # its id
    xid: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # PostgreSQL's writer
    created: Mapped[dt.datetime] = mapped_column(DateTime)


class DataKey(Base):
    """The key one stored backup object is encrypted with, sealed by Cellar's key ring.

    The object's header names the row (``taskmanager.backup_crypto``), so rotating
    Cellar's key seals this row again and never rewrites the object.
    """

    __tablename__ = "data_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class LogPublication(Base):
    """How much of one engine log of an instance has been published to backup storage.

    Each publish stores what the log gained since the last one as a new object
    (``logs/<instance>/<log>/<part>``), as Trove's ``log publish`` appends to its container.
    """

    __tablename__ = "log_publications"

    instance_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    published: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes of the log stored
    parts: Mapped[int] = mapped_column(Integer, default=0)  # objects stored
    location: Mapped[str | None] = mapped_column(String(512), nullable=True)  # of the prefix
    updated: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class MetricSample(Base):
    """One sample of an instance's engine counters, taken by beat through its agent.

    Kept for ``cellar.metrics.KEEP`` (a day); the dashboard's charts and
    ``GET /instances/{id}/metrics`` read them, and ``/metrics`` shows the newest.
    """

    __tablename__ = "metric_samples"
    __table_args__ = (
        Index("ix_metric_samples_instance", "instance_id", "taken"),
        Index("ix_metric_samples_taken", "taken"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    instance_id: Mapped[str] = mapped_column(String(36))
    taken: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    values: Mapped[dict[str, Any]] = mapped_column(JSON)  # counter name -> number


class Credential(Base):
    """A time-limited login for debugging or production support, on one instance.

    The password is shown once, when the credential is asked for. When the project wants
    write access approved first (:class:`ProjectSetting`), the password waits sealed in
    ``sealed`` until another member approves, and is dropped the moment the login exists.
    """

    __tablename__ = "credentials"
    __table_args__ = (Index("ix_credentials_state", "state", "expires_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    instance_id: Mapped[str] = mapped_column(String(36), index=True)
    user_name: Mapped[str] = mapped_column(String(64))
    access: Mapped[str] = mapped_column(String(8))  # read | write
    databases: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(512))
    ttl_seconds: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(24))  # cellar.credentials.State
    requested_by: Mapped[str] = mapped_column(String(255))  # the user's name
    requested_by_id: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(255), nullable=True)  # who revoked it
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    issued_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    first_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    fault: Mapped[str | None] = mapped_column(String(512), nullable=True)


class ProjectSetting(Base):
    """A project's own rules for its self-service actions; a project without a row has
    the defaults."""

    __tablename__ = "project_settings"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    approve_write_credentials: Mapped[bool] = mapped_column(Boolean, default=False)
    updated: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
