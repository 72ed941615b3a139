"""Size-enforced data volumes: one sparse ext4 image file per instance, loop-mounted.

``<root>/<id>.img`` holds the instance's file system; it is mounted at
``<root>/<id>/`` and the container binds ``<root>/<id>/data``, a folder *inside*
that file system. When the mount is missing (the host restarted), that folder
does not exist, so Docker refuses to start the container rather than let the
engine write into the empty mount point; the worker mounts it again first.

Every method looks at ``/proc/self/mounts`` and at the file before acting, so a
step that runs twice finds its own earlier work. The tools' failures become
``ComputeError`` carrying the tool's own message. One lock file serialises the
changes of all workers on this host.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cellar.errors import ComputeError
from cellar.settings import find_tool

logger = logging.getLogger(__name__)

GIB = 1024**3
DATA_FOLDER = "data"
TOOL_TIMEOUT = 300.0
MOUNTS = Path("/proc/self/mounts")
REFUSED = ("Permission denied", "not permitted", "not supported", "Inappropriate ioctl")

Runner = Callable[[Sequence[str], Sequence[int]], str]


class VolumeNotResizable(ComputeError):
    """The instance's data is not on a size-enforced volume (a plain Docker volume)."""


class VolumeBusy(ComputeError):
    """Something still holds the file system (a container being torn down): try again soon."""


class OnlineResizeRefused(ComputeError):
    """The kernel refused to grow the mounted file system; it can be grown unmounted."""


