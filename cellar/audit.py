"""The audit trail as a chain that proves itself.

Every row gets the next place (``seq``) at the chain's end, the hash of the row before
it (``prev_hash``) and the SHA-256 of its own content and that hash (``row_hash``); the
chain's end lives in ``audit_head``, whose row every new entry locks, so rows take their
places one after the other. Every minute a checkpoint signs (Ed25519, with a key only
Cellar holds) the place and hash the chain has reached. :func:`verify` walks the chain
and the checkpoints and names the first row that was changed, inserted or deleted.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cellar.models import AuditCheckpoint, AuditEvent, AuditHead, new_id, utcnow

logger = logging.getLogger(__name__)

GENESIS = "0" * 64  # the hash before the first row
HEAD_ID = 1
KEY_FILE = "audit-signing.pem"
KEY_ENV = "CELLAR_AUDIT_KEY"  # a PEM Ed25519 private key, shared by every Cellar host
SECRET_WORDS = ("password", "secret", "token")
CHAINED = (
    "seq",
    "id",
    "project_id",
    "request_id",
    "action",
    "target_type",
    "target_id",
    "details",
    "user_id",
    "user_name",
    "roles",
    "app_credential_id",
    "remote_addr",
    "method",
    "route",
    "outcome",
    "created",
)


def scrub(details: object) -> object:
    """A copy of ``details`` with every password-, secret- or token-like value masked."""
    if isinstance(details, dict):
        return {
            k: "***" if any(w in str(k).lower() for w in SECRET_WORDS) else scrub(v)
            for k, v in details.items()
        }
    if isinstance(details, list):
        return [scrub(v) for v in details]
    return details


def content(row: AuditEvent) -> bytes:
    """What a row's hash covers, as canonical JSON."""
    values = {name: getattr(row, name) for name in CHAINED}
    values["created"] = row.created.isoformat(timespec="microseconds")
    return json.dumps(values, sort_keys=True, separators=(",", ":"), default=str).encode()


def digest(prev_hash: str, row: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + content(row)).hexdigest()


def append(session: Session, row: AuditEvent) -> AuditEvent:
    """Add ``row`` at the chain's end in ``session``'s transaction (it locks the head
    until that transaction ends)."""
    session.execute(
        update(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .values(seq=AuditHead.seq)
        .execution_options(synchronize_session=False)
    )
    head = session.scalars(
        select(AuditHead).where(AuditHead.id == HEAD_ID).execution_options(populate_existing=True)
    ).one()
    row.id = row.id or new_id()
    row.created = row.created or utcnow()
    row.details = scrub(row.details or {})  # type: ignore[assignment]
    for name in (
        "user_id",
        "user_name",
        "roles",
        "app_credential_id",
        "remote_addr",
        "method",
        "route",
        "outcome",
    ):
        if getattr(row, name) is None:
            setattr(row, name, "")
    row.seq = head.seq + 1
    row.prev_hash = head.row_hash or GENESIS
    row.row_hash = digest(row.prev_hash, row)
    head.seq, head.row_hash = row.seq, row.row_hash
    session.add(row)
    return row


# --- signing --------------------------------------------------------------------------


def load_signer(home: Path) -> Ed25519PrivateKey:
    """The checkpoint key from ``CELLAR_AUDIT_KEY``, or from (a new) ``home/audit-signing.pem``."""
    given = os.environ.get(KEY_ENV, "").strip()
    if given:
        pem = given.encode()
    else:
        path = home / KEY_FILE
        if not path.exists():
            home.mkdir(parents=True, exist_ok=True)
            new = Ed25519PrivateKey.generate().private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            )
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(new)
        pem = path.read_bytes()
    key = load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the audit signing key must be an Ed25519 private key")
    return key


def _statement(seq: int, row_hash: str) -> bytes:
    return f"cellar-audit:{seq}:{row_hash}".encode()


def checkpoint(session: Session, signer: Ed25519PrivateKey) -> AuditCheckpoint | None:
    """Sign where the chain ends now, unless the last checkpoint already says so."""
    head = session.get(AuditHead, HEAD_ID)
    if head is None or head.seq == 0:
        return None
    last = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq.desc())).first()
    if last is not None and last.seq == head.seq:
        return None
    signature = signer.sign(_statement(head.seq, head.row_hash))
    made = AuditCheckpoint(
        seq=head.seq, row_hash=head.row_hash, signature=base64.b64encode(signature).decode()
    )
    session.add(made)
    return made


# --- verification ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Finding:
    """The first place where the chain is not what was written."""

    seq: int | None
    row_id: str | None
    problem: str

    def __str__(self) -> str:
        where = f"row {self.seq} ({self.row_id})" if self.row_id else f"place {self.seq}"
        return f"{where}: {self.problem}"


@dataclasses.dataclass(frozen=True)
class Report:
    rows: int
    checkpoints: int
    finding: Finding | None

    @property
    def intact(self) -> bool:
        return self.finding is None


def _rows(session: Session) -> Iterator[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.seq.is_(None), AuditEvent.seq, AuditEvent.id)
    yield from session.scalars(query.execution_options(yield_per=1000))


def verify(session: Session, public: Ed25519PublicKey) -> Report:
    """Walk the whole chain and every checkpoint; the first problem found, if any."""
    points = {c.seq: c for c in session.scalars(select(AuditCheckpoint))}
    for point in points.values():
        try:
            public.verify(base64.b64decode(point.signature), _statement(point.seq, point.row_hash))
        except (InvalidSignature, ValueError):
            return Report(0, len(points), Finding(point.seq, None, "its checkpoint is forged"))
    count, previous = 0, GENESIS
    for row in _rows(session):
        count += 1
        problem = _problem(row, count, previous, points.get(count))
        if problem:
            return Report(count, len(points), Finding(row.seq, row.id, problem))
        previous = row.row_hash
    head = session.get(AuditHead, HEAD_ID)
    covered = max(points, default=0)
    if covered > count:
        problem = f"rows {count + 1} to {covered}, which a signed checkpoint covers, are gone"
        return Report(count, len(points), Finding(count + 1, None, problem))
    if head is not None and (head.seq, head.row_hash or GENESIS) != (count, previous):
        problem = f"the chain's recorded end is row {head.seq}: rows after {count} are gone"
        return Report(count, len(points), Finding(count + 1, None, problem))
    return Report(count, len(points), None)


def _problem(
    row: AuditEvent, place: int, previous: str, point: AuditCheckpoint | None
) -> str | None:
    """What is wrong with ``row`` at ``place`` after a row that hashed to ``previous``."""
    if row.seq is None:
        return "a row with no place in the chain was inserted"
    if row.seq != place:
        return f"it should be row {place}: a row before it was deleted, or it was inserted"
    if row.prev_hash != previous:
        return "it does not follow the row before it: it was inserted, or one was deleted"
    if digest(row.prev_hash, row) != row.row_hash:
        return "its content was changed"
    if point is not None and point.row_hash != row.row_hash:
        return "it is not the row the signed checkpoint of its place names"
    return None


def public_key(signer: Ed25519PrivateKey) -> Ed25519PublicKey:
    return signer.public_key()


def public_pem(signer: Ed25519PrivateKey) -> str:
    return (
        signer.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    )
