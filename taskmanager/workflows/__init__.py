"""Every workflow the task manager runs; importing this package registers them."""

from taskmanager.workflows import delete, provision, resize, restart, users  # noqa: F401
