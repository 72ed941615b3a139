"""Scheduled backups and their retention, through the API and beat's round, on fakes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from cellar.models import AuditEvent, Backup, BackupStrategy, ProjectQuota, utcnow
from taskmanager import backup_jobs
from tests.unit.api.support import client_for

BASE = "/v1.0/proj1"


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


def active(client: FlaskClient, world: Any, datastore: str = "postgresql") -> str:
    body = {"name": "src", "flavorRef": "1", "volume": {"size": 1},
            "datastore": {"type": datastore}}  # fmt: skip
    reply = client.post(f"{BASE}/instances", json={"instance": body})
    world[3].drain(world[0])
    return str(reply.get_json()["instance"]["id"])


def strategy(client: FlaskClient, instance_id: str, **fields: Any) -> Any:
    body = {"instance_id": instance_id, "schedule": "0 3 * * *", **fields}
    return client.post(f"{BASE}/backup_strategies", json={"backup_strategy": body})


def run_round(world: Any, hours: float) -> int:
    started = backup_jobs.run_due_strategies(world[0], utcnow() + dt.timedelta(hours=hours))
    world[3].drain(world[0])
    return started


def test_a_strategy_is_listed_replaced_and_deleted(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    made = strategy(client, instance_id, keep_count=3, verify=True)
    assert made.status_code == 202, made.get_json()
    view = made.get_json()["backup_strategy"]
    assert (view["schedule"], view["keep_count"], view["verify"]) == ("0 3 * * *", 3, True)
    assert view["next_run_at"].endswith("03:00:00")
    strategy(client, instance_id, schedule="*/30 * * * *")
    listed = client.get(f"{BASE}/backup_strategies?instance_id={instance_id}").get_json()
    assert [s["schedule"] for s in listed["backup_strategies"]] == ["*/30 * * * *"]
    assert client.delete(f"{BASE}/backup_strategies?instance_id={instance_id}").status_code == 202
    assert client.get(f"{BASE}/backup_strategies").get_json()["backup_strategies"] == []
    assert client.delete(f"{BASE}/backup_strategies?instance_id={instance_id}").status_code == 404


def test_the_stock_clients_body_gets_a_daily_schedule(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    body = {"instance_id": instance_id, "swift_container": "team-backups"}
    made = client.post(f"{BASE}/backup_strategies", json={"backup_strategy": body})
    assert made.status_code == 202, made.get_json()
    view = made.get_json()["backup_strategy"]
    assert (view["schedule"], view["keep_count"], view["keep_days"]) == ("0 3 * * *", None, None)
    assert (view["instance_id"], view["swift_container"]) == (instance_id, "team-backups")
    asked = f"{BASE}/backup_strategies?instance_id={instance_id}&project_id=proj1"
    assert [s["swift_container"] for s in client.get(asked).get_json()["backup_strategies"]] == [
        "team-backups"
    ]
    other = client.get(f"{BASE}/backup_strategies?project_id=someone-else")
    assert other.status_code == 400
    assert "this project" in other.get_json()["badRequest"]["message"]
    assert client.delete(asked).status_code == 202


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"swift_container": "a/b"}, 400, "swift_container must be"),
        ({"swift_container": 7}, 400, "swift_container must be"),
        ({"schedule": "every night"}, 400, "five cron fields"),
        ({"schedule": "0 25 * * *"}, 400, "hour"),
        ({"keep_count": 0}, 400, "keep_count"),
        ({"keep_days": "many"}, 400, "keep_days"),
        ({"verify": "yes"}, 400, "verify must be true or false"),
        ({"incremental": True}, 422, "no incremental backups"),
    ],
)
def test_bad_strategies_are_refused(
    client: FlaskClient, world: Any, fields: Any, status: int, words: str
) -> None:
    reply = strategy(client, active(client, world, "redis"), **fields)
    assert reply.status_code == status
    assert words in str(reply.get_json())


def test_beat_takes_the_backups_and_keeps_what_retention_allows(
    client: FlaskClient, world: Any
) -> None:
    instance_id = active(client, world)
    strategy(client, instance_id, schedule="0 * * * *", keep_count=2)
    assert run_round(world, 0) == 0  # not due yet
    for hour in range(1, 5):
        assert run_round(world, hour) == 1
        assert run_round(world, hour) == 0  # once per schedule
    with world[0].db.session() as session:
        kept = session.scalars(select(Backup).where(Backup.deleted_at.is_(None))).all()
        gone = session.scalars(select(Backup).where(Backup.deleted_at.is_not(None))).all()
        assert len(kept) == 2 and len(gone) == 2
        assert all(b.status == "COMPLETED" for b in kept)
        assert min(b.created for b in kept) > max(b.created for b in gone)
        for backup in gone:
            assert not world[0].storage.path(f"proj1/{backup.id}").exists()
        row = session.scalars(select(BackupStrategy)).one()
        assert row.last_backup_id in {b.id for b in kept}


def test_a_verifying_strategy_verifies_each_backup(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    strategy(client, instance_id, schedule="0 * * * *", verify=True)
    assert run_round(world, 1) == 1
    backups = client.get(f"{BASE}/backups").get_json()["backups"]
    assert [b["verification"]["ok"] for b in backups] == [True]


def test_a_busy_instance_is_backed_up_at_a_later_round(client: FlaskClient, world: Any) -> None:
    instance_id = active(client, world)
    strategy(client, instance_id, schedule="0 * * * *")
    client.post(f"{BASE}/instances/{instance_id}/action", json={"restart": {}})
    assert backup_jobs.run_due_strategies(world[0], utcnow() + dt.timedelta(hours=1)) == 0
    world[3].drain(world[0])
    assert run_round(world, 1) == 1


def make(backup_id: str, kind: str, parent: str | None, age_days: float) -> Backup:
    return Backup(id=backup_id, type=kind, parent_id=parent,
                  created=utcnow() - dt.timedelta(days=age_days))  # fmt: skip


def test_retention_never_breaks_a_chain_or_drops_the_last_full() -> None:
    newest_first = [
        make("i2", "incremental", "i1", 0.1),
        make("i1", "incremental", "f1", 1),
        make("f1", "full", None, 2),
        make("f0", "full", None, 9),
    ]
    rule = BackupStrategy(keep_count=1, keep_days=None)
    assert [b.id for b in backup_jobs.pruned(newest_first, rule, utcnow())] == ["f0"]
    by_age = BackupStrategy(keep_count=None, keep_days=5)
    assert [b.id for b in backup_jobs.pruned(newest_first, by_age, utcnow())] == ["f0"]
    only_fulls = [make("f3", "full", None, 0), make("f2", "full", None, 1)]
    assert [b.id for b in backup_jobs.pruned(only_fulls, rule, utcnow())] == ["f2"]
    keep_all = BackupStrategy(keep_count=None, keep_days=None)
    assert backup_jobs.pruned(newest_first, keep_all, utcnow()) == []


def test_a_scheduled_backup_over_the_quota_is_skipped_and_recorded(
    client: FlaskClient, world: Any
) -> None:
    instance_id = active(client, world)
    strategy(client, instance_id, schedule="0 * * * *")
    with world[0].db.session() as session:
        session.add(ProjectQuota(project_id="proj1", resource="backups", hard_limit=1))
    assert run_round(world, 1) == 1
    assert run_round(world, 2) == 0  # the one backup allowed exists
    with world[0].db.session() as session:
        assert len(session.scalars(select(Backup)).all()) == 1
        skipped = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "backup.schedule_skipped")
        ).one()
        assert "limit 1" in skipped.details["reason"] and skipped.target_id == instance_id
        assert session.scalars(select(BackupStrategy)).one().next_run_at > utcnow()
