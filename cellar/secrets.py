"""Encryption of the passwords that a task needs until it has run.

Passwords never go into task rows, logs or audit details: the API encrypts them
into a ``Secret`` row tied to the task, and the task deletes it when it ends.
The key is ``CELLAR_SECRET_KEY`` (a Fernet key, shared by every API and worker
host) or, in the embedded profile, a key file created under ``CELLAR_HOME``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from cellar.errors import CellarError


def load_key(home: Path, name: str = "secret.key", env: str = "CELLAR_SECRET_KEY") -> bytes:
    """A Fernet key from the environment variable ``env``, or from (a new) ``home/name``."""
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


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, values: dict[str, str]) -> bytes:
        return self._fernet.encrypt(json.dumps(values).encode())

    def open(self, ciphertext: bytes) -> dict[str, str]:
        try:
            data = json.loads(self._fernet.decrypt(ciphertext))
        except InvalidToken as exc:
            raise CellarError("a stored secret cannot be decrypted with this key") from exc
        return {str(k): str(v) for k, v in data.items()}
