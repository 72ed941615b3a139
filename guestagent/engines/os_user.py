"""Running an engine's programs as its own operating-system user.

The agent runs as root in the container; the engine must not. Use :class:`OsUser` for
every subprocess and every file the engine reads, so the same code also works
unprivileged (tests, development) where ``name`` is ``None`` or the current user.

Privileges are dropped by ``setpriv`` (util-linux, in every Debian system) rather than
by ``subprocess``'s ``user=``/``group=``: those make CPython use a plain ``fork()``,
which runs gRPC's fork handlers in the child and can crash it before ``exec``.
Without them the child is started with ``vfork()`` and no handler runs.

Files in the engine's folders are written and given away through ``guestagent.safe_files``:
the engine's user can plant symlinks there, and the agent never follows one.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
from pathlib import Path
from typing import Any

from guestagent import safe_files


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

    def ids(self) -> tuple[int, int] | None:
        """The uid and gid this user's files get; None when the agent's own are right."""
        entry = self._entry()
        return None if entry is None else (entry.pw_uid, entry.pw_gid)

    def own(self, path: Path) -> None:
        """Give the file or folder ``path`` to this user (when the agent may and needs to).

        A symlink at ``path`` is refused (UnsafePath), never followed; so is a FIFO, or a
        file with a second hard link."""
        safe_files.own(path, self)


def write_if_changed(path: Path, text: str, owner: OsUser) -> bool:
    """Replace ``path`` atomically with ``text`` (mode 0600, the engine's); True if it changed.

    Use it for every configuration file the agent writes for an engine. Neither the
    comparison nor the write follows a symlink (see ``guestagent.safe_files``).
    """
    data = text.encode("utf-8")
    try:
        if safe_files.read_bytes(path) == data:
            return False
    except FileNotFoundError:
        pass
    safe_files.write_file(path, data, owner, mode=0o600)
    return True
