"""What every crash cell checks once its workflow has settled.

No task of the project is still RUNNING, no secret outlives its task, and nothing that
Cellar made is left without an owner: every container, Docker volume, loop device,
volume image or mount point belongs to a live instance (an endpoint container to a
live replica set), no backup scratch file is left, and no scratch instance of a
verification outlives it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import docker
from sqlalchemy import select

from cellar.db import Database
from cellar.models import Instance, ReplicaSet, Secret, Task
from cellar.settings import Settings
from cellar.status import TaskState
from taskmanager.backup_storage import STALE_SCRATCH

CONTAINER = "cellar-"
ENDPOINT = "cellar-endpoint-"
INSTANCE_LABEL = "cellar.instance"  # on the data and spool volumes alike


def running_tasks(db: Database, project: str) -> list[str]:
    with db.session() as session:
        rows = session.execute(
            select(Task.workflow, Task.step).where(
                Task.project_id == project, Task.state == TaskState.RUNNING.value
            )
        ).all()
    return [f"{workflow}:{step or '-'}" for workflow, step in rows]


def wait_settled(db: Database, project: str, within: float) -> bool:
    """True once no task of ``project`` runs; False if some still run after ``within`` s."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not running_tasks(db, project):
            return True
        time.sleep(0.1)
    return not running_tasks(db, project)


def _live(db: Database, project: str) -> tuple[set[str], set[str], set[str]]:
    """Ids of the project's live instances, its every instance, and its live sets."""
    with db.session() as session:
        rows = session.execute(
            select(Instance.id, Instance.deleted_at).where(Instance.project_id == project)
        ).all()
        sets = session.scalars(
            select(ReplicaSet.id).where(
                ReplicaSet.project_id == project, ReplicaSet.deleted_at.is_(None)
            )
        ).all()
    return {i for i, gone in rows if gone is None}, {i for i, _ in rows}, set(sets)


def leftovers(db: Database, settings: Settings, project: str) -> list[str]:
    """Everything of ``project`` that no live owner explains, in words."""
    live, every, sets = _live(db, project)
    found = [f"task still RUNNING: {name}" for name in running_tasks(db, project)]
    found += _docker_leftovers(project, live, sets)
    found += _volume_leftovers(settings.volumes_dir, every - live)
    found += _loop_leftovers(settings.volumes_dir, live)
    found += _scratch_leftovers(db, settings, project)
    return found


def _docker_leftovers(project: str, live: set[str], sets: set[str]) -> list[str]:
    client = docker.from_env()
    try:
        label = {"label": f"cellar.project={project}"}
        found = []
        for container in client.containers.list(all=True, filters=label):
            name = container.name
            if name.startswith(ENDPOINT):
                if name.removeprefix(ENDPOINT) not in sets:
                    found.append(f"endpoint container of no live set: {name}")
            elif name.removeprefix(CONTAINER) not in live:
                found.append(f"container of no live instance: {name} ({container.status})")
        for volume in client.volumes.list(filters=label):
            if (volume.attrs.get("Labels") or {}).get(INSTANCE_LABEL) not in live:
                found.append(f"Docker volume of no live instance: {volume.name}")
        return found
    finally:
        client.close()


def _volume_leftovers(root: Path, gone: set[str]) -> list[str]:
    found = []
    for instance_id in sorted(gone):
        for path in (
            root / f"{instance_id}.img",
            root / f"{instance_id}.img.new",
            root / instance_id,
        ):
            if path.exists():
                found.append(f"volume file of a deleted instance: {path.name}")
    return found


def _loop_leftovers(root: Path, live: set[str]) -> list[str]:
    """Loop devices on image files of the volume folder whose instance is not live."""
    try:
        listing = subprocess.run(
            ["losetup", "-a"], capture_output=True, text=True, check=False, timeout=10
        ).stdout
    except FileNotFoundError:
        return []
    found = []
    for line in listing.splitlines():
        device, _, rest = line.partition(":")
        if str(root) not in rest:
            continue
        image = rest.rsplit("(", 1)[-1].rstrip(")").strip()
        instance_id = Path(image).name.removesuffix(".img")
        if instance_id not in live:
            found.append(f"loop device of no live instance: {device} on {Path(image).name}")
    return found


def _scratch_leftovers(db: Database, settings: Settings, project: str) -> list[str]:
    with db.session() as session:
        running = set(
            session.scalars(
                select(Task.id).where(
                    Task.project_id == project, Task.state == TaskState.RUNNING.value
                )
            )
        )
        busy = set(
            session.scalars(
                select(Task.instance_id).where(Task.id.in_(running), Task.instance_id.is_not(None))
            )
        )
        scratch = session.scalars(
            select(Instance.id).where(
                Instance.project_id == project,
                Instance.purpose.is_not(None),
                Instance.deleted_at.is_(None),
            )
        ).all()
        secrets = session.scalars(
            select(Secret.task_id)
            .join(Task, Task.id == Secret.task_id)
            .where(Task.project_id == project, Task.state != TaskState.RUNNING.value)
        ).all()
    found = [f"scratch instance left: {i}" for i in scratch if i not in busy]
    found += [f"secret of an ended task: {task_id}" for task_id in secrets]
    backups = settings.backups_dir / project
    if backups.is_dir() and not running:
        # a killed archive round's scratch file is swept by the next write in its folder
        old = time.time() - STALE_SCRATCH
        found += [
            f"backup scratch file left: {p.relative_to(backups)}"
            for p in backups.rglob("*.partial")
            if p.parent == backups or p.stat().st_mtime < old
        ]
    return found
