"""``GET /metrics``: who may read it, and what rows of the metadata show as which samples."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client.values
import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from api import auth
from api.app import create_app
from cellar.models import (
    ArchiveSegment,
    Backup,
    Instance,
    MetricSample,
    ReplicationEvent,
    Task,
    utcnow,
)
from cellar.scrape_token import scrape_token, token_path
from tests.unit.api.support import admin_project_id, admin_token, logged_in, member_of

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(autouse=True)
def no_token_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELLAR_METRICS_TOKEN", raising=False)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


@pytest.fixture
def app(world: Any) -> Flask:
    return create_app(world[0])


@pytest.fixture
def admin(app: Flask, world: Any) -> FlaskClient:
    return logged_in(app.test_client(), admin_token(world[0]))


def samples(reply: Any) -> Samples:
    """Every sample of a scrape, by name and labels."""
    assert reply.status_code == 200, reply.get_data(as_text=True)
    found: Samples = {}
    for family in text_string_to_metric_families(reply.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def named(found: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in found.items() if n == name}


def labels(**given: str) -> frozenset[tuple[str, str]]:
    return frozenset(given.items())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_admin_reads_the_metrics_in_prometheus_text_format(admin: FlaskClient) -> None:
    reply = admin.get("/metrics")

    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found = samples(reply)
    assert found[("cellar_instances", labels(datastore="postgresql", status="ACTIVE"))] == 0
    assert named(found, "cellar_failovers_total") == {
        labels(kind="failover"): 0,
        labels(kind="automatic_failover"): 0,
    }
    assert admin.head("/metrics").status_code == 200


def test_prometheus_reads_them_with_the_scrape_token_from_a_private_file(
    app: Flask, world: Any
) -> None:
    settings = world[0].settings
    path = token_path(settings)
    assert not path.exists()
    client = app.test_client()

    assert client.get("/metrics", headers=bearer("guess")).status_code == 401
    token = path.read_text().strip()  # made on first need
    assert len(token) >= 40 and scrape_token(settings) == token
    assert path.stat().st_mode & 0o777 == 0o600
    scraped = samples(client.get("/metrics", headers=bearer(token)))
    assert ("cellar_instances", labels(datastore="redis", status="ACTIVE")) in scraped
    assert client.get("/metrics", headers={"Authorization": f"bearer  {token} "}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": f"Basic {token}"}).status_code == 401
    assert client.get("/metrics", headers=bearer(token[:-1])).status_code == 401


def test_the_setting_gives_the_scrape_token_instead_of_the_file(world: Any) -> None:
    services = world[0]
    settings = dataclasses.replace(services.settings, metrics_token="set-by-the-operator")
    client = create_app(services, auth.auth_for(settings, services.db)).test_client()

    assert client.get("/metrics", headers=bearer("set-by-the-operator")).status_code == 200
    assert not token_path(settings).exists()
    assert client.get("/metrics", headers=bearer("another")).status_code == 401


def test_anyone_else_is_refused_in_the_apis_error_shape(app: Flask, world: Any) -> None:
    services = world[0]
    nobody = app.test_client().get("/metrics")
    assert nobody.status_code == 401
    assert nobody.get_json()["unauthorized"]["code"] == 401
    assert "X-Auth-Token" in nobody.get_json()["unauthorized"]["message"]

    assert logged_in(app.test_client(), "not-a-token").get("/metrics").status_code == 401
    for project, roles in (("proj1", ("member",)), ("proj1", ("admin",))):
        member = logged_in(app.test_client(), member_of(services, project, roles))
        refused = member.get("/metrics")
        assert refused.status_code == 403, roles
        assert refused.get_json()["forbidden"]["code"] == 403
    in_admin_project = member_of(services, admin_project_id(services), ("member",))
    client = logged_in(app.test_client(), in_admin_project)
    assert client.get("/metrics").status_code == 403
    both = client.get("/metrics", headers=bearer(scrape_token(services.settings)))
    assert both.status_code == 403  # the identity token decides when both are given


def instance(session: Any, name: str, datastore: str = "postgresql", **fields: Any) -> Instance:
    version = {"postgresql": "15", "mariadb": "10.11", "redis": "7"}[datastore]
    row = Instance(
        project_id=fields.pop("project_id", "proj1"),
        name=name,
        flavor_id="1",
        datastore=datastore,
        datastore_version=version,
        volume_size=1,
        status=fields.pop("status", "ACTIVE"),
        **fields,
    )
    session.add(row)
    session.flush()
    return row


def task(session: Any, workflow: str, step: str, state: str, took: float, last_step: float) -> None:
    end = utcnow() - dt.timedelta(seconds=30)
    session.add(
        Task(
            project_id="proj1",
            workflow=workflow,
            step=step,
            state=state,
            created=end - dt.timedelta(seconds=took),
            step_started_at=end - dt.timedelta(seconds=last_step),
            finished_at=end if state != "RUNNING" else None,
            duration=took if state != "RUNNING" else None,
        )
    )


def ago(seconds: float) -> dt.datetime:
    return utcnow() - dt.timedelta(seconds=seconds)


def seed(session: Any) -> dict[str, str]:
    """A few rows of each kind; returns the instances' ids by name."""
    primary = instance(session, "orders")
    replica = instance(
        session,
        "copy",
        replica_of_id=primary.id,
        replication={"role": "replica", "lag_seconds": 1.5, "lag_bytes": 2048,
                     "source_connected": True},
    )  # fmt: skip
    cache = instance(session, "cache", "redis", project_id="proj2", status="ERROR")
    gone = instance(session, "gone", deleted_at=ago(5), status="SHUTDOWN")
    scratch = instance(session, "verify-1", purpose="verify")
    instance(session, "stale-copy", replica_of_id=cache.id, deleted_at=ago(5))
    task(session, "provision", "wait_healthy", "COMPLETED", took=3.0, last_step=0.4)
    task(session, "provision", "wait_healthy", "COMPLETED", took=40.0, last_step=20.0)
    task(session, "backup", "stream", "FAILED", took=100.0, last_step=70.0)
    task(session, "backup", "stream", "FAILED", took=10.0, last_step=2.0)
    task(session, "resize_volume", "grow", "RUNNING", took=0.0, last_step=45.0)
    for kind in ("failover", "automatic_failover", "automatic_failover", "switchover"):
        session.add(ReplicationEvent(project_id="proj1", set_id="s", kind=kind, old_primary_id="x"))
    for instance_id, status, ended in (
        (primary.id, "COMPLETED", ago(3600)),
        (primary.id, "COMPLETED", ago(100)),
        (primary.id, "FAILED", ago(10)),
        (cache.id, "COMPLETED", ago(7200)),
        (gone.id, "COMPLETED", ago(50)),
    ):
        session.add(
            Backup(
                project_id="proj1",
                instance_id=instance_id,
                name="b",
                datastore="postgresql" if instance_id != cache.id else "redis",
                datastore_version="15",
                volume_size=1,
                status=status,
                finished_at=ended,
            )
        )
    for number, closed in enumerate((ago(300), ago(30))):
        session.add(
            ArchiveSegment(
                project_id="proj1",
                instance_id=primary.id,
                name=f"00000001000000000000000{number}",
                size_bytes=16,
                checksum="0" * 64,
                closed_at=closed,
            )
        )
    for instance_id, taken, values in (
        (primary.id, ago(20), {"connections": 3, "transactions_total": 1000}),
        (primary.id, ago(10), {"connections": 7, "transactions_total": 1234,
                               "cache_hit_ratio": 0.98, "Bad-Name": 1, "state": "up",
                               "transactions": 5, "in_recovery": True}),
        (replica.id, ago(5), {"connections": 2, "replication_lag_seconds": 1.0}),
        (cache.id, ago(120), {"connections": 9}),  # too old to show
        (gone.id, ago(1), {"connections": 4}),
        (scratch.id, ago(1), {"connections": 5}),
    ):  # fmt: skip
        session.add(MetricSample(instance_id=instance_id, taken=taken, values=values))
    return {"orders": primary.id, "copy": replica.id, "cache": cache.id}


