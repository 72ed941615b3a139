"""Trove's ``access`` and Cellar's ``tls`` on instance create and update: what is stored,
shown, refused, and what the worker then does with the firewall and the container."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from cellar import pki
from cellar.models import AuditEvent, Instance
from taskmanager.drivers.firewall import Allowed
from tests.unit.api.support import client_for

BASE = "/v1.0/proj1"
GOOD = {
    "name": "orders",
    "flavorRef": "2",
    "volume": {"size": 1},
    "datastore": {"type": "postgresql", "version": "15"},
}


@dataclasses.dataclass
class Rules:
    """A firewall that records what it is asked to do."""

    enabled: bool = True
    applied: list[Allowed] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)

    def apply(self, allowed: Allowed) -> None:
        self.applied.append(allowed)

    def remove(self, instance_id: str) -> None:
        self.removed.append(instance_id)


@pytest.fixture
def client(world: Any) -> FlaskClient:
    return client_for(world[0])


@pytest.fixture
def rules(world: Any) -> Rules:
    world[0].firewall = found = Rules()
    return found


def made(client: FlaskClient, world: Any, **changes: Any) -> dict[str, Any]:
    reply = client.post(f"{BASE}/instances", json={"instance": {**GOOD, **changes}})
    assert reply.status_code == 202, reply.get_json()
    world[3].drain(world[0])
    shown = client.get(f"{BASE}/instances/{reply.get_json()['instance']['id']}")
    view: dict[str, Any] = shown.get_json()["instance"]
    return view


def update(client: FlaskClient, instance_id: str, **changes: Any) -> Any:
    return client.put(f"{BASE}/instances/{instance_id}", json={"instance": changes})


def test_an_instance_is_private_open_and_tls_optional_unless_asked(
    client: FlaskClient, world: Any
) -> None:
    view = made(client, world)
    assert view["access"] == {"is_public": False, "allowed_cidrs": []}
    assert view["tls"] == {"required": False, "plaintext_refused": False}
    spec = world[1].containers[view["id"]]
    assert (spec.publish_host, spec.allowed_cidrs) == ("127.0.0.1", ())


def test_a_public_instance_with_networks_publishes_on_the_public_address(
    client: FlaskClient, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = world[0].settings
    monkeypatch.setattr(
        world[0], "settings", dataclasses.replace(settings, public_host="192.0.2.10")
    )
    access = {"is_public": True, "allowed_cidrs": ["10.1.0.0/16", "192.168.7.9", "10.1.0.0/16"]}
    view = made(client, world, access=access, tls={"required": True})
    assert view["access"] == {"is_public": True, "allowed_cidrs": ["10.1.0.0/16", "192.168.7.9/32"]}
    assert view["tls"] == {"required": True, "plaintext_refused": True}
    spec = world[1].containers[view["id"]]
    assert spec.publish_host == view["connection"]["host"] == "192.0.2.10"
    assert spec.allowed_cidrs == ("10.1.0.0/16", "192.168.7.9/32")
    with world[0].db.session() as session:
        details = session.scalars(select(AuditEvent.details)).first()
    assert details["access"]["allowed_cidrs"] == ["10.1.0.0/16", "192.168.7.9/32"]


@pytest.mark.parametrize(
    ("access", "words"),
    [
        ("public", "access must be an object"),
        ({"is_public": True, "ports": [5432]}, "access must be an object"),
        ({"is_public": "yes"}, "access.is_public must be true or false"),
        ({"allowed_cidrs": "10.0.0.0/8"}, "must be a list of networks"),
        ({"allowed_cidrs": ["10.0.0.1/8"]}, "has host bits set"),
        ({"allowed_cidrs": ["10.0.0.0/33"]}, "10.0.0.0/33"),
        ({"allowed_cidrs": ["any; rm -rf /"]}, "is not a network in CIDR notation"),
        ({"allowed_cidrs": [f"10.0.{n}.0/24" for n in range(51)]}, "at most 50 networks"),
    ],
)
def test_bad_access_is_refused_with_what_is_allowed(
    client: FlaskClient, access: object, words: str
) -> None:
    reply = client.post(f"{BASE}/instances", json={"instance": {**GOOD, "access": access}})
    assert reply.status_code == 400
    assert words in reply.get_json()["badRequest"]["message"]


@pytest.mark.parametrize(("tls", "words"), [({"required": "yes"}, "true or false"),
                                            ({"verify": True}, "like {")])  # fmt: skip
def test_bad_tls_is_refused(client: FlaskClient, tls: object, words: str) -> None:
    reply = client.post(f"{BASE}/instances", json={"instance": {**GOOD, "tls": tls}})
    assert reply.status_code == 400
    assert words in reply.get_json()["badRequest"]["message"]


def test_an_update_of_the_networks_applies_them_and_keeps_what_it_leaves_out(
    client: FlaskClient, world: Any, rules: Rules
) -> None:
    view = made(client, world, access={"allowed_cidrs": ["10.0.0.0/24"]})
    assert world[1].containers[view["id"]].allowed_cidrs == ("10.0.0.0/24",)
    reply = update(client, view["id"], access={"allowed_cidrs": ["172.16.0.0/12"]})
    assert reply.status_code == 202
    world[3].drain(world[0])
    last = rules.applied[-1]
    assert (last.instance_id, last.host_port) == (view["id"], view["connection"]["port"])
    assert [str(n) for n in last.networks] == ["172.16.0.0/12"]
    shown = client.get(f"{BASE}/instances/{view['id']}").get_json()["instance"]
    assert shown["access"] == {"is_public": False, "allowed_cidrs": ["172.16.0.0/12"]}
    assert shown["status"] == "ACTIVE"

    assert update(client, view["id"], tls={"required": True}).status_code == 202
    world[3].drain(world[0])
    shown = client.get(f"{BASE}/instances/{view['id']}").get_json()["instance"]
    assert shown["access"]["allowed_cidrs"] == ["172.16.0.0/12"]
    assert shown["tls"]["required"] is True
    policy = pki.agent_folder(world[0].settings.home, view["id"]) / pki.ENGINE_POLICY
    assert json.loads(policy.read_text()) == {"required": True}


def test_is_public_cannot_change_after_create(client: FlaskClient, world: Any) -> None:
    view = made(client, world)
    reply = update(client, view["id"], access={"is_public": True})
    assert reply.status_code == 409
    assert "cannot change" in reply.get_data(as_text=True)
    assert update(client, view["id"], access={"is_public": False}).status_code == 202


def test_deleting_an_instance_removes_its_rules(
    client: FlaskClient, world: Any, rules: Rules
) -> None:
    view = made(client, world, access={"allowed_cidrs": ["10.0.0.0/24"]})
    assert client.delete(f"{BASE}/instances/{view['id']}").status_code == 202
    world[3].drain(world[0])
    assert rules.removed == [view["id"]]
    with world[0].db.session() as session:
        assert session.scalars(select(Instance.deleted_at)).one() is not None
