"""Every workflow the task manager runs; importing this package registers them."""

from taskmanager.workflows import (  # noqa: F401
    backup,
    configure,
    delete,
    detach,
    failover,
    provision,
    replication_mode,
    resize,
    resize_volume,
    restart,
    restore,
    switchover,
    users,
    verify,
)
