"""One scenario per workflow the crash cells kill: how to set it up, start it and judge it.

``prepare`` runs before the fault is armed (it may run other workflows), ``act`` sends
the one request whose workflow the fault names, and ``check`` runs once every task of
the project has ended: it says the outcome in a word (ACTIVE, COMPLETED, GONE, or ERROR
with the fault) and lists what is wrong, such as an acknowledged row that is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from typing import Any

import docker

from cellar.workflows import WorkflowName
from tests.chaos.world import CLIENT_ERRORS, PASSWORD, Member, Unfit, World
from tests.integration.engines import query

Check = tuple[str, list[str]]
PRIMARY = "primary"
Request = tuple[str, str, dict[str, Any], dict[str, Any]]  # method, path, body, what to see


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    workflow: WorkflowName
    prepare: Callable[[World], Any]
    act: Callable[[World, Any], Any]
    check: Callable[[World, Any], Check]
    slice_step: str  # the step ``make test`` kills in, during it
    off_path: tuple[tuple[str, str], ...] = ()  # steps this scenario never takes, and why


def state_of(view: dict[str, Any]) -> str:
    if view["status"] == "ERROR":
        return f"ERROR: {(view.get('fault') or {}).get('message', 'no fault given')}"
    return str(view["status"])


def instance_outcome(world: World, member: Member, *wanted: str) -> Check:
    """The instance's state, and its missing rows when it serves."""
    view = world.settle(member.id)
    outcome = state_of(view)
    problems = []
    if view["status"] == "ERROR" and not view.get("fault"):
        problems.append("ERROR without a fault")
    elif view["status"] not in ("ERROR", *wanted):
        problems.append(f"ended {view['status']}, not {' or '.join(wanted)}")
    if view["status"] in ("ACTIVE", "RESTART_REQUIRED"):
        member.where = view["connection"]
        problems += [f"acknowledged row {k} is missing" for k in world.missing(member)]
    return outcome, problems


# --- provisioning ------------------------------------------------------------------------


def provision(datastore: str) -> Scenario:
    def act(world: World, _prepared: None) -> str:
        world.serial += 1
        return world.post_instance(world.body(datastore, f"new-{world.serial}"))

    def check(world: World, instance_id: str) -> Check:
        view = world.settle(instance_id)
        if view["status"] != "ACTIVE":
            return state_of(view), [] if view.get("fault") else ["ERROR without a fault"]
        member = Member(instance_id, datastore, view["connection"])
        try:
            world.mark(member)
        except CLIENT_ERRORS as exc:
            return "ACTIVE", [f"the new instance does not take a write as app: {exc}"]
        world.keep(member)
        return "ACTIVE", []

    return Scenario(
        f"provision {datastore}", WorkflowName.PROVISION, lambda _w: None, act, check, "prepare"
    )


def restore(point_in_time: bool) -> Scenario:
    def prepare(world: World) -> tuple[Member, dict[str, Any], dict[str, str], str]:
        source = world.instance("postgresql")
        if point_in_time:
            point = world.point_in_time(source)
            ref = {"backupRef": point.backup_id, "restore_time": point.moment}
            world.keep(source)
            return source, ref, point.marks, point.after
        backup_id, rows = world.full_backup(source)
        world.keep(source)
        return source, {"backupRef": backup_id}, rows, ""

    def act(world: World, prepared: tuple[Member, dict[str, Any], dict[str, str], str]) -> Any:
        _source, ref, rows, after = prepared
        world.serial += 1
        body = {"name": f"restored-{world.serial}", "flavorRef": "2", "restorePoint": ref}
        return world.post_instance(body), rows, after

    def check(world: World, started: tuple[str, dict[str, str], str]) -> Check:
        instance_id, rows, after = started
        copy = Member(instance_id, "postgresql", {}, dict(rows))
        outcome, problems = instance_outcome(world, copy, "ACTIVE")
        if outcome == "ACTIVE" and after:
            with world.connect(copy) as conn:
                if query(conn, f"SELECT v FROM kv WHERE k = '{after}'"):
                    problems.append(f"row {after}, written after the moment, was restored")
        if outcome == "ACTIVE" and not problems:
            world.keep(copy)
        return outcome, problems

    name = "point-in-time restore" if point_in_time else "restore"
    return Scenario(name, WorkflowName.PROVISION_RESTORE, prepare, act, check, "restore_data")


# --- changes of a running instance -------------------------------------------------------


