"""What the crash cells work on: instances with rows written and acknowledged, their
backups, and replica sets, made through the API and reused from cell to cell.

An instance handed out by :meth:`World.instance` is ACTIVE, has the user ``app`` and
holds every row in its ``marks`` (each was acknowledged by the engine when written);
a cell gives it back with :meth:`World.keep` when it is still fit for the next one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import time
import uuid
from typing import Any

import psycopg
import pymysql
import redis

from tests.chaos.harness import ChaosStack
from tests.integration.engines import read, session, write
from tests.integration.stack import Api

PASSWORD = "Chaos-pass-42"
VERSIONS = {"postgresql": "15", "mariadb": "10.11", "redis": "7.0"}
WAIT = 240.0  # seconds any single wait of the arrangements may take
CLIENT_ERRORS = (psycopg.Error, pymysql.err.Error, redis.RedisError, OSError)


class Unfit(Exception):
    """Something the cells rely on is not as it should be (a finding, not a crash)."""


@dataclasses.dataclass
class Member:
    """An instance the cells know: its address and the rows it must hold."""

    id: str
    datastore: str
    where: dict[str, Any]
    marks: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def database(self) -> str:
        return "" if self.datastore == "redis" else "shop"


@dataclasses.dataclass
class PointInTime:
    """A backup, and a moment after it: rows before the moment are in, ``after`` is not."""

    backup_id: str
    moment: str
    marks: dict[str, str]
    after: str


class World:
    def __init__(self, chaos: ChaosStack) -> None:
        self.chaos = chaos
        self.api = Api(chaos.url, f"chaos-{uuid.uuid4().hex[:10]}", chaos.stack.identity)
        self.pool: dict[str, list[Member]] = {}
        self.backups: dict[str, tuple[str, dict[str, str]]] = {}  # instance: full backup, rows
        self.points: dict[str, PointInTime] = {}
        self.sets: list[list[Member]] = []  # primary first
        self.serial = 0

    # --- instances -------------------------------------------------------------------

    def body(self, datastore: str, name: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "flavorRef": "2",
            "volume": {"size": 1},
            "datastore": {"type": datastore, "version": VERSIONS[datastore]},
            "users": [{"name": "app", "password": PASSWORD}],
        }
        if datastore != "redis":
            body["databases"] = [{"name": "shop"}]
            body["users"][0]["databases"] = [{"name": "shop"}]
        return body

    def post_instance(self, body: dict[str, Any]) -> str:
        reply = self.api.call("POST", "/instances", json={"instance": body})
        if reply.status_code != 202:
            raise Unfit(f"POST /instances answered {reply.status_code}: {reply.text}")
        return str(reply.json()["instance"]["id"])

    def show(self, instance_id: str) -> dict[str, Any]:
        reply = self.api.call("GET", f"/instances/{instance_id}")
        if reply.status_code == 404:
            return {"status": "GONE"}
        return dict(reply.json()["instance"])

    def settle(self, instance_id: str) -> dict[str, Any]:
        return self.api.wait_instance(
            instance_id, {"ACTIVE", "ERROR", "SHUTDOWN", "RESTART_REQUIRED", "GONE"}, WAIT
        )

    def create(self, datastore: str) -> Member:
        """A new ACTIVE instance (made without faults) holding one acknowledged row."""
        self.serial += 1
        instance_id = self.post_instance(self.body(datastore, f"chaos-{self.serial}"))
        view = self.settle(instance_id)
        if view["status"] != "ACTIVE":
            raise Unfit(f"instance {instance_id} is {view['status']}: {view.get('fault')}")
        member = Member(instance_id, datastore, view["connection"])
        self.mark(member)
        return member

    def instance(self, datastore: str) -> Member:
        """An ACTIVE instance with its rows, from the pool, or a new one."""
        pool = self.pool.setdefault(datastore, [])
        while pool:
            member = pool.pop(0)
            view = self.show(member.id)
            if view["status"] == "ACTIVE" and not view.get("task"):
                member.where = view["connection"]
                return member
            self.drop(member.id)
        return self.create(datastore)

    def keep(self, member: Member) -> None:
        self.pool.setdefault(member.datastore, []).append(member)

    def drop(self, instance_id: str) -> None:
        """Delete an instance (no fault armed) and wait until it is gone."""
        if self.show(instance_id)["status"] == "GONE":
            return
        self.api.call("DELETE", f"/instances/{instance_id}")
        self.api.wait_instance(instance_id, {"GONE", "ERROR"}, WAIT)

    # --- rows ----------------------------------------------------------------------

    def connect(self, member: Member, where: dict[str, Any] | None = None) -> Any:
        return session(member.datastore, where or member.where, "app", PASSWORD, member.database)

    def mark(self, member: Member) -> str:
        """Write one more row and remember it once the engine acknowledged it."""
        self.serial += 1
        key, value = f"k{self.serial}", f"acknowledged {self.serial}"
        with self.connect(member) as conn:
            write(member.datastore, conn, key, value)
        member.marks[key] = value
        return key

    def missing(self, member: Member, where: dict[str, Any] | None = None) -> list[str]:
        """The acknowledged rows ``member`` (at ``where``) does not hold."""
        try:
            with self.connect(member, where) as conn:
                return [k for k, v in member.marks.items() if read(member.datastore, conn, k) != v]
        except CLIENT_ERRORS as exc:
            return [f"(cannot log in: {exc})"]

    def wait_rows(self, member: Member, where: dict[str, Any], within: float = 60) -> list[str]:
        """Wait until ``where`` (a replica) holds every row of ``member``; what is missing."""
        end = time.monotonic() + within
        while True:
            gone = self.missing(member, where)
            if not gone or time.monotonic() > end:
                return gone
            time.sleep(0.2)

    # --- backups -------------------------------------------------------------------

    def backup(self, member: Member, **extra: Any) -> str:
        reply = self.api.call(
            "POST", "/backups", json={"backup": {"name": "chaos", "instance": member.id, **extra}}
        )
        if reply.status_code != 202:
            raise Unfit(f"POST /backups answered {reply.status_code}: {reply.text}")
        return str(reply.json()["backup"]["id"])

    def backup_view(self, backup_id: str) -> dict[str, Any]:
        return dict(self.api.call("GET", f"/backups/{backup_id}").json()["backup"])

    def wait_backup(self, backup_id: str) -> dict[str, Any]:
        end = time.monotonic() + WAIT
        while True:
            view = self.backup_view(backup_id)
            if view["status"] in ("COMPLETED", "FAILED") or time.monotonic() > end:
                return view
            time.sleep(0.2)

    def full_backup(self, member: Member) -> tuple[str, dict[str, str]]:
        """A completed full backup of ``member`` and the rows it holds (made once)."""
        if member.id not in self.backups:
            rows = dict(member.marks)
            backup_id = self.backup(member)
            view = self.wait_backup(backup_id)
            self.settle(member.id)
            if view["status"] != "COMPLETED":
                raise Unfit(f"backup {backup_id} is {view['status']}: {view.get('fault')}")
            self.backups[member.id] = (backup_id, rows)
        return self.backups[member.id]

    def point_in_time(self, member: Member) -> PointInTime:
        """A moment between two acknowledged rows after a full backup, once archived."""
        if member.id in self.points:
            return self.points[member.id]
        backup_id, _rows = self.full_backup(member)
        self.mark(member)
        moment = math.ceil(time.time()) + 1  # binary logs keep whole seconds
        time.sleep(max(0.0, moment + 1.2 - time.time()))
        before = dict(member.marks)
        after = self.mark(member)
        at = dt.datetime.fromtimestamp(moment, dt.UTC)
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            window = self.show(member.id).get("recovery_window") or {}
            latest = window.get("latest")
            if latest and dt.datetime.fromisoformat(latest.replace("Z", "+00:00")) > at:
                stamp = at.isoformat().replace("+00:00", "Z")
                self.points[member.id] = PointInTime(backup_id, stamp, before, after)
                return self.points[member.id]
            time.sleep(1)
        raise Unfit(f"the archive of {member.id} did not pass {at}")

    # --- replica sets --------------------------------------------------------------

    def add_replica(self, members: list[Member]) -> Member:
        primary = members[0]
        reply = self.api.call(
            "POST", "/instances", json={"instance": {"name": "replica", "replica_of": primary.id}}
        )
        if reply.status_code != 202:
            raise Unfit(f"a replica of {primary.id} was refused: {reply.text}")
        replica_id = str(reply.json()["instance"]["id"])
        view = self.settle(replica_id)
        if view["status"] != "ACTIVE":
            raise Unfit(f"replica {replica_id} is {view['status']}: {view.get('fault')}")
        replica = Member(replica_id, primary.datastore, view["connection"], primary.marks)
        members.append(replica)
        return replica

    def replica_set(self, replicas: int = 1) -> list[Member]:
        """A set whose members are all ACTIVE, with at least ``replicas`` replicas."""
        for members in list(self.sets):
            views = [self.show(m.id) for m in members]
            if any(v["status"] != "ACTIVE" or v.get("task") for v in views):
                self.drop_set(members)
                continue
            while len(members) - 1 < replicas:
                self.add_replica(members)
            return members
        members = [self.create("postgresql")]
        self.sets.append(members)
        while len(members) - 1 < replicas:
            self.add_replica(members)
        return members

    def drop_set(self, members: list[Member]) -> None:
        if members in self.sets:
            self.sets.remove(members)
        for member in reversed(members):
            with contextlib.suppress(Exception):
                self.drop(member.id)

    def cleanup(self) -> None:
        """Delete everything this world made."""
        for members in list(self.sets):
            self.drop_set(members)
        every = self.api.call("GET", "/instances").json().get("instances", [])
        for view in every:
            for replica in view.get("replicas", []):
                with contextlib.suppress(Exception):
                    self.drop(replica["id"])
        for view in every:
            with contextlib.suppress(Exception):
                self.drop(view["id"])
