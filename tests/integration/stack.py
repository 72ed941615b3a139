"""A real Cellar stack for the integration tests: API, worker and beat as separate processes.

The processes are started with the same command lines as ``cellar serve``, so the
tests can kill one of them (the worker) and start it again.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import IO, Any

import docker
import requests
from sqlalchemy import select

from cellar import settings as settings_module
from cellar.db import Database
from cellar.identity.bootstrap import bootstrap, openrc_path
from cellar.models import Instance
from cellar.serve import child_environment, commands
from taskmanager.drivers.volumes import LoopVolumes
from tests.integration.identity import Identity


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Stack:
    home: Path
    env: dict[str, str]
    url: str
    processes: dict[str, subprocess.Popen[bytes]] = dataclasses.field(default_factory=dict)
    logs: dict[str, IO[bytes]] = dataclasses.field(default_factory=dict)
    identity: Identity | None = None  # the admin's access to the identity service

    def start(self, name: str) -> None:
        settings = settings_module.load()
        argv = commands(settings)[name]
        log = open(self.home / f"{name}.log", "ab")
        self.logs[name] = log
        self.processes[name] = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def reap(self, name: str) -> int | None:
        """The exit code of a process that ended by itself (None while it runs)."""
        process = self.processes[name]
        code = process.poll()
        if code is not None:
            self.processes.pop(name)
            self.logs.pop(name).close()
        return code

    def kill(self, name: str) -> None:
        """Kill a process at once, as a crash would."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        self.logs.pop(name).close()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in list(self.processes.items()):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            self.processes.pop(name)
        for log in self.logs.values():
            log.close()

    def log_text(self, name: str) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")

    def wait_for_api(self, within: float = 60.0) -> None:
        end = time.monotonic() + within
        while time.monotonic() < end:
            try:
                if requests.get(self.url + "/", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not answer within {within} s:\n{self.log_text('api')}")


def start_stack(home: Path, extra_env: dict[str, str], identity: Identity | None = None) -> Stack:
    """API, worker and beat on ``home``; ``identity`` is the admin's access to a Keystone
    that ``extra_env`` names (``CELLAR_AUTH_URL``), else Cellar's own identity API."""
    port = free_port()
    env = {
        **os.environ,
        "CELLAR_HOME": str(home),
        "CELLAR_API_PORT": str(port),
        "CELLAR_STEP_LEASE": "8",
        "CELLAR_HEALTH_GRACE": "4",
        **extra_env,
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("CELLAR_")})
    settings = settings_module.load()
    database = Database(settings.database_url)
    database.upgrade()
    if settings.own_identity:
        bootstrap(settings, database)
    database.engine.dispose()
    stack = Stack(home=home, env=child_environment(env), url=f"http://127.0.0.1:{port}")
    for name in ("api", "worker", "beat"):
        stack.start(name)
    stack.wait_for_api()
    if identity is not None:  # a real Keystone: its catalog must name this Cellar, as Trove's
        identity.register_service("database", "trove", f"{stack.url}/v1.0/%(tenant_id)s")
    stack.identity = identity or Identity.from_openrc(openrc_path(settings))
    return stack


class Api:
    """A thin client of one project's API, with helpers to wait for states.

    With ``identity`` it makes the project (named ``project``) and a user of it with
    ``role``, and calls as that user; ``project`` is then the project's id.
    """

    def __init__(
        self,
        url: str,
        project: str | None = None,
        identity: Identity | None = None,
        role: str = "member",
    ) -> None:
        name = project or f"it-{uuid.uuid4().hex[:12]}"
        self.session = requests.Session()
        self.project = self.project_name = name
        if identity is not None:
            login = identity.member_login(name, role)
            self.project = login.project_id
            self.session.headers["X-Auth-Token"] = login.token
        self.base = f"{url}/v1.0/{self.project}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, self.base + path, timeout=30, **kwargs)
        except requests.ConnectionError:
            if method != "GET":
                raise
            # a kept-alive connection the server closed as it was reused: ask once more
            return self.session.request(method, self.base + path, timeout=30, **kwargs)

    def wait_instance(
        self, instance_id: str, states: set[str], within: float = 180.0
    ) -> dict[str, Any]:
        end = time.monotonic() + within
        view: dict[str, Any] = {}
        while time.monotonic() < end:
            reply = self.call("GET", f"/instances/{instance_id}")
            if reply.status_code == 404 and "GONE" in states:
                return {"status": "GONE"}
            view = reply.json()["instance"]
            if view["status"] in states and not (view["status"] == "ACTIVE" and view.get("task")):
                return view
            time.sleep(0.2)
        raise AssertionError(f"instance {instance_id} did not reach {states}: {view}")

    def wait_task(self, task_id: str, within: float = 60.0) -> dict[str, Any]:
        end = time.monotonic() + within
        while time.monotonic() < end:
            task = self.call("GET", f"/tasks/{task_id}").json()["task"]
            if task["state"] != "RUNNING":
                return task
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} still running after {within} s")

    def instance_tasks(self, instance_id: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/instances/{instance_id}/tasks").json()["tasks"])


def leftovers(project: str) -> list[str]:
    """Names of containers, volumes, mounts and image files Cellar made for ``project`` and left."""
    client = docker.from_env()
    label = f"cellar.project={project}"
    names = [c.name for c in client.containers.list(all=True, filters={"label": label})]
    names += [v.name for v in client.volumes.list(filters={"label": label})]
    client.close()
    return names + loop_leftovers(project)


def project_volumes() -> LoopVolumes:
    return LoopVolumes(settings_module.load().volumes_dir)


def project_instances(project: str) -> list[str]:
    """Ids of every instance the project ever had (deleted ones too)."""
    database = Database(settings_module.load().database_url)
    try:
        with database.session() as session:
            return list(session.scalars(select(Instance.id).where(Instance.project_id == project)))
    finally:
        database.engine.dispose()


def loop_leftovers(project: str) -> list[str]:
    """The loop backend's mounts, image files and mount points left for ``project``."""
    volumes, names = project_volumes(), []
    for instance_id in project_instances(project):
        if volumes.device(instance_id) is not None:
            names.append(f"mount {volumes.mount_point(instance_id)}")
        for path in (volumes.image(instance_id), volumes.mount_point(instance_id)):
            if path.exists():
                names.append(str(path))
    return names


def remove_leftovers(project: str) -> None:
    client = docker.from_env()
    label = f"cellar.project={project}"
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True)
    volumes = project_volumes()
    for instance_id in project_instances(project):
        volumes.remove(instance_id)
    for volume in client.volumes.list(filters={"label": label}):
        volume.remove(force=True)
    for network in client.networks.list(filters={"label": label}):
        network.remove()
    client.close()