def run_tool(argv: Sequence[str], ok: Sequence[int] = (0,)) -> str:
    """Run a system tool; its stdout, or ``ComputeError`` with what it said."""
    path = find_tool(argv[0])
    if path is None:
        raise ComputeError(f"{argv[0]} is not installed on this host")
    try:
        done = subprocess.run(
            [path, *argv[1:]], capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ComputeError(f"{argv[0]} failed: {exc}") from exc
    if done.returncode not in ok:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        message = said[-1] if said else f"exit status {done.returncode}"
        raise ComputeError(f"{argv[0]} failed: {message}")
    return done.stdout


def _unescape(field: str) -> str:
    """Undo the octal escapes of /proc/self/mounts (``\\040`` for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


class LoopVolumes:
    """The loop-mounted volumes under ``root`` (``CELLAR_HOME/volumes``)."""

    def __init__(self, root: Path, run: Runner = run_tool, mounts: Path = MOUNTS) -> None:
        self.root = Path(os.path.realpath(root))
        self._run = run
        self._mounts = mounts

    def image(self, instance_id: str) -> Path:
        return self.root / f"{instance_id}.img"

    def mount_point(self, instance_id: str) -> Path:
        return self.root / instance_id

    def data_dir(self, instance_id: str) -> Path:
        """The folder bound into the container; it exists only while the volume is mounted."""
        return self.mount_point(instance_id) / DATA_FOLDER

    def exists(self, instance_id: str) -> bool:
        return self.image(instance_id).exists()

    def device(self, instance_id: str) -> str | None:
        """The loop device mounted at the instance's mount point, or None."""
        where = str(self.mount_point(instance_id))
        for line in self._mounts.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and _unescape(fields[1]) == where:
                return _unescape(fields[0])
        return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def ensure(self, instance_id: str, size_gb: int) -> Path:
        """Make, format and mount the instance's volume unless done; its data folder."""
        with self._locked():
            if not self.exists(instance_id):
                self._make(instance_id, size_gb)
            self._mount(instance_id)
            data = self.data_dir(instance_id)
            if not data.is_dir():
                data.mkdir(mode=0o700)
            return data

    def remount(self, instance_id: str) -> bool:
        """Mount an existing volume that is not mounted; True if it had to be mounted."""
        with self._locked():
            if not self.exists(instance_id) or self.device(instance_id) is not None:
                return False
            return self._mount(instance_id)

    def grow(self, instance_id: str, size_gb: int, offline: bool = False) -> None:
        """Grow the file to ``size_gb`` GiB and the file system to fill it (never shrinks).

        Online, the mounted file system grows in place (``OnlineResizeRefused`` when
        the kernel does not allow it); offline, the container must be stopped: the
        volume is unmounted, checked, grown and mounted again.
        """
        with self._locked():
            image = self.image(instance_id)
            if not image.exists():
                raise VolumeNotResizable(f"instance {instance_id} has no volume image to grow")
            target = size_gb * GIB
            if image.stat().st_size < target:
                logger.info("growing %s to %d GiB", image, size_gb)
                try:
                    os.truncate(image, target)
                except OSError as exc:
                    raise ComputeError(f"cannot grow {image.name}: {exc.strerror}") from exc
            if offline:
                self._grow_unmounted(instance_id)
            else:
                self._grow_mounted(instance_id)

    def remove(self, instance_id: str) -> bool:
        """Unmount, detach and delete the volume; False when there was nothing left."""
        with self._locked():
            image, where = self.image(instance_id), self.mount_point(instance_id)
            found = image.exists() or where.exists()
            self._unmount(instance_id)
            if self.device(instance_id) is not None or os.path.ismount(where):
                raise ComputeError(f"{where} is still mounted")
            image.unlink(missing_ok=True)
            self._scratch(instance_id).unlink(missing_ok=True)
            if where.exists():
                shutil.rmtree(where)  # only the empty mount point: it is not mounted
            if found:
                logger.info("removed the volume of instance %s", instance_id)
            return found

    def _scratch(self, instance_id: str) -> Path:
        return self.root / f"{instance_id}.img.new"

    def _make(self, instance_id: str, size_gb: int) -> None:
        # formatted under another name, so a crash never leaves a half-made image
        scratch = self._scratch(instance_id)
        logger.info("making a %d GiB volume for instance %s", size_gb, instance_id)
        with open(scratch, "wb") as new:
            new.truncate(size_gb * GIB)
        self._run(["mkfs.ext4", "-q", "-F", "-m", "0", str(scratch)], (0,))
        os.replace(scratch, self.image(instance_id))

    def _mount(self, instance_id: str) -> bool:
        if self.device(instance_id) is not None:
            return False
        image, where = self.image(instance_id), self.mount_point(instance_id)
        if not image.exists():
            raise ComputeError(f"the volume image of instance {instance_id} is missing")
        where.mkdir(exist_ok=True)
        if any(where.iterdir()):
            logger.warning("mount point %s is not empty; mounting over it", where)
        self._run(["mount", "-o", "loop", str(image), str(where)], (0,))
        logger.info("mounted the volume of instance %s", instance_id)
        return True

    def _unmount(self, instance_id: str) -> None:
        if self.device(instance_id) is not None:
            self._run(["umount", str(self.mount_point(instance_id))], (0,))
        self._detach(instance_id)

    def _attached(self, instance_id: str) -> list[str]:
        image = self.image(instance_id)
        if not image.exists():
            return []
        listing = self._run(["losetup", "-j", str(image)], (0,))
        return [line.split(":", 1)[0] for line in listing.splitlines() if ":" in line]

    def _detach(self, instance_id: str) -> None:
        """Detach the loop devices of this instance's image (only those)."""
        for device in self._attached(instance_id):
            self._run(["losetup", "-d", device], (0,))
        left = self._attached(instance_id)
        if left:
            raise VolumeBusy(
                f"the volume of instance {instance_id} is still in use ({', '.join(left)})"
            )

    def _grow_mounted(self, instance_id: str) -> None:
        self._mount(instance_id)
        device = self.device(instance_id)
        if device is None:
            raise ComputeError(f"the volume of instance {instance_id} is not mounted")
        self._run(["losetup", "-c", device], (0,))
        try:
            self._run(["resize2fs", device], (0,))
        except ComputeError as exc:
            if any(word in exc.message for word in REFUSED):
                raise OnlineResizeRefused(exc.message) from exc
            raise

    def _grow_unmounted(self, instance_id: str) -> None:
        self._unmount(instance_id)  # raises while anything still holds the file system
        image = str(self.image(instance_id))
        try:
            self._run(["e2fsck", "-f", "-p", image], (0, 1))  # 1: errors corrected
            self._run(["resize2fs", image], (0,))
        finally:
            self._mount(instance_id)
