"""Every workflow the task manager runs; importing this package registers them."""

from taskmanager.workflows import (  # noqa: F401
    backup,
    configure,
    delete,
    provision,
    resize,
    resize_volume,
    restart,
    restore,
    users,
    verify,
)
