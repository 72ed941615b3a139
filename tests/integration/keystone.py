"""A real Keystone for the production profile: Debian's ``keystone``, served by uWSGI.

Each test session gets a private Keystone on a free loopback port, in its own folder:
a SQLite database, Fernet tokens, the ``admin`` project, user and roles that
``keystone-manage bootstrap`` makes, and a ``service`` project whose ``cellar`` user
holds the ``service`` role, which is what Keystone's policy asks of a service that
validates other users' tokens (``identity:validate_token``).

Setting that up takes most of a minute, nearly all of it Keystone's imports, so it is
done once per Keystone version into a template folder under the system's temporary
folder. A session copies the template, points the catalog's identity endpoints at its
own port and serves the copy, which takes a few seconds. ``scripts/test-deps.sh`` installs the
packages.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import hashlib
import logging
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from tests.integration.identity import Identity
from tests.integration.stack import free_port

logger = logging.getLogger(__name__)

KEYSTONE_MANAGE = Path("/usr/bin/keystone-manage")
UWSGI = Path("/usr/bin/uwsgi_python3")
WSGI_SCRIPT = Path("/usr/bin/keystone-wsgi-public")
ADMIN = "admin"  # the bootstrap's user, project and role
REGION = "RegionOne"
SERVICE_PROJECT = "service"
SERVICE_USER = "cellar"
SERVICE_ROLE = "service"
START_WITHIN = 90.0  # seconds; Keystone's imports alone take several on a busy machine
TEMPLATE_STEPS = "db_sync fernet_setup credential_setup bootstrap wal service-user url"

# {root} is the folder of one Keystone: the template's, or a session's copy of it.
CONFIG = """\
[DEFAULT]
log_file = {root}/keystone.log
use_stderr = false

[database]
connection = sqlite:///{root}/keystone.db
sqlite_synchronous = false

[token]
provider = fernet
# the suite logs its admin in once per session, and a session may last over an hour
expiration = 14400

[fernet_tokens]
key_repository = {root}/fernet-keys

[fernet_receipts]
key_repository = {root}/fernet-keys

[credential]
key_repository = {root}/credential-keys

[identity]
# bcrypt's fewest rounds: the tests log many users in
password_hash_rounds = 4

[oslo_policy]
# Keystone's built-in policy, whatever the host's /etc/keystone holds
policy_file = {root}/policy.yaml
policy_dirs = {root}/policy.d
"""

UWSGI_CONFIG = """\
[uwsgi]
http-socket = 127.0.0.1:{port}
wsgi-file = {script}
master = true
# processes, not threads: a SQLite connection must stay in the thread that opened it
processes = 4
threads = 1
enable-threads = true
need-app = true
die-on-term = true
no-orphans = true
buffer-size = 65535
# an http-socket keeps no connection alive: say so, or clients reuse closed ones
add-header = Connection: close
env = OS_KEYSTONE_CONFIG_DIR={root}
logto = {root}/uwsgi.log
"""


def installed() -> bool:
    """Whether this host has the Keystone and uWSGI that ``scripts/test-deps.sh`` installs."""
    return all(p.exists() for p in (KEYSTONE_MANAGE, UWSGI, WSGI_SCRIPT))


def _version() -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "python3-keystone"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    return done.stdout.strip() or "unknown"


def _manage(root: Path, *args: str) -> None:
    done = subprocess.run(
        [str(KEYSTONE_MANAGE), "--config-file", str(root / "keystone.conf"), *args],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(
            f"keystone-manage {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )


def _configure(root: Path) -> None:
    (root / "keystone.conf").write_text(CONFIG.format(root=root))
    (root / "policy.d").mkdir(exist_ok=True)


def _build(work: Path) -> None:
    """Set a Keystone up in ``work``: its database, keys, admin and Cellar's service user."""
    _configure(work)
    _manage(work, "db_sync")
    owner = ("--keystone-user", getpass.getuser(), "--keystone-group", grp.getgrgid(os.getgid())[0])
    for keys in ("fernet_setup", "credential_setup"):
        _manage(work, keys, *owner)  # the keys belong to who runs the tests (root, usually)
    password = secrets.token_urlsafe(18)
    server = KeystoneServer(work)
    _manage(
        work, "bootstrap", "--bootstrap-password", password,
        "--bootstrap-admin-url", server.url, "--bootstrap-public-url", server.url,
        "--bootstrap-region-id", REGION,
    )  # fmt: skip
    (work / "admin-password").write_text(password)
    (work / "url").write_text(server.url)
    # readers must not hold writers up: the worker processes share the file
    with contextlib.closing(sqlite3.connect(work / "keystone.db")) as db:
        db.execute("PRAGMA journal_mode=WAL")
    server.serve()
    try:
        admin = server.admin()
        admin.call("POST", "/roles", json={"role": {"name": SERVICE_ROLE}})
        project_id = admin.project(SERVICE_PROJECT)
        _name, service_password, _id = admin.user(project_id, SERVICE_ROLE, SERVICE_USER)
        (work / "service-password").write_text(service_password)
    finally:
        server.stop()


