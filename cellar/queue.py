"""The task queue: a Celery app that both sides share, and the one call that uses it.

The API and beat put steps on the queue with :func:`enqueue`; the task manager's worker
(``taskmanager.celery_app``) registers the tasks on this same app and consumes them.
Losing a message loses nothing: the task row stays RUNNING and beat's reconcile puts it
back on the queue, so a broker that refuses a send is logged, not raised.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError

from cellar import broker
from cellar import settings as settings_module
from cellar.settings import Settings

logger = logging.getLogger(__name__)

RUN_STEP = "cellar.run_step"


def celery_config(settings: Settings) -> dict[str, Any]:
    """What every Cellar process needs to reach the broker and to treat its messages."""
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "task_default_queue": "cellar",
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
    }
    if settings.embedded_broker:
        config["broker_url"] = f"{broker.ALIAS}://"
        queue = settings.broker_dir / "queue"
        processed = settings.broker_dir / "processed"
        control = settings.broker_dir / "control"
        for folder in (queue, processed, control):
            folder.mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "processed_folder": str(processed),
            "control_folder": str(control),
            "store_processed": True,
            "polling_interval": 0.02,
        }
        config["worker_enable_remote_control"] = False
        config["worker_send_task_events"] = False
    return config


app = Celery("cellar")
app.conf.update(celery_config(settings_module.load()))


def enqueue(task_id: str, countdown: float, request_id: str) -> None:
    """Put one step of ``task_id`` on the queue, to run after ``countdown`` seconds."""
    try:
        app.send_task(
            RUN_STEP,
            args=[task_id],
            countdown=countdown if countdown > 0 else None,
            headers={"x_request_id": request_id},
        )
    except (KombuError, OSError) as exc:
        logger.warning("task %s not queued now (%s); beat's reconcile will queue it", task_id, exc)
