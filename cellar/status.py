"""The two status axes of an instance, and the states of a task.

``InstanceStatus`` is what the control plane is doing or has concluded;
``OperatingStatus`` is what the guest agent last reported about the engine.
"""

from __future__ import annotations

import enum


@enum.unique
class InstanceStatus(enum.StrEnum):
    BUILD = "BUILD"
    ACTIVE = "ACTIVE"
    REBOOT = "REBOOT"
    RESIZE = "RESIZE"
    BACKUP = "BACKUP"
    PROMOTE = "PROMOTE"
    EJECT = "EJECT"
    DETACH = "DETACH"
    UPGRADE = "UPGRADE"
    RESTART_REQUIRED = "RESTART_REQUIRED"
    SHUTDOWN = "SHUTDOWN"
    ERROR = "ERROR"


# An instance in service: nothing is changing it (a restart may be pending).
IN_SERVICE = (InstanceStatus.ACTIVE.value, InstanceStatus.RESTART_REQUIRED.value)


@enum.unique
class OperatingStatus(enum.StrEnum):
    UNKNOWN = "UNKNOWN"
    BUILD = "BUILD"
    HEALTHY = "HEALTHY"
    SHUTDOWN = "SHUTDOWN"
    ERROR = "ERROR"


@enum.unique
class TaskState(enum.StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@enum.unique
class BackupStatus(enum.StrEnum):
    """A backup's life, as Trove names it; every backup ends COMPLETED or FAILED."""

    NEW = "NEW"
    BUILDING = "BUILDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
