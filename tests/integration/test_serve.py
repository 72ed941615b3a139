"""``cellar serve`` (what ``make up`` runs) starts everything, starts again what dies, and
stops all of it on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.integration.identity import Identity
from tests.integration.stack import free_port


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(os.environ.get("CELLAR_TEST_PROFILE") == "production", reason="embedded only")
def test_serve_starts_and_stops_its_children(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELLAR_")}
    env.update({"CELLAR_HOME": str(tmp_path / "home"), "CELLAR_API_PORT": str(port)})
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "cellar.cli.main", "serve"], env=env, stdout=log, stderr=log
    )
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                if requests.get(f"http://127.0.0.1:{port}/", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        openrc = tmp_path / "home" / "admin-openrc"
        assert openrc.stat().st_mode & 0o777 == 0o600
        admin = Identity.from_openrc(openrc).admin
        reply = requests.get(
            f"http://127.0.0.1:{port}/v1.0/{admin.project_id}/flavors",
            headers={"X-Auth-Token": admin.token},
            timeout=5,
        )
        assert len(reply.json()["flavors"]) == 4
        anonymous = requests.get(
            f"http://127.0.0.1:{port}/v1.0/{admin.project_id}/flavors", timeout=5
        )
        assert anonymous.status_code == 401
        children = children_of(serve.pid)
        assert len(children) == 3
        assert (tmp_path / "home" / "cellar.db").exists()
        banner = f"Cellar is up at http://127.0.0.1:{port}"
        end = time.monotonic() + 30  # serve prints it once its own look at the API succeeds
        while banner not in (tmp_path / "serve.log").read_text() and time.monotonic() < end:
            time.sleep(0.1)
        assert banner in (tmp_path / "serve.log").read_text()
        assert str(openrc) in (tmp_path / "serve.log").read_text()  # where to log in
        assert (tmp_path / "home" / "cellar.db").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "home").stat().st_mode & 0o777 == 0o700
        (worker,) = [pid for pid in children if b" worker " in cmdline(pid)]
        os.kill(worker, signal.SIGKILL)  # a crash: serve starts a new worker by itself
        end = time.monotonic() + 30
        while time.monotonic() < end:
            again = [p for p in children_of(serve.pid) if b" worker " in cmdline(p) and p != worker]
            if again:
                break
            time.sleep(0.1)
        assert again, (tmp_path / "serve.log").read_text()[-2000:]
        said = (tmp_path / "serve.log").read_text()
        assert f"worker (pid {worker}) exited with signal 9 (SIGKILL)" in said
        assert f"worker started again (pid {again[0]})" in said
        children = children_of(serve.pid)
        assert len(children) == 3
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=40) == 0
        assert not [pid for pid in children if alive(pid)]
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        log.close()


@pytest.mark.skipif(os.environ.get("CELLAR_TEST_PROFILE") == "production", reason="embedded only")
def test_serve_with_tls_auto_answers_https_that_the_clients_verify(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELLAR_", "OS_"))}
    env.update({"CELLAR_HOME": str(home), "CELLAR_API_PORT": str(port), "CELLAR_TLS": "auto"})
    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "cellar.cli.main", "serve"], env=env, stdout=log, stderr=log
    )
    try:
        ca = str(home / "ca.crt")
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                if requests.get(f"https://127.0.0.1:{port}/", timeout=1, verify=ca).ok:
                    break
            except OSError:  # no CA file yet, or no answer yet
                time.sleep(0.2)
        with pytest.raises(requests.exceptions.SSLError):  # not Cellar's CA: not trusted
            requests.get(f"https://127.0.0.1:{port}/", timeout=5)
        with pytest.raises(requests.ConnectionError):  # no plaintext beside it
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        openrc = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (home / "admin-openrc").read_text().splitlines()
        )
        assert openrc["OS_AUTH_URL"] == f"https://127.0.0.1:{port}/identity/v3"
        assert openrc["OS_CACERT"] == ca
        cli_env = {**env, **openrc, "HOME": str(tmp_path)}
        cli = [sys.executable, "-m", "cellar.cli.main"]
        login = subprocess.run([*cli, "login"], env=cli_env, capture_output=True, text=True)
        assert login.returncode == 0, login.stderr
        listed = subprocess.run(
            [*cli, "instance", "list"], env=cli_env, capture_output=True, text=True
        )
        assert listed.returncode == 0, listed.stderr
        token = requests.post(
            openrc["OS_AUTH_URL"] + "/auth/tokens",
            json={"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"},
                "password": openrc["OS_PASSWORD"]}}},
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}},
            verify=ca, timeout=10,
        )  # fmt: skip
        assert token.status_code == 201, token.text
        urls = [e["url"] for s in token.json()["token"]["catalog"] for e in s["endpoints"]]
        assert urls and all(u.startswith("https://") for u in urls), urls
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=40) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        log.close()
