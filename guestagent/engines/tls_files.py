"""The engine's TLS certificate, where the engine's own user may read it.

The worker puts the engine's certificate, key and Cellar's CA in the agent's TLS folder
(``engine.crt``, ``engine.key``, ``ca.crt``; mounted read-only, private to root) with
``engine.json``, the instance's policy (``{"required": true}`` refuses plaintext
connections). :class:`EngineTls` copies them into :data:`RUN_DIR`, a folder only root
may write, as files of the engine's user (mode 0600), and writes there each engine's
TLS settings file, which the engine's main configuration includes by its absolute path.
The engine user can read its key (it serves with it) but cannot plant anything there.

:meth:`EngineTls.sync` runs before the engine starts and then every few seconds
(:func:`watch`): a renewed certificate or a changed policy is copied again and the
engine reloads it without a restart.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pwd
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from guestagent.engines.os_user import OsUser

logger = logging.getLogger(__name__)

RUN_DIR = Path("/run/cellar/tls")
SOURCES = ("engine.crt", "engine.key", "ca.crt")
POLICY = "engine.json"
CERT, KEY, CA = "server.crt", "server.key", "ca.crt"  # the copies' names
WATCH_SECONDS = 5.0
_NEVER = object()


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """Where the engine reads its certificate, key and Cellar's CA, and whether
    plaintext connections are refused."""

    cert: Path
    key: Path
    ca: Path
    required: bool = False


class EngineTls:
    """The engine's copy of its TLS files; ``source`` None means no TLS (development)."""

    def __init__(self, source: Path | None, owner: OsUser, target: Path = RUN_DIR) -> None:
        self.source = source
        self.owner = owner
        self.target = target
        self._seen: object = _NEVER  # the first sync always reports a change
        self._files: TlsFiles | None = None

    @classmethod
    def off(cls) -> EngineTls:
        return cls(None, OsUser())

    def files(self) -> TlsFiles | None:
        """The engine's TLS files as last synced; None when it serves without TLS."""
        return self._files

    def settings_path(self, name: str) -> Path:
        """Where the engine's TLS settings file ``name`` is kept (see :meth:`write`)."""
        return self.target / name

    def _signature(self) -> tuple[object, ...] | None:
        if self.source is None:
            return None
        found: list[object] = []
        for name in (*SOURCES, POLICY):
            try:
                info = os.stat(self.source / name)
            except FileNotFoundError:
                found.append(None)
                continue
            found.append((info.st_ino, info.st_mtime_ns, info.st_size))
        if any(f is None for f in found[: len(SOURCES)]):
            return None  # no certificate (yet): no TLS
        return tuple(found)

    def sync(self) -> bool:
        """Copy the worker's files if they changed since the last call; True if they did
        (the engine's settings then need writing and reloading)."""
        signature = self._signature()
        if signature == self._seen:
            return False
        if signature is None or self.source is None:
            self._seen, self._files = None, None
            return True
        self._make_target()
        for name, copy in zip(SOURCES, (CERT, KEY, CA), strict=True):
            self._copy(self.source / name, copy)
        self._seen = signature
        self._files = TlsFiles(
            self.target / CERT, self.target / KEY, self.target / CA, self._required()
        )
        logger.info("engine TLS files in place (required: %s)", self._files.required)
        return True

    def _required(self) -> bool:
        assert self.source is not None
        try:
            policy = json.loads((self.source / POLICY).read_text())
        except FileNotFoundError:
            return False
        except ValueError:
            logger.warning("the TLS policy file is not JSON; plaintext stays refused")
            return True
        return bool(policy.get("required", False)) if isinstance(policy, dict) else True

    def _make_target(self) -> None:
        """The folder, root's alone to write; a symlink or foreign owner is replaced."""
        self.target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        try:
            info = os.lstat(self.target)
        except FileNotFoundError:
            os.mkdir(self.target, 0o755)
            info = os.lstat(self.target)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise OSError(f"{self.target} is not a folder of the agent's own")
        os.chmod(self.target, 0o755)  # noqa: S103  (the engine user reads its files here)

    def _copy(self, source: Path, name: str) -> None:
        self.write(name, source.read_bytes())

    def write(self, name: str, content: bytes) -> bool:
        """Put ``content`` in ``name`` in the folder, 0600 and the engine user's, replaced
        whole; True if it changed."""
        path = self.target / name
        try:
            with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as old:
                if old.read() == content:
                    return False
        except FileNotFoundError:
            pass
        folder = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            scratch = f".{name}.new"
            try:
                os.unlink(scratch, dir_fd=folder)
            except FileNotFoundError:
                pass
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(scratch, flags, 0o600, dir_fd=folder)
            with open(fd, "wb") as out:
                out.write(content)
                out.flush()
                ids = _ids(self.owner)
                if ids is not None:
                    os.fchown(out.fileno(), *ids)
            os.replace(scratch, name, src_dir_fd=folder, dst_dir_fd=folder)
        finally:
            os.close(folder)
        return True


def _ids(owner: OsUser) -> tuple[int, int] | None:
    """The engine user's uid and gid, or None when files stay the agent's own."""
    if owner.name is None:
        return None
    entry = pwd.getpwnam(owner.name)
    return None if entry.pw_uid == os.geteuid() else (entry.pw_uid, entry.pw_gid)


def watch(check: Callable[[], object], stop: threading.Event) -> threading.Thread:
    """Call ``check`` every few seconds on a daemon thread until ``stop`` is set."""

    def loop() -> None:
        while not stop.wait(WATCH_SECONDS):
            try:
                check()
            except Exception:  # keep watching: the next round may succeed
                logger.exception("refreshing the engine's TLS files failed")

    thread = threading.Thread(target=loop, name="engine-tls", daemon=True)
    thread.start()
    return thread