def instance_change(
    name: str,
    workflow: WorkflowName,
    request: Callable[[World, Member], Request],
    judge: Callable[[World, Member, dict[str, Any]], list[str]],
    slice_step: str,
    datastore: str = "postgresql",
    off_path: tuple[tuple[str, str], ...] = (),
) -> Scenario:
    """A change asked of one ACTIVE instance, which must keep its rows and serve again."""

    def prepare(world: World) -> Member:
        member = world.instance(datastore)
        world.mark(member)
        return member

    def act(world: World, member: Member) -> tuple[Member, dict[str, Any]]:
        method, path, body, wanted = request(world, member)
        reply = world.api.call(method, path, json=body)
        if reply.status_code != 202:
            raise Unfit(f"{method} {path} answered {reply.status_code}: {reply.text}")
        return member, wanted

    def check(world: World, started: tuple[Member, dict[str, Any]]) -> Check:
        member, wanted = started
        outcome, problems = instance_outcome(world, member, "ACTIVE", "RESTART_REQUIRED")
        if outcome in ("ACTIVE", "RESTART_REQUIRED"):
            problems += judge(world, member, wanted)
            if not problems:
                world.keep(member)
        return outcome, problems

    return Scenario(name, workflow, prepare, act, check, slice_step, off_path)


def delete() -> Scenario:
    def act(world: World, member: Member) -> str:
        reply = world.api.call("DELETE", f"/instances/{member.id}")
        if reply.status_code != 202:
            raise Unfit(f"DELETE answered {reply.status_code}: {reply.text}")
        return member.id

    def check(world: World, instance_id: str) -> Check:
        view = world.settle(instance_id)
        if view["status"] == "GONE":
            return "GONE", []
        return state_of(view), [] if view.get("fault") else [f"not deleted: {view['status']}"]

    return Scenario(
        "delete", WorkflowName.DELETE, lambda w: w.instance("postgresql"), act, check,
        "remove_volume",
    )  # fmt: skip


def restart_request(world: World, member: Member) -> Request:
    return "POST", f"/instances/{member.id}/action", {"restart": {}}, {}


def flavor_request(world: World, member: Member) -> Request:
    flavor = world.show(member.id)["flavor"]["id"]
    target = "3" if flavor == "2" else "2"
    body = {"resize": {"flavorRef": target}}
    return "POST", f"/instances/{member.id}/action", body, {"flavor": target}


def flavor_judge(world: World, member: Member, wanted: dict[str, Any]) -> list[str]:
    flavor = world.show(member.id)["flavor"]["id"]
    return [] if flavor == wanted["flavor"] else [f"flavor is {flavor}, not {wanted['flavor']}"]


def volume_request(world: World, member: Member) -> Request:
    size = int(world.show(member.id)["volume"]["size"]) + 1
    body = {"resize": {"volume": {"size": size}}}
    return "POST", f"/instances/{member.id}/action", body, {"size": size}


def volume_judge(world: World, member: Member, wanted: dict[str, Any]) -> list[str]:
    size = world.show(member.id)["volume"]["size"]
    return [] if size == wanted["size"] else [f"volume is {size} GB, not {wanted['size']}"]


def configuration_request(world: World, member: Member) -> Request:
    world.serial += 1
    values = {"work_mem": 4096 + world.serial}
    group = {"name": f"chaos-{world.serial}", "values": values,
             "datastore": {"type": "postgresql", "version": "15"}}  # fmt: skip
    reply = world.api.call("POST", "/configurations", json={"configuration": group})
    if reply.status_code not in (200, 202):
        raise Unfit(f"POST /configurations answered {reply.status_code}: {reply.text}")
    group_id = reply.json()["configuration"]["id"]
    body = {"instance": {"configuration": group_id}}
    return "PUT", f"/instances/{member.id}", body, values


def configuration_judge(world: World, member: Member, wanted: dict[str, Any]) -> list[str]:
    with world.connect(member) as conn:
        found = query(conn, "SELECT setting FROM pg_settings WHERE name = 'work_mem'")[0][0]
    value = str(wanted["work_mem"])
    return [] if found == value else [f"work_mem is {found}, not {value}"]


def no_judge(world: World, member: Member, wanted: dict[str, Any]) -> list[str]:
    return []


# --- backups -----------------------------------------------------------------------------


def backup(incremental: bool) -> Scenario:
    datastore = "mariadb" if incremental else "postgresql"

    def prepare(world: World) -> Member:
        member = world.instance(datastore)
        if incremental:
            world.full_backup(member)
        world.mark(member)
        return member

    def act(world: World, member: Member) -> tuple[Member, str, dict[str, str]]:
        extra = {"incremental": 1} if incremental else {}
        return member, world.backup(member, **extra), dict(member.marks)

    def check(world: World, started: tuple[Member, str, dict[str, str]]) -> Check:
        member, backup_id, rows = started
        view = world.wait_backup(backup_id)
        problems = []
        if view["status"] == "COMPLETED":
            problems += stored_matches(world, view)
            if incremental and not view.get("parent_id"):
                problems.append("the incremental backup has no parent")
        elif not view.get("fault"):
            problems.append(f"backup ended {view['status']} without a fault")
        outcome, more = instance_outcome(world, member, "ACTIVE")
        problems += more
        if outcome == "ACTIVE" and not more:
            world.keep(member)
        if not incremental and view["status"] == "COMPLETED":
            world.backups[member.id] = (backup_id, rows)
        return f"{view['status']}, instance {outcome}", problems

    name = "incremental backup" if incremental else "backup"
    return Scenario(name, WorkflowName.BACKUP, prepare, act, check, "take_backup")


