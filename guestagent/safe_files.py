"""Files the agent (root) writes in folders that an engine's OS user can write to.

The tenant's database superuser can run programs as the engine's user (PostgreSQL's
``COPY ... TO PROGRAM``, for one), so whatever sits in a folder that user may write to
(the data directory, the socket, archive and configuration folders) can be a planted
symlink, FIFO or hard link by the time the agent gets there. A root write that followed
one would make or change a file outside the engine's; a root ``chown`` would hand the
engine a system file. Every write, create, chmod and chown the agent makes in such a
folder goes through this module:

- the folder is opened with ``O_DIRECTORY | O_NOFOLLOW`` and each name is used relative
  to that descriptor, so the folder cannot turn into a link half way;
- a new file is made under a scratch name with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (a
  scratch left by an earlier attempt is unlinked first), gets its mode and owner through
  its descriptor (``fchmod``, ``fchown``), reaches the disk, and is renamed over the
  target with both directory descriptors;
- an existing file or folder is opened with ``O_NOFOLLOW`` (and ``O_NONBLOCK``: a FIFO
  cannot hang the agent) before it is read, chmod-ed or chown-ed.

A symlink, or anything but a plain file or a folder, where the agent expects one is
logged and refused with :class:`~guestagent.errors.UnsafePath`, never followed; so is a
plain file with more hard links than it should have when it is read or chown-ed (it
could be a system file linked in).

Trust: a path is taken as it is up to ``trusted``, by default the parent of the folder
that holds the file (or the folder) the call is about; each component after it is
opened without following a link. The folders up to ``trusted`` are the agent's or the
image's, made by root: the engine's user can neither rename nor replace them, since
none of them sits in a folder that user may write to. The engine's own folder (its
data directory, say) and what is in it are the engine's. Pass ``trusted`` for a path
that goes deeper into the engine's folders (``<data_dir>/restore/0/<file>``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from guestagent.errors import UnsafePath

logger = logging.getLogger(__name__)

SCRATCH_SUFFIX = ".cellar-new"
FOLDER = os.O_RDONLY | os.O_DIRECTORY
EXISTING = os.O_RDONLY | os.O_NONBLOCK
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


class Owner(Protocol):
    """Whom a file is given to (an ``OsUser``): its uid and gid, or None to leave it."""

    def ids(self) -> tuple[int, int] | None: ...


def _refused(path: Path, why: str) -> UnsafePath:
    logger.warning("refused %s: %s", path, why)
    return UnsafePath(f"refused {path}: {why}")


def _is_link(folder: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_in(folder: int, name: str, flags: int, path: Path, mode: int = 0o600) -> int:
    """``os.open`` of ``name`` in ``folder`` that refuses a symlink rather than follow it."""
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=folder)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EEXIST) and _is_link(folder, name):
            raise _refused(path, "it is a symlink") from exc
        if exc.errno == errno.ENXIO:  # a FIFO with no reader, or a socket
            raise _refused(path, "it is not a plain file or a folder") from exc
        raise


def _parts(path: Path, trusted: Path) -> tuple[str, ...]:
    parts = path.relative_to(trusted).parts
    if ".." in parts:
        raise ValueError(f"{path} leaves {trusted}")
    return parts


def open_folder(path: Path, trusted: Path | None = None) -> int:
    """A descriptor of the folder ``path`` (the caller closes it); each component after
    ``trusted`` (default: the folder's parent) is opened without following a link."""
    base = path.parent if trusted is None else trusted
    parts = _parts(path, base)
    fd = os.open(base, FOLDER | os.O_CLOEXEC)
    try:
        walked = base
        for part in parts:
            walked = walked / part
            inner = _open_in(fd, part, FOLDER, walked)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def opened_folder(path: Path, trusted: Path | None = None) -> Iterator[int]:
    """:func:`open_folder` for the length of a ``with`` block."""
    fd = open_folder(path, trusted)
    try:
        yield fd
    finally:
        os.close(fd)


def _checked(fd: int, path: Path, folder_ok: bool = False, links: int = 1) -> int:
    """``fd`` if it is a plain file with at most ``links`` hard links or, when
    ``folder_ok``, a folder; else it is closed and refused."""
    info = os.fstat(fd)
    why = ""
    if stat.S_ISDIR(info.st_mode):
        why = "" if folder_ok else "it is a folder, not a plain file"
    elif not stat.S_ISREG(info.st_mode):
        why = "it is not a plain file or a folder"
    elif info.st_nlink > links:
        why = f"it has {info.st_nlink} hard links"
    if why:
        os.close(fd)
        raise _refused(path, why)
    return fd


def _open_existing(
    folder: int, name: str, path: Path, folder_ok: bool = False, links: int = 1
) -> int:
    fd = _open_in(folder, name, EXISTING, path)
    return _checked(fd, path, folder_ok, links)


def _give(fd: int, owner: Owner | None) -> None:
    ids = owner.ids() if owner is not None else None
    if ids is not None:
        os.fchown(fd, *ids)


def open_reading(path: Path, trusted: Path | None = None, links: int = 1) -> BinaryIO:
    """The plain file ``path`` (with at most ``links`` hard links), open for reading;
    FileNotFoundError if it is missing."""
    with opened_folder(path.parent, trusted) as folder:
        fd = _open_existing(folder, path.name, path, links=links)
    return open(fd, "rb")


def read_bytes(path: Path, trusted: Path | None = None) -> bytes:
    """What the plain file ``path`` holds; FileNotFoundError if it is missing."""
    with open_reading(path, trusted) as handle:
        return handle.read()


def read_text(path: Path, trusted: Path | None = None, missing: str | None = None) -> str:
    """:func:`read_bytes` as UTF-8 text; ``missing``, if given, for a missing file."""
    try:
        return read_bytes(path, trusted).decode("utf-8")
    except FileNotFoundError:
        if missing is None:
            raise
        return missing


def _create(folder: int, name: str, path: Path, mode: int, owner: Owner | None) -> int:
    """A new file ``name`` in ``folder``, exactly ``mode``, given to ``owner``; whatever had
    the name before is unlinked first (never followed)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)
    try:
        fd = _open_in(folder, name, NEW_FILE, path, mode)
    except FileExistsError as exc:
        raise _refused(path, "it was made again while the agent made it") from exc
    try:
        os.fchmod(fd, mode)
        _give(fd, owner)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refuse_link_at(folder: int, name: str, path: Path) -> None:
    if _is_link(folder, name):
        raise _refused(path, "it is a symlink")


@contextlib.contextmanager
def writing(
    path: Path,
    owner: Owner | None,
    mode: int = 0o600,
    scratch: str | None = None,
    trusted: Path | None = None,
) -> Iterator[BinaryIO]:
    """A new file for ``path`` (exactly ``mode``, ``owner``'s), written in the block under
    the name ``scratch`` (default ``<name>.cellar-new``) and renamed over ``path`` once the
    block ends; if the block fails, the scratch is removed and ``path`` is left as it was.
    A symlink at ``path`` is refused, not replaced."""
    name = scratch or path.name + SCRATCH_SUFFIX
    with opened_folder(path.parent, trusted) as folder:
        fd = _create(folder, name, path.with_name(name), mode, owner)
        moved = False
        try:
            with open(fd, "wb") as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            _refuse_link_at(folder, path.name, path)
            os.replace(name, path.name, src_dir_fd=folder, dst_dir_fd=folder)
            moved = True
            os.fsync(folder)
        finally:
            if not moved:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=folder)


def write_file(
    path: Path,
    data: bytes,
    owner: Owner | None,
    mode: int = 0o600,
    scratch: str | None = None,
    trusted: Path | None = None,
) -> None:
    """Replace ``path`` atomically with ``data`` (see :func:`writing`)."""
    with writing(path, owner, mode, scratch, trusted) as out:
        out.write(data)


def create_file(
    path: Path, owner: Owner | None, mode: int = 0o600, trusted: Path | None = None
) -> BinaryIO:
    """A new file at ``path`` (exactly ``mode``, ``owner``'s), open for writing in place;
    whatever had the name before is unlinked first. Use it to fill a new folder."""
    with opened_folder(path.parent, trusted) as folder:
        fd = _create(folder, path.name, path, mode, owner)
    return open(fd, "wb")


def append_to(path: Path, mode: int = 0o666) -> BinaryIO:
    """The plain file ``path`` open for appending, made (``mode`` less the umask, the
    agent's) if missing."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
    with opened_folder(path.parent) as folder:
        fd = _checked(_open_in(folder, path.name, flags, path, mode), path)
    return open(fd, "ab")


def touch(path: Path, owner: Owner | None = None, mode: int = 0o666) -> None:
    """Make ``path`` exist as a plain file, as ``Path.touch`` would (a new one gets ``mode``
    less the umask), and give it to ``owner``."""
    with opened_folder(path.parent) as folder:
        try:
            fd = _open_in(folder, path.name, NEW_FILE, path, mode)
        except FileExistsError:
            fd = _open_existing(folder, path.name, path)
    try:
        os.utime(fd)
        _give(fd, owner)
    finally:
        os.close(fd)


def make_dir(
    path: Path,
    owner: Owner | None = None,
    mode: int | None = None,
    exist_ok: bool = True,
    trusted: Path | None = None,
) -> None:
    """Make the folder ``path``, and any missing folder above it as ``mkdir -p`` would.
    A new ``path`` gets exactly ``mode`` if given (else 0777 less the umask); ``path`` goes
    to ``owner`` even when it was there. Each component after ``trusted`` (default: the
    parent of the folder that holds ``path``) is opened without following a link."""
    base = path.parent.parent if trusted is None else trusted
    parts = _parts(path, base)
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base, FOLDER | os.O_CLOEXEC)
    made = False
    try:
        walked = base
        for number, part in enumerate(parts, start=1):
            walked = walked / part
            last = number == len(parts)
            made = False
            try:
                os.mkdir(part, mode if last and mode is not None else 0o777, dir_fd=fd)
                made = True
            except FileExistsError:
                if last and not exist_ok:
                    raise
            inner = _open_in(fd, part, FOLDER, walked)
            os.close(fd)
            fd = inner
        if made and mode is not None:
            os.fchmod(fd, mode)
        _give(fd, owner)
    finally:
        os.close(fd)


def own(path: Path, owner: Owner, trusted: Path | None = None) -> None:
    """Give the plain file or folder ``path`` to ``owner`` through its descriptor."""
    ids = owner.ids()
    if ids is None:
        return
    with opened_folder(path.parent, trusted) as folder:
        fd = _open_existing(folder, path.name, path, folder_ok=True)
    try:
        os.fchown(fd, *ids)
    finally:
        os.close(fd)


def own_tree(path: Path, owner: Owner, trusted: Path | None = None) -> None:
    """Give the folder ``path`` and everything in it to ``owner``; a symlink or anything
    else but plain files and folders in it is refused (what came before is kept). The
    folders up to ``path`` are checked as in :func:`make_dir`."""
    ids = owner.ids()
    if ids is None:
        return
    with opened_folder(path, path.parent.parent if trusted is None else trusted) as top:
        os.fchown(top, *ids)
        for where, folders, files, folder in os.fwalk(".", dir_fd=top):
            for name in folders + files:
                fd = _open_existing(folder, name, path / where / name, folder_ok=True)
                try:
                    os.fchown(fd, *ids)
                finally:
                    os.close(fd)


def move(source: Path, target: Path, trusted: Path | None = None) -> None:
    """Rename ``source`` to ``target`` (``os.replace``) through their folders' descriptors."""
    with (
        opened_folder(source.parent, trusted) as origin,
        opened_folder(target.parent, trusted) as destination,
    ):
        os.replace(source.name, target.name, src_dir_fd=origin, dst_dir_fd=destination)


def remove(path: Path, trusted: Path | None = None) -> bool:
    """Unlink ``path`` (a link itself, never what it points to); True if it was there."""
    try:
        with opened_folder(path.parent, trusted) as folder:
            os.unlink(path.name, dir_fd=folder)
    except FileNotFoundError:
        return False
    return True


def remove_tree(path: Path, ignore_errors: bool = False, trusted: Path | None = None) -> None:
    """``shutil.rmtree`` of the folder ``path`` through its parent's descriptor, so no link
    on the way is followed; a symlink or FIFO at ``path`` is refused before rmtree opens it
    (rmtree's own open would wait on a FIFO)."""
    try:
        with opened_folder(path.parent, trusted) as folder:
            os.close(_open_in(folder, path.name, FOLDER, path))
            shutil.rmtree(path.name, ignore_errors=ignore_errors, dir_fd=folder)
    except (OSError, UnsafePath):
        if not ignore_errors:
            raise
