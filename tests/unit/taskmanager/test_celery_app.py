from __future__ import annotations

from taskmanager.celery_app import app


def test_beat_runs_every_periodic_job_and_each_names_a_registered_task() -> None:
    schedule = app.conf.beat_schedule
    assert set(schedule) == {
        "reconcile",
        "check-health",
        "backup-schedules",
        "collect-archives",
        "watch-primaries",
        "audit-checkpoint",
        "prune-view-changes",
        "renew-certificates",
        "reconcile-firewall",
        "sample-metrics",
        "end-credentials",
    }
    for entry in schedule.values():
        assert entry["task"] in app.tasks
        assert 0 < entry["schedule"] <= 60