def test_seeded_rows_show_as_their_samples(admin: FlaskClient, world: Any) -> None:
    with world[0].db.session() as session:
        ids = seed(session)
    orders, copy, cache = ids["orders"], ids["copy"], ids["cache"]

    found = samples(admin.get("/metrics"))

    instances = {k: v for k, v in named(found, "cellar_instances").items() if v}
    assert instances == {
        labels(datastore="postgresql", status="ACTIVE"): 2,
        labels(datastore="redis", status="ERROR"): 1,
    }
    assert len(named(found, "cellar_instances")) == 3 * 12  # every datastore and status

    provision = labels(workflow="provision", state="COMPLETED")
    assert found[("cellar_task_duration_seconds_count", provision)] == 2
    assert found[("cellar_task_duration_seconds_sum", provision)] == pytest.approx(43.0)
    assert found[("cellar_task_duration_seconds_bucket", provision | labels(le="5.0"))] == 1
    assert found[("cellar_task_duration_seconds_bucket", provision | labels(le="60.0"))] == 2
    assert found[("cellar_task_duration_seconds_bucket", provision | labels(le="+Inf"))] == 2
    failed_backup = labels(workflow="backup", state="FAILED")
    assert found[("cellar_task_duration_seconds_count", failed_backup)] == 2
    workflows = {dict(k)["workflow"] for k in named(found, "cellar_task_duration_seconds_count")}
    assert workflows == {"provision", "backup"}  # the running task is not finished

    step = labels(workflow="backup", step="stream", state="FAILED")
    final = "cellar_task_final_step_duration_seconds"
    assert found[(f"{final}_count", step)] == 2
    assert found[(f"{final}_sum", step)] == pytest.approx(72.0, abs=0.01)
    assert found[(f"{final}_bucket", step | labels(le="2.5"))] == 1
    assert found[(f"{final}_bucket", step | labels(le="60.0"))] == 1
    assert found[(f"{final}_bucket", step | labels(le="300.0"))] == 2
    last = labels(workflow="provision", step="wait_healthy", state="COMPLETED")
    assert found[(f"{final}_bucket", last | labels(le="0.5"))] == 1
    running = named(found, "cellar_task_step_running_seconds")
    assert list(running) == [labels(workflow="resize_volume", step="grow")]
    assert next(iter(running.values())) == pytest.approx(75.0, abs=5)

    assert named(found, "cellar_failed_steps_total") == {
        labels(workflow="backup", step="stream"): 2
    }
    assert named(found, "cellar_failovers_total") == {
        labels(kind="failover"): 1,
        labels(kind="automatic_failover"): 2,
    }

    backups = {k: v for k, v in named(found, "cellar_backups").items() if v}
    assert backups == {
        labels(datastore="postgresql", status="COMPLETED"): 3,
        labels(datastore="postgresql", status="FAILED"): 1,
        labels(datastore="redis", status="COMPLETED"): 1,
    }
    newest = named(found, "cellar_backup_newest_age_seconds")
    assert set(newest) == {
        labels(instance=orders, project="proj1", datastore="postgresql"),
        labels(instance=cache, project="proj2", datastore="redis"),
    }
    assert newest[labels(instance=orders, project="proj1", datastore="postgresql")] == (
        pytest.approx(100, abs=5)
    )

    lag = named(found, "cellar_archive_lag_seconds")
    assert list(lag) == [labels(instance=orders, project="proj1", datastore="postgresql")]
    assert next(iter(lag.values())) == pytest.approx(30, abs=5)

    of_copy = labels(instance=copy, project="proj1", datastore="postgresql")
    assert named(found, "cellar_replication_lag_seconds") == {of_copy: 1.5}
    assert named(found, "cellar_replication_lag_bytes") == {of_copy: 2048}
    assert named(found, "cellar_replication_source_connected") == {of_copy: 1}

    as_primary = labels(instance=orders, project="proj1", datastore="postgresql", role="primary")
    as_replica = labels(instance=copy, project="proj1", datastore="postgresql", role="replica")
    assert named(found, "cellar_instance_connections") == {as_primary: 7, as_replica: 2}
    assert named(found, "cellar_instance_transactions_total") == {as_primary: 1234}
    assert named(found, "cellar_instance_cache_hit_ratio") == {as_primary: 0.98}
    assert named(found, "cellar_instance_replication_lag_seconds") == {as_replica: 1.0}
    engine = {name for name, _ in found if name.startswith("cellar_instance_")}
    assert engine == {
        "cellar_instance_connections",
        "cellar_instance_transactions_total",
        "cellar_instance_cache_hit_ratio",
        "cellar_instance_replication_lag_seconds",
    }  # no bad name, no text, no clash with transactions_total, no true/false