def stored_matches(world: World, view: dict[str, Any]) -> list[str]:
    """The stored file is exactly what the backup's row says (size and SHA-256)."""
    path = world.chaos.settings.backups_dir / world.api.project / view["id"]
    if not path.is_file():
        return [f"the file of backup {view['id']} is missing"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if (path.stat().st_size, digest) != (view.get("size_bytes"), view.get("checksum")):
        return [f"the stored file of backup {view['id']} does not match its recorded checksum"]
    return []


def verify() -> Scenario:
    def prepare(world: World) -> str:
        member = world.instance("postgresql")
        backup_id, _rows = world.full_backup(member)
        world.keep(member)
        return backup_id

    def act(world: World, backup_id: str) -> str:
        reply = world.api.call("POST", f"/backups/{backup_id}/action", json={"verify": {}})
        if reply.status_code != 202:
            raise Unfit(f"verify answered {reply.status_code}: {reply.text}")
        return backup_id

    def check(world: World, backup_id: str) -> Check:
        verification = world.backup_view(backup_id).get("verification") or {}
        if not verification:
            return "not verified", ["the verification recorded no result"]
        ok = verification.get("ok")
        return ("verified ok" if ok else f"verify failed: {verification.get('detail')}"), []

    return Scenario("verify", WorkflowName.VERIFY_BACKUP, prepare, act, check, "restore_data")


# --- replica sets ------------------------------------------------------------------------


def set_outcome(world: World, members: list[Member], primary: str) -> Check:
    """Every member ACTIVE behind ``primary``, and every row there and on each replica."""
    problems = []
    views = {m.id: world.settle(m.id) for m in members}
    for member in members:
        if views[member.id]["status"] != "ACTIVE":
            return state_of(views[member.id]), (
                [] if views[member.id].get("fault") else ["a member ended without a fault"]
            )
    for member in members:
        member.where = views[member.id]["connection"]
    head = views[primary]
    if head.get("replication", {}).get("role") != "primary":
        problems.append(f"{primary} is not the set's primary")
    endpoints = head.get("endpoints")
    if not endpoints:
        return "ACTIVE", [*problems, "the set has no endpoints"]
    lead = next(m for m in members if m.id == primary)
    problems += [f"row {k} missing through rw" for k in world.missing(lead, endpoints["rw"])]
    for member in members:
        if member.id != primary:
            problems += [f"row {k} missing on replica" for k in world.wait_rows(lead, member.where)]
    return "ACTIVE", problems


def replica_create() -> Scenario:
    def prepare(world: World) -> list[Member]:
        members = world.replica_set(replicas=0)
        if len(members) > 3:  # room for the cells still to come
            members = [world.create("postgresql")]
            world.sets.insert(0, members)
        world.mark(members[0])
        return members

    def act(world: World, members: list[Member]) -> list[Member]:
        body = {"name": "replica", "replica_of": members[0].id}
        reply = world.api.call("POST", "/instances", json={"instance": body})
        if reply.status_code != 202:
            raise Unfit(f"the replica was refused: {reply.text}")
        view = reply.json()["instance"]
        members.append(Member(view["id"], "postgresql", {}, members[0].marks))
        return members

    def check(world: World, members: list[Member]) -> Check:
        return set_outcome(world, members, members[0].id)

    return Scenario(
        "replica create", WorkflowName.PROVISION_REPLICA, prepare, act, check, "seed_replica"
    )


def switchover() -> Scenario:
    def prepare(world: World) -> list[Member]:
        members = world.replica_set(replicas=1)
        world.mark(members[0])
        for replica in members[1:]:
            if world.wait_rows(members[0], replica.where):
                raise Unfit(f"replica {replica.id} did not catch up")
        return members

    def act(world: World, members: list[Member]) -> list[Member]:
        candidate = members[1]
        path = f"/instances/{candidate.id}/action"
        reply = world.api.call("POST", path, json={"promote_to_replica_source": {}})
        if reply.status_code != 202:
            raise Unfit(f"the switchover was refused: {reply.text}")
        members.remove(candidate)
        members.insert(0, candidate)
        return members

    def check(world: World, members: list[Member]) -> Check:
        return set_outcome(world, members, members[0].id)

    return Scenario("switchover", WorkflowName.SWITCHOVER, prepare, act, check, "promote")


def failover() -> Scenario:
    def prepare(world: World) -> list[Member]:
        members = world.replica_set(replicas=1)
        head = members[0]
        world.api.call("PUT", f"/instances/{head.id}",
                       json={"instance": {"replication": {"auto_failover": False}}})  # fmt: skip
        world.mark(head)
        for replica in members[1:]:
            if world.wait_rows(head, replica.where):
                raise Unfit(f"replica {replica.id} did not catch up")
        client = docker.from_env()
        try:
            client.containers.get(f"cellar-{head.id}").kill()
        finally:
            client.close()
        end = time.monotonic() + 60
        while world.show(head.id).get("operating_status") == "HEALTHY":
            if time.monotonic() > end:
                raise Unfit(f"the killed primary {head.id} still shows HEALTHY")
            time.sleep(0.2)
        return members

    def act(world: World, members: list[Member]) -> list[Member]:
        path = f"/instances/{members[0].id}/action"
        reply = world.api.call("POST", path, json={"eject_replica_source": {}})
        if reply.status_code != 202:
            raise Unfit(f"the failover was refused: {reply.text}")
        return members

    def check(world: World, members: list[Member]) -> Check:
        old = members[0]
        view = world.settle(old.id)
        if view.get("replication") or view.get("replicas"):
            survivors = members  # the failover did not happen: the set is as it was
            head = old.id
        else:
            survivors = members[1:]
            views = {m.id: world.show(m.id) for m in survivors}
            found = [
                i for i, v in views.items() if v.get("replication", {}).get("role") == "primary"
            ]
            head = found[0] if found else survivors[0].id
            survivors.sort(key=lambda m: m.id != head)
        outcome, problems = set_outcome(world, survivors, head)
        if old not in survivors:
            members[:] = survivors
            world.drop(old.id)  # stopped and out of its set: not needed any more
            outcome = f"{outcome} (old primary {state_of(view)})"
        return outcome, problems

    return Scenario("failover", WorkflowName.FAILOVER, prepare, act, check, "promote")


def detach() -> Scenario:
    def prepare(world: World) -> list[Member]:
        members = world.replica_set(replicas=1)
        world.mark(members[0])
        return members

    def act(world: World, members: list[Member]) -> tuple[list[Member], Member]:
        replica = members[-1]
        body = {"instance": {"replica_of": None}}
        reply = world.api.call("PUT", f"/instances/{replica.id}", json=body)
        if reply.status_code != 202:
            raise Unfit(f"the detach was refused: {reply.text}")
        return members, replica

    def check(world: World, started: tuple[list[Member], Member]) -> Check:
        members, replica = started
        replica.marks = dict(replica.marks)
        world.wait_rows(replica, replica.where)
        outcome, problems = instance_outcome(world, replica, "ACTIVE")
        view = world.show(replica.id)
        if outcome == "ACTIVE" and view.get("replica_of"):
            problems.append("the instance still follows its primary")
        elif outcome == "ACTIVE":
            try:
                world.mark(replica)
            except CLIENT_ERRORS as exc:
                problems.append(f"the detached instance does not take writes: {exc}")
            members.remove(replica)
            if not problems:
                world.keep(replica)
        return outcome, problems

    return Scenario("detach", WorkflowName.DETACH, prepare, act, check, "detach")


SCENARIOS: tuple[Scenario, ...] = (
    provision("postgresql"),
    provision("mariadb"),
    provision("redis"),
    instance_change("restart", WorkflowName.RESTART, restart_request, no_judge, "restart_engine"),
    instance_change("flavor resize", WorkflowName.RESIZE_FLAVOR, flavor_request, flavor_judge,
                    "update_limits"),
    instance_change(
        "volume resize", WorkflowName.RESIZE_VOLUME, volume_request, volume_judge, "grow_online",
        off_path=tuple(
            (step, "taken only when the kernel refuses to grow a mounted file system")
            for step in ("stop_container", "grow_offline", "start_container", "wait_for_engine")
        ),
    ),
    instance_change("configuration attach", WorkflowName.APPLY_CONFIGURATION,
                    configuration_request, configuration_judge, "apply_values"),
    backup(incremental=False),
    backup(incremental=True),
    restore(point_in_time=False),
    restore(point_in_time=True),
    verify(),
    replica_create(),
    switchover(),
    failover(),
    detach(),
    delete(),
)  # fmt: skip

__all__ = ["PASSWORD", "SCENARIOS", "Scenario"]
