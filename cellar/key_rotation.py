"""Rotating Cellar's secret key while the service runs, with no value left unreadable.

``cellar secrets rotate-key`` runs these against the metadata database:

1. :func:`add_key` puts a new key first in the key file. Every running process looks at
   the file each time it uses the ring, so from then on each seals with the new key and
   still opens with every older one.
2. :func:`reseal` walks every sealed column (:data:`SEALED`) in small transactions and
   seals each value again with the newest key. A row is written only if it still holds
   the value that was read (compare and swap), so a value a process changed meanwhile is
   never overwritten with an older one; the data keys of backups are rows too, so no
   stored object is rewritten.
3. :func:`retire` first checks that the newest key alone opens every sealed value, and
   only then drops the other keys from the file. A value still sealed by an older key
   (one sealed by a process that read the ring just before step 1) makes it refuse:
   run step 2 again.

With the keys in ``CELLAR_SECRET_KEY`` no command can change them: the operator puts the
new key first in it on every host, then step 2 seals again with that key, and step 3
only checks, leaving the operator to remove the old keys.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from cellar.db import Database
from cellar.errors import CellarError
from cellar.models import Base, Credential, DataKey, ReplicaSet, Secret
from cellar.secrets import KeyRing, SecretBox

logger = logging.getLogger(__name__)

BATCH = 100  # rows per transaction


@dataclasses.dataclass(frozen=True)
class SealedColumn:
    """A column whose values :class:`~cellar.secrets.SecretBox` seals."""

    name: str
    model: type[Base]
    key: InstrumentedAttribute[str]
    value: InstrumentedAttribute[bytes] | InstrumentedAttribute[bytes | None]  # None: erased


SEALED = (
    SealedColumn("task secrets", Secret, Secret.task_id, Secret.ciphertext),
    SealedColumn("replication passwords", ReplicaSet, ReplicaSet.id, ReplicaSet.secret),
    SealedColumn("backup data keys", DataKey, DataKey.id, DataKey.sealed),
    SealedColumn("passwords awaiting approval", Credential, Credential.id, Credential.sealed),
)


@dataclasses.dataclass
class Resealed:
    """What :func:`reseal` did to one sealed column."""

    name: str
    resealed: int = 0  # sealed again with the newest key
    current: int = 0  # already sealed with it
    changed: int = 0  # changed or deleted by the service meanwhile, left as it was
    unreadable: list[str] = dataclasses.field(default_factory=list)  # no key opens these


@contextlib.contextmanager
def _locked(ring: KeyRing) -> Iterator[None]:
    """One change of the key file at a time (two operators rotating at once)."""
    ring.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(ring.path.with_name(f"{ring.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def add_key(ring: KeyRing) -> None:
    """Put a new key first in the key file; the older keys stay, to open older values."""
    with _locked(ring):
        ring.write([Fernet.generate_key(), *ring.keys()])
    logger.info("a new secret key was put first in %s", ring.path)


def _each_row(
    db: Database, column: SealedColumn, size: int, visit: Callable[[Session, str, bytes], None]
) -> None:
    """``visit`` every row of the column in key order, ``size`` rows a transaction (the
    service keeps running: no row stays locked for long)."""
    after = ""
    while True:
        with db.session() as session:
            rows = session.execute(
                select(column.key, column.value)
                .where(column.key > after, column.value.is_not(None))  # erased once used
                .order_by(column.key)
                .limit(size)
            ).all()
            for key, value in rows:
                if value is not None:
                    visit(session, key, value)
        if len(rows) < size:
            return
        after = rows[-1][0]


def reseal(db: Database, box: SecretBox, batch: int = BATCH) -> list[Resealed]:
    """Seal every sealed value again with the newest key, ``batch`` rows a transaction."""
    done = [_reseal_column(db, box, column, batch) for column in SEALED]
    for counts in done:
        logger.info(
            "%s: %d sealed again, %d already current, %d changed meanwhile, %d unreadable",
            counts.name, counts.resealed, counts.current, counts.changed, len(counts.unreadable),
        )  # fmt: skip
    return done


def _reseal_column(db: Database, box: SecretBox, column: SealedColumn, batch: int) -> Resealed:
    counts = Resealed(column.name)
    table = column.model.__table__
    unchanged = {"updated": table.c.updated} if "updated" in table.c else {}

    def again(session: Session, key: str, value: bytes) -> None:
        if box.sealed_by_newest(value):
            counts.current += 1
            return
        try:
            resealed = box.reseal(value)
        except CellarError:
            counts.unreadable.append(key)
            return
        result: Any = session.execute(
            update(column.model)
            .where(column.key == key, column.value == value)  # unless changed meanwhile
            .values({column.value.key: resealed, **unchanged})
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            counts.resealed += 1
        else:
            counts.changed += 1

    _each_row(db, column, batch, again)
    return counts


def not_current(db: Database, box: SecretBox, batch: int = BATCH) -> dict[str, list[str]]:
    """The keys of the rows, by column, whose value the newest key alone does not open."""
    found = {column.name: _not_current_in(db, box, column, batch) for column in SEALED}
    return {name: keys for name, keys in found.items() if keys}


def _not_current_in(db: Database, box: SecretBox, column: SealedColumn, batch: int) -> list[str]:
    found: list[str] = []

    def check(_session: Session, key: str, value: bytes) -> None:
        if not box.sealed_by_newest(value):
            found.append(key)

    _each_row(db, column, batch, check)
    return found


def retire(db: Database, box: SecretBox, batch: int = BATCH) -> dict[str, list[str]]:
    """Drop every key but the newest, once the newest alone opens every sealed value.

    Returns what is still sealed otherwise (then nothing was dropped). With the keys in
    ``CELLAR_SECRET_KEY`` it only checks: the operator edits the variable.
    """
    ring = box.ring
    with _locked(ring) if not ring.from_environment else contextlib.nullcontext():
        newest = ring.keys()[0]
        left = not_current(db, box, batch)
        if left or ring.from_environment or len(ring.keys()) == 1:
            return left
        if ring.keys()[0] != newest:
            raise CellarError("the key file changed during the check: run it again")
        ring.write([newest])
    logger.info("the older secret keys were dropped from %s", ring.path)
    return {}


def fingerprint(key: bytes) -> str:
    """A short name for a key that gives nothing of it away (to tell keys apart)."""
    return base64.b32encode(hashlib.sha256(key).digest()[:5]).decode().lower()
