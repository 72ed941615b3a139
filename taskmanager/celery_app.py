"""The Celery application: one task that runs a workflow step, one that reconciles.

Start a worker with ``celery -A taskmanager.celery_app worker`` and the scheduler
with ``celery -A taskmanager.celery_app beat``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals

from cellar import logs
from cellar import settings as settings_module
from cellar.settings import Settings
from taskmanager import broker

logger = logging.getLogger(__name__)

RECONCILE_EVERY = 2.0
HEALTH_EVERY = 5.0
SCHEDULES_EVERY = 15.0  # seconds between looks at the backup schedules
ARCHIVE_EVERY = 10.0  # seconds between collections of the instances' WAL and binary logs
WATCH_EVERY = 1.0  # seconds between looks at the replica sets' primaries


def celery_config(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "task_default_queue": "cellar",
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "reconcile": {"task": "cellar.reconcile", "schedule": RECONCILE_EVERY},
            "check-health": {"task": "cellar.check_health", "schedule": HEALTH_EVERY},
            "backup-schedules": {
                "task": "cellar.run_backup_schedules",
                "schedule": SCHEDULES_EVERY,
            },
            "collect-archives": {"task": "cellar.collect_archives", "schedule": ARCHIVE_EVERY},
            "watch-primaries": {"task": "cellar.watch_primaries", "schedule": WATCH_EVERY},
        },
        "beat_schedule_filename": str(settings.home / "beat-schedule"),
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


@signals.setup_logging.connect
def _logging(**_kwargs: Any) -> None:
    logs.setup("taskmanager")


@signals.worker_ready.connect
def _worker_ready(**_kwargs: Any) -> None:
    """Mount again the volumes a host restart took away, before any step needs them."""
    from taskmanager import monitor, services

    current = services.current()
    if current.settings.volume_backend == "docker":
        logger.warning(
            "volume sizes are not enforced: data volumes are plain Docker volumes "
            "(the loop backend needs root on the Docker host, losetup and mkfs.ext4)"
        )
    try:
        monitor.remount_volumes(current)
    except Exception:
        logger.exception("could not check the instances' volumes at start")


@app.task(name="cellar.run_step", bind=True)
def run_step(self: Any, task_id: str) -> None:
    from taskmanager import runner, services

    with logs.bound_request_id(self.request.get("x_request_id")):
        runner.run_step(services.current(), task_id)


@app.task(name="cellar.reconcile")
def reconcile() -> None:
    from taskmanager import runner, services

    runner.reconcile(services.current())


@app.task(name="cellar.check_health", expires=HEALTH_EVERY)
def check_health() -> None:
    from taskmanager import monitor, replication_watch, services

    current = services.current()
    monitor.check_health(current)
    replication_watch.record_replication(current)


@app.task(name="cellar.run_backup_schedules", expires=SCHEDULES_EVERY)
def run_backup_schedules() -> None:
    from taskmanager import backup_jobs, services

    backup_jobs.run_due_strategies(services.current())


@app.task(name="cellar.collect_archives", expires=ARCHIVE_EVERY)
def collect_archives() -> None:
    from taskmanager import archive, services

    archive.collect_archives(services.current())


@app.task(name="cellar.watch_primaries", expires=WATCH_EVERY)
def watch_primaries() -> None:
    from taskmanager import replication_watch, services

    replication_watch.watch_primaries(services.current())


def enqueue(task_id: str, countdown: float, request_id: str) -> None:
    """Put one step of ``task_id`` on the queue, to run after ``countdown`` seconds."""
    app.send_task(
        "cellar.run_step",
        args=[task_id],
        countdown=countdown if countdown > 0 else None,
        headers={"x_request_id": request_id},
    )


import taskmanager.workflows  # noqa: E402,F401  (registers every workflow)
