"""Cellar's key ring, and the box that seals what Cellar keeps secret with it.

Passwords never go into task rows, logs or audit details: the API seals them into a
``Secret`` row tied to the task, and the task deletes it when it ends. Replica sets'
replication passwords and the data keys of stored backups are sealed the same way.

The keys are ``CELLAR_SECRET_KEY`` (Fernet keys, comma separated, the same on every API
and worker host) or, in the embedded profile, the key file ``CELLAR_HOME/secret.key``
(one key a line, made with one new key when missing). The first key seals, every key
opens, so a new key can go first while values sealed by the old ones are sealed again
(``cellar secrets rotate-key``). A running process looks at the key file's identity
(one ``stat``: device, inode, size, modification time) each time it uses the ring and
reads the file again when it changed, so a rotation needs no restart; change the file by
writing a new one and renaming it over the old (:meth:`KeyRing.write`), as an edit in
place that keeps its size within one clock tick could go unseen.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from cellar.errors import CellarError

KEY_FILE = "secret.key"
KEY_ENV = "CELLAR_SECRET_KEY"


def load_key(home: Path, name: str = KEY_FILE, env: str = KEY_ENV) -> bytes:
    """The raw key text from the environment variable ``env``, or from (a new)
    ``home/name``, stripped; a new file holds one new Fernet key."""
    given = os.environ.get(env, "").strip()
    if given:
        return given.encode()
    path = home / name
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
    for _ in range(50):  # the other process may still be writing it
        key = path.read_bytes().strip()
        if key:
            return key
        time.sleep(0.01)
    raise CellarError(f"the key file {path} is empty")


def parse_keys(text: str, where: str) -> list[bytes]:
    """The Fernet keys in ``text`` (separated by commas or lines), first one first;
    CellarError naming ``where`` and the key's place (never the key) when one is bad."""
    keys = [part.strip() for line in text.splitlines() for part in line.split(",")]
    keys = [key for key in keys if key]
    if not keys:
        raise CellarError(f"{where} holds no key")
    for place, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except ValueError as exc:
            raise CellarError(f"key {place} of {where} is not a Fernet key") from exc
    return [key.encode() for key in keys]


class KeyRing:
    """Cellar's secret keys, newest first: the first seals, every one opens.

    Build one per process with the home folder (``KeyRing(home)``), or with fixed keys
    for a tool or a test (``KeyRing.of([key])``).
    """

    def __init__(self, home: Path, name: str = KEY_FILE, env: str = KEY_ENV) -> None:
        self.home = Path(home)
        self.name = name
        self.env = env
        self._fixed: list[bytes] | None = None
        self._loaded: tuple[object, list[bytes], MultiFernet, Fernet] | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, keys: Sequence[bytes]) -> KeyRing:
        """A ring of these keys alone, newest first."""
        ring = cls(Path())
        ring._fixed = parse_keys(b"\n".join(keys).decode(), "the given keys")
        return ring

    @property
    def path(self) -> Path:
        """The key file (used when the environment gives no keys)."""
        return self.home / self.name

    @property
    def from_environment(self) -> bool:
        """True when the keys come from ``CELLAR_SECRET_KEY``, which no command can edit."""
        return self._fixed is None and bool(os.environ.get(self.env, "").strip())

    def keys(self) -> list[bytes]:
        """The keys as they are now, newest first."""
        return list(self._current()[1])

    def sealer(self) -> MultiFernet:
        """Seals with the newest key and opens with any."""
        return self._current()[2]

    def newest(self) -> Fernet:
        return self._current()[3]

    def _current(self) -> tuple[object, list[bytes], MultiFernet, Fernet]:
        if self._fixed is not None:
            identity: object = "fixed"
        elif given := os.environ.get(self.env, "").strip():
            identity = ("env", given)
        else:
            identity = self._file_identity()
        loaded = self._loaded
        if loaded is not None and loaded[0] == identity:
            return loaded
        with self._lock:
            keys = self._read(identity)
            fernets = [Fernet(key) for key in keys]
            self._loaded = (identity, keys, MultiFernet(fernets), fernets[0])
            return self._loaded

    def _file_identity(self) -> tuple[int, int, int, int]:
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            load_key(self.home, self.name, self.env)  # makes the file, with one new key
            found = os.stat(self.path)
        return found.st_dev, found.st_ino, found.st_mtime_ns, found.st_size

    def _read(self, identity: object) -> list[bytes]:
        if self._fixed is not None:
            return self._fixed
        if isinstance(identity, tuple) and identity[0] == "env":
            return parse_keys(str(identity[1]), self.env)
        return parse_keys(load_key(self.home, self.name, self.env).decode(), str(self.path))

    def write(self, keys: Sequence[bytes]) -> None:
        """Make ``keys`` (newest first) the key file's content, in one rename: a process
        reading it sees the old keys or the new ones, never part of them."""
        if self._fixed is not None or self.from_environment:
            raise CellarError(f"the keys come from {self.env}: change it on every host instead")
        text = "\n".join(key.decode() for key in keys) + "\n"
        parse_keys(text, "the new keys")
        scratch = self.path.with_name(f"{self.name}.{os.getpid()}.new")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(scratch, self.path)
        except BaseException:
            scratch.unlink(missing_ok=True)
            raise


class SecretBox:
    """Seals values with the ring's newest key and opens them with any of its keys."""

    def __init__(self, keys: bytes | KeyRing) -> None:
        self.ring = keys if isinstance(keys, KeyRing) else KeyRing.of([keys])

    @classmethod
    def from_home(cls, home: Path) -> SecretBox:
        """The box of Cellar's processes: ``CELLAR_SECRET_KEY`` or ``home/secret.key``.
        The keys are read now, so a bad one stops the process as it starts."""
        ring = KeyRing(home)
        ring.keys()
        return cls(ring)

    def seal(self, values: dict[str, str]) -> bytes:
        return self.ring.sealer().encrypt(json.dumps(values).encode())

    def open(self, ciphertext: bytes) -> dict[str, str]:
        try:
            data = json.loads(self.ring.sealer().decrypt(ciphertext))
        except InvalidToken as exc:
            raise CellarError("a stored secret cannot be decrypted with this key") from exc
        return {str(k): str(v) for k, v in data.items()}

    def reseal(self, ciphertext: bytes) -> bytes:
        """The same value sealed by the newest key (CellarError when no key opens it)."""
        try:
            return self.ring.sealer().rotate(ciphertext)
        except InvalidToken as exc:
            raise CellarError("a stored secret cannot be decrypted with this key") from exc

    def sealed_by_newest(self, ciphertext: bytes) -> bool:
        """True when the newest key alone opens ``ciphertext``."""
        try:
            self.ring.newest().decrypt(ciphertext)
        except InvalidToken:
            return False
        return True
