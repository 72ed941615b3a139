"""Key rotation: every sealed value sealed again with the new key, old keys dropped last."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import LargeBinary, select, update

from cellar import key_rotation
from cellar.db import Database
from cellar.errors import CellarError
from cellar.models import Base, Credential, DataKey, ReplicaSet, Secret, new_id
from cellar.secrets import KEY_ENV, KeyRing, SecretBox
from cellar.tasks import start_task
from cellar.workflows import WorkflowName


@dataclasses.dataclass
class Sealed:
    db: Database
    home: Path
    box: SecretBox  # the service's box, on the key file
    old: bytes  # the key file's only key before the rotation


@pytest.fixture
def sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sealed]:
    """A metadata database with one value of each sealed column, sealed by ``old``."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    home, old = tmp_path / "home", Fernet.generate_key()
    home.mkdir()
    (home / "secret.key").write_bytes(old + b"\n")
    db = Database(f"sqlite:///{tmp_path / 'cellar.db'}")
    db.upgrade()
    box = SecretBox.from_home(home)
    add_values(db, box)
    yield Sealed(db, home, box, old)
    db.engine.dispose()


def add_values(db: Database, box: SecretBox) -> None:
    with db.session() as session:
        start_task(
            session, box, project_id="p1", workflow=WorkflowName.CREATE_USERS,
            request_id="req-1", secret={"user:al": "pw-al"},
        )  # fmt: skip
        session.add(
            ReplicaSet(
                project_id="p1",
                primary_id=new_id(),
                datastore="postgresql",
                secret=box.seal({"password": "pw-repl"}),
            )
        )
        session.add(DataKey(sealed=box.seal({"aes-256-gcm": "ZGF0YS1rZXk="})))
        session.add(Credential(
            project_id="p1", instance_id=new_id(), user_name="debug_0123456789", access="write",
            databases=["shop"], reason="r", ttl_seconds=60, state="PENDING_APPROVAL",
            requested_by="ann", requested_by_id="u1", sealed=box.seal({"password": "pw-dbg"}),
        ))  # fmt: skip
        session.add(Credential(
            project_id="p1", instance_id=new_id(), user_name="debug_9876543210", access="read",
            databases=["shop"], reason="r", ttl_seconds=60, state="ACTIVE",
            requested_by="ann", requested_by_id="u1", sealed=None,
        ))  # fmt: skip


def values(db: Database) -> list[bytes]:
    with db.session() as session:
        return [
            *session.scalars(select(Secret.ciphertext)),
            *session.scalars(select(ReplicaSet.secret)),
            *session.scalars(select(DataKey.sealed)),
            *session.scalars(select(Credential.sealed).where(Credential.sealed.is_not(None))),
        ]


def opened(db: Database, box: SecretBox) -> list[dict[str, str]]:
    return [box.open(value) for value in values(db)]


PLAIN = [
    {"user:al": "pw-al"},
    {"password": "pw-repl"},
    {"aes-256-gcm": "ZGF0YS1rZXk="},
    {"password": "pw-dbg"},
]


def test_every_column_of_sealed_bytes_is_rotated() -> None:
    binary = {
        f"{table.name}.{column.name}"
        for table in Base.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, LargeBinary)
    }
    rotated = {f"{c.model.__tablename__}.{c.value.key}" for c in key_rotation.SEALED}
    assert binary == rotated


def test_rotation_seals_every_value_so_the_new_key_alone_opens_it(sealed: Sealed) -> None:
    ring = sealed.box.ring
    key_rotation.add_key(ring)
    new = ring.keys()[0]
    assert ring.keys() == [new, sealed.old]
    done = key_rotation.reseal(sealed.db, sealed.box, batch=2)
    assert [(d.resealed, d.current, d.changed, d.unreadable) for d in done] == [(1, 0, 0, [])] * 4
    assert opened(sealed.db, SecretBox(new)) == PLAIN
    with pytest.raises(CellarError):
        SecretBox(sealed.old).open(values(sealed.db)[0])
    again = key_rotation.reseal(sealed.db, sealed.box)
    assert [(d.resealed, d.current) for d in again] == [(0, 1)] * 4