def test_a_standalone_instance_is_labelled_so(admin: FlaskClient, world: Any) -> None:
    with world[0].db.session() as session:
        alone = instance(session, "alone", "mariadb")
        session.add(MetricSample(instance_id=alone.id, taken=ago(2), values={"connections": 1}))

    found = samples(admin.get("/metrics"))

    assert named(found, "cellar_instance_connections") == {
        labels(instance=alone.id, project="proj1", datastore="mariadb", role="standalone"): 1
    }


def test_request_latency_is_counted_by_route_rule_never_by_path(
    app: Flask, admin: FlaskClient, world: Any
) -> None:
    member = logged_in(app.test_client(), member_of(world[0], "proj1"))
    for _ in range(2):
        assert member.get("/v1.0/proj1/instances").status_code == 200
    assert member.get("/v1.0/proj1/nowhere/at/all").status_code == 404
    assert member.get("/v1.0/proj2/instances").status_code == 403

    found = named(samples(admin.get("/metrics")), "cellar_api_request_duration_seconds_count")

    rule = "/v1.0/<project_id>/instances"
    assert found[labels(method="GET", route=rule, status="200")] == 2
    assert found[labels(method="GET", route=rule, status="403")] == 1
    assert found[labels(method="GET", route="(unmatched)", status="404")] == 1
    assert not [k for k in found if any(v.startswith("/v1.0/proj") for _, v in k)]


@pytest.fixture
def two_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Multiprocess mode, with the process id one that a test sets."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    pid = [101]
    value_class = prometheus_client.values.MultiProcessValue(lambda: pid[0])
    monkeypatch.setattr(prometheus_client.values, "ValueClass", value_class)
    yield pid
    value_class.close_all_files()


def test_with_a_multiprocess_folder_a_scrape_adds_up_every_workers_requests(
    two_workers: list[int], world: Any
) -> None:
    app = create_app(world[0])
    admin = logged_in(app.test_client(), admin_token(world[0]))
    assert admin.get("/v1.0/proj1/instances").status_code == 200
    two_workers[0] = 102  # the other gunicorn worker
    assert admin.get("/v1.0/proj1/instances").status_code == 200

    found = named(samples(admin.get("/metrics")), "cellar_api_request_duration_seconds_count")

    rule = labels(method="GET", route="/v1.0/<project_id>/instances", status="200")
    assert found[rule] == 2
    assert sorted(os.listdir(os.environ["PROMETHEUS_MULTIPROC_DIR"])) == [
        "histogram_101.db",
        "histogram_102.db",
    ]
