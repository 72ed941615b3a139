"""The worker's and beat's side of the queue: the tasks they run, and beat's schedule.

Start a worker with ``celery -A taskmanager.celery_app worker`` and the scheduler
with ``celery -A taskmanager.celery_app beat``. The app itself is ``cellar.queue.app``,
the one the API sends with.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from cellar import logs, queue
from cellar import settings as settings_module

logger = logging.getLogger(__name__)

RECONCILE_EVERY = 2.0
HEALTH_EVERY = 5.0
SCHEDULES_EVERY = 15.0  # seconds between looks at the backup schedules
ARCHIVE_EVERY = 10.0  # seconds between collections of the instances' WAL and binary logs
WATCH_EVERY = 1.0  # seconds between looks at the replica sets' primaries
CHECKPOINT_EVERY = 60.0  # seconds between signed checkpoints of the audit chain
PRUNE_EVERY = 60.0  # seconds between removals of old rows of the views' change feed
RENEW_EVERY = 60.0  # seconds between looks for agent certificates that are due
FIREWALL_EVERY = 30.0  # seconds between checks that the access rules are all in place
METRICS_EVERY = 10.0  # seconds between samples of the engines' counters (cellar.metrics.EVERY)
CREDENTIALS_EVERY = 10.0  # seconds between sweeps of debug credentials whose time is up

app = queue.app
app.conf.update(
    beat_schedule={
        "reconcile": {"task": "cellar.reconcile", "schedule": RECONCILE_EVERY},
        "check-health": {"task": "cellar.check_health", "schedule": HEALTH_EVERY},
        "backup-schedules": {"task": "cellar.run_backup_schedules", "schedule": SCHEDULES_EVERY},
        "collect-archives": {"task": "cellar.collect_archives", "schedule": ARCHIVE_EVERY},
        "watch-primaries": {"task": "cellar.watch_primaries", "schedule": WATCH_EVERY},
        "audit-checkpoint": {"task": "cellar.audit_checkpoint", "schedule": CHECKPOINT_EVERY},
        "prune-view-changes": {"task": "cellar.prune_view_changes", "schedule": PRUNE_EVERY},
        "renew-certificates": {"task": "cellar.renew_certificates", "schedule": RENEW_EVERY},
        "reconcile-firewall": {"task": "cellar.reconcile_firewall", "schedule": FIREWALL_EVERY},
        "sample-metrics": {"task": "cellar.sample_metrics", "schedule": METRICS_EVERY},
        "end-credentials": {"task": "cellar.end_credentials", "schedule": CREDENTIALS_EVERY},
    },
    beat_schedule_filename=str(settings_module.load().home / "beat-schedule"),
)


@signals.setup_logging.connect
def _logging(**_kwargs: Any) -> None:
    logs.setup("taskmanager")


@signals.worker_init.connect
def _worker_init(**_kwargs: Any) -> None:
    """Say this worker lives before it takes any step (and bury the dead of its host)."""
    from taskmanager import services

    services.current().heartbeat.start()


@signals.worker_ready.connect
def _worker_ready(**_kwargs: Any) -> None:
    """Mount again the volumes a host restart took away, before any step needs them,
    then take over at once what dead workers held."""
    from taskmanager import monitor, network_access, runner, services

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
    try:  # a host restart empties the firewall's tables
        network_access.reconcile(current)
    except Exception:
        logger.exception("could not put the instances' access rules in place at start")
    runner.reconcile(current)


@signals.worker_shutdown.connect
def _worker_shutdown(**_kwargs: Any) -> None:
    from taskmanager import services

    services.current().heartbeat.stop()


@app.task(name=queue.RUN_STEP, bind=True)
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


@app.task(name="cellar.audit_checkpoint", expires=CHECKPOINT_EVERY)
def audit_checkpoint() -> None:
    from taskmanager import audit_checkpoints, services

    audit_checkpoints.sign(services.current())


@app.task(name="cellar.prune_view_changes", expires=PRUNE_EVERY)
def prune_view_changes() -> None:
    from cellar import view_changes
    from taskmanager import services

    with services.current().db.session() as session:
        view_changes.prune(session)


@app.task(name="cellar.reconcile_firewall", expires=FIREWALL_EVERY)
def reconcile_firewall() -> None:
    from taskmanager import network_access, services

    network_access.reconcile(services.current())


@app.task(name="cellar.renew_certificates", expires=RENEW_EVERY)
def renew_certificates() -> None:
    from taskmanager import certificates, services

    certificates.renew(services.current())


@app.task(name="cellar.sample_metrics", expires=METRICS_EVERY)
def sample_metrics() -> None:
    from taskmanager import metrics_sampler, services

    metrics_sampler.sample(services.current())


@app.task(name="cellar.end_credentials", expires=CREDENTIALS_EVERY)
def end_credentials() -> None:
    from taskmanager import credential_logins, services

    credential_logins.sweep(services.current())