def test_reseal_walks_many_rows_in_small_batches(sealed: Sealed) -> None:
    for _ in range(6):
        add_values(sealed.db, sealed.box)
    key_rotation.add_key(sealed.box.ring)
    done = key_rotation.reseal(sealed.db, sealed.box, batch=3)
    assert [d.resealed for d in done] == [7, 7, 7, 7]
    assert key_rotation.not_current(sealed.db, sealed.box) == {}


def test_a_value_the_service_changes_meanwhile_is_not_overwritten(
    sealed: Sealed, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_rotation.add_key(sealed.box.ring)
    changed = sealed.box.seal({"password": "changed by the service"})
    reseal = sealed.box.reseal

    def service_changes_the_set_first(value: bytes) -> bytes:
        if SecretBox(sealed.old).open(value) == {"password": "pw-repl"}:
            with sealed.db.session() as session:
                session.execute(update(ReplicaSet).values(secret=changed))
        return reseal(value)

    monkeypatch.setattr(sealed.box, "reseal", service_changes_the_set_first)
    done = key_rotation.reseal(sealed.db, sealed.box)
    assert [(d.resealed, d.changed) for d in done] == [(1, 0), (0, 1), (1, 0), (1, 0)]
    with sealed.db.session() as session:
        assert session.scalars(select(ReplicaSet.secret)).one() == changed


def test_a_value_no_key_opens_is_reported_and_left(sealed: Sealed) -> None:
    stranger = SecretBox(Fernet.generate_key()).seal({"password": "lost"})
    with sealed.db.session() as session:
        session.execute(update(ReplicaSet).values(secret=stranger))
    done = key_rotation.reseal(sealed.db, sealed.box)
    assert [len(d.unreadable) for d in done] == [0, 1, 0, 0]
    assert stranger in values(sealed.db)


def test_retire_refuses_while_a_value_is_sealed_by_an_older_key(sealed: Sealed) -> None:
    ring = sealed.box.ring
    key_rotation.add_key(ring)
    left = key_rotation.retire(sealed.db, sealed.box)
    assert {name: len(keys) for name, keys in left.items()} == {
        "task secrets": 1, "replication passwords": 1, "backup data keys": 1,
        "passwords awaiting approval": 1,
    }  # fmt: skip
    assert len(ring.keys()) == 2
    assert opened(sealed.db, sealed.box) == PLAIN


def test_retire_refuses_for_a_value_sealed_by_a_process_that_still_had_the_old_ring(
    sealed: Sealed,
) -> None:
    key_rotation.add_key(sealed.box.ring)
    key_rotation.reseal(sealed.db, sealed.box)
    add_values(sealed.db, SecretBox(sealed.old))  # sealed just before it read the new file
    left = key_rotation.retire(sealed.db, sealed.box)
    assert sorted(left) == [
        "backup data keys",
        "passwords awaiting approval",
        "replication passwords",
        "task secrets",
    ]
    assert len(sealed.box.ring.keys()) == 2


def test_retire_drops_the_older_keys_once_the_newest_opens_everything(sealed: Sealed) -> None:
    ring = sealed.box.ring
    key_rotation.add_key(ring)
    new = ring.keys()[0]
    key_rotation.reseal(sealed.db, sealed.box)
    assert key_rotation.retire(sealed.db, sealed.box) == {}
    assert KeyRing(sealed.home).keys() == [new]
    assert opened(sealed.db, sealed.box) == PLAIN


def test_with_keys_in_the_environment_values_are_sealed_with_its_first_and_nothing_is_dropped(
    sealed: Sealed, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = Fernet.generate_key()
    monkeypatch.setenv(KEY_ENV, f"{new.decode()},{sealed.old.decode()}")
    box = SecretBox.from_home(sealed.home)
    with pytest.raises(CellarError, match=KEY_ENV):
        key_rotation.add_key(box.ring)
    key_rotation.reseal(sealed.db, box)
    assert opened(sealed.db, SecretBox(new)) == PLAIN
    assert key_rotation.retire(sealed.db, box) == {}
    assert box.ring.keys() == [new, sealed.old]  # the operator edits the variable


def test_a_fingerprint_tells_keys_apart_and_gives_nothing_away() -> None:
    one, two = Fernet.generate_key(), Fernet.generate_key()
    assert key_rotation.fingerprint(one) != key_rotation.fingerprint(two)
    assert key_rotation.fingerprint(one) not in one.decode()
