"""Running an engine's programs as its own operating-system user.

The agent runs as root in the container; the engine must not. Use :class:`OsUser` for
every subprocess and every file the engine reads, so the same code also works
unprivileged (tests, development) where ``name`` is ``None`` or the current user.

Privileges are dropped by ``setpriv`` (util-linux, in every Debian system) rather than
by ``subprocess``'s ``user=``/``group=``: those make CPython use a plain ``fork()``,
which runs gRPC's fork handlers in the child and can crash it before ``exec``.
Without them the child is started with ``vfork()`` and no handler runs.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class OsUser:
    """The account an engine runs as; ``None`` means the agent's own account."""

    name: str | None = None

    def _entry(self) -> pwd.struct_passwd | None:
        if self.name is None:
            return None
        entry = pwd.getpwnam(self.name)
        if entry.pw_uid == os.geteuid():
            return None
        return entry

    def command(self, argv: list[str]) -> list[str]:
        """``argv``, run as this user with no supplementary groups."""
        entry = self._entry()
        if entry is None:
            return argv
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise FileNotFoundError(f"setpriv (util-linux) is needed to run as {entry.pw_name}")
        return [
            setpriv,
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--clear-groups",
            "--",
            *argv,
        ]

    def environment(self) -> dict[str, str]:
        """A clean environment for this user's processes."""
        entry = self._entry()
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": entry.pw_dir if entry else os.environ.get("HOME", "/"),
        }
        if entry is not None:
            env["USER"] = env["LOGNAME"] = entry.pw_name
        return env

    def popen_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``subprocess`` to go with :meth:`command`."""
        return {"env": self.environment()}

    def own(self, path: Path) -> None:
        """Give ``path`` to this user (when the agent may and needs to)."""
        entry = self._entry()
        if entry is not None:
            os.chown(path, entry.pw_uid, entry.pw_gid)


def write_if_changed(path: Path, text: str, owner: OsUser) -> bool:
    """Replace ``path`` atomically with ``text`` (mode 0600, the engine's); True if it changed.

    Use it for every configuration file the agent writes for an engine.
    """
    if path.exists() and path.read_text() == text:
        return False
    scratch = path.with_name(path.name + ".cellar-new")
    scratch.write_text(text)
    os.chmod(scratch, 0o600)
    owner.own(scratch)
    os.replace(scratch, path)
    return True
