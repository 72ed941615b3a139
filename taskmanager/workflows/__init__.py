"""Every workflow the task manager runs; importing this package registers them."""

from taskmanager.workflows import delete, provision, users  # noqa: F401