def template() -> Path:
    """The folder of a Keystone set up for this host's version (made once, then reused)."""
    key = f"{_version()}\n{TEMPLATE_STEPS}\n{CONFIG}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    final = Path(tempfile.gettempdir()) / f"cellar-keystone-{digest}"
    if (final / "ready").exists():
        return final
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="cellar-keystone-build-"))
    try:
        _build(work)
        (work / "ready").write_text("")
        try:
            work.rename(final)
        except OSError:  # another session made one first
            if not (final / "ready").exists():
                raise
        else:
            logger.info("Keystone template made in %.1f s", time.monotonic() - started)
        return final
    finally:
        shutil.rmtree(work, ignore_errors=True)


class KeystoneServer:
    """A private Keystone on loopback: ``start`` it for a session, ``stop`` it by its PID."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    @property
    def admin_password(self) -> str:
        return (self.root / "admin-password").read_text()

    @property
    def service_password(self) -> str:
        return (self.root / "service-password").read_text()

    def cellar_env(self) -> dict[str, str]:
        """The settings that make Cellar validate its tokens here, as its service user."""
        return {
            "CELLAR_AUTH_URL": self.url,
            "CELLAR_AUTH_USERNAME": SERVICE_USER,
            "CELLAR_AUTH_PASSWORD": self.service_password,
            "CELLAR_AUTH_PROJECT": SERVICE_PROJECT,
            "CELLAR_ADMIN_PROJECT": ADMIN,
        }

    def admin(self) -> Identity:
        """The bootstrap admin's access (the admin role on the admin project)."""
        return Identity(self.url, ADMIN, self.admin_password, ADMIN)

    def start(self) -> None:
        """A copy of the template, served, with the catalog naming this Keystone's URL."""
        source = template()
        started = time.monotonic()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.copytree(source, self.root, ignore=shutil.ignore_patterns("*.log", "ready"))
        _configure(self.root)
        # Keystone's API would take seconds to change them: its first answers are slow
        with contextlib.closing(sqlite3.connect(self.root / "keystone.db")) as db, db:
            old = (self.root / "url").read_text()
            db.execute("UPDATE endpoint SET url = ? WHERE url = ?", (self.url, old))
        (self.root / "url").write_text(self.url)
        self.serve()
        logger.info("Keystone ready at %s in %.1f s", self.url, time.monotonic() - started)

    def serve(self) -> None:
        """Run uWSGI on this folder and wait until ``GET /v3`` answers."""
        ini = self.root / "uwsgi.ini"
        ini.write_text(UWSGI_CONFIG.format(port=self.port, script=WSGI_SCRIPT, root=self.root))
        # the real HOME keeps the entry points' cache (~/.cache) from one session to the next
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        self.process = subprocess.Popen(
            [str(UWSGI), "--ini", str(ini)], env=env, cwd=self.root, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        end = time.monotonic() + START_WITHIN
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"uWSGI ended with {self.process.returncode}:\n{self.logs()}")
            try:
                if requests.get(self.url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"Keystone did not answer at {self.url} within {START_WITHIN} s:\n{self.logs()}"
        )

    def logs(self) -> str:
        text = ""
        for name in ("uwsgi.log", "keystone.log"):
            path = self.root / name
            if path.exists():
                text += f"--- {name}\n{path.read_text(errors='replace')[-3000:]}\n"
        return text

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # with die-on-term the master ends its workers
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
