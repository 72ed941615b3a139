"""``allowed_cidrs`` holds on the host: two clients on this machine, each in a network
namespace of its own behind a veth pair, reach a public instance's published port; the
firewall lets in the one inside ``allowed_cidrs`` and resets the other, follows an update
at once, and takes the instance's chain away with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cellar import settings as settings_module
from taskmanager.drivers.firewall import chain_name
from tests.integration.stack import Api, Stack

# A PostgreSQL SSLRequest: a server that is reached answers one byte, "S".
PROBE = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as s:
        s.sendall(bytes([0, 0, 0, 8, 4, 210, 22, 47]))
        print(s.recv(1).decode() or "closed")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print(type(exc).__name__)
"""
SUBNETS = {"a": "10.231.1", "b": "10.231.2"}  # host .1, client .2, one /30 each
WAIT = 30.0  # seconds a change of the rules may take to show


def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def firewall_on() -> bool:
    off = os.environ.get("CELLAR_FIREWALL", "").strip().lower() == "off"
    return not off and settings_module.firewall_possible() and shutil.which("ip") is not None


pytestmark = pytest.mark.skipif(not firewall_on(), reason="needs root, ip and iptables")


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[str, str]]:
    """Two namespaces, each with an address the host routes to: name -> namespace."""
    tag = f"{os.getpid() % 10000}"
    made: dict[str, str] = {}
    try:
        for name, net in SUBNETS.items():
            space, host_end, ns_end = f"celt{name}{tag}", f"celh{name}{tag}", f"celn{name}{tag}"
            run("ip", "netns", "add", space)
            made[name] = space
            run("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
            run("ip", "link", "set", ns_end, "netns", space)
            run("ip", "addr", "add", f"{net}.1/30", "dev", host_end)
            run("ip", "link", "set", host_end, "up")
            run("ip", "-n", space, "addr", "add", f"{net}.2/30", "dev", ns_end)
            run("ip", "-n", space, "link", "set", ns_end, "up")
            run("ip", "-n", space, "link", "set", "lo", "up")
        yield made
    finally:
        for name, space in made.items():
            subprocess.run(["ip", "link", "del", f"celh{name}{tag}"], check=False, timeout=30)
            subprocess.run(["ip", "netns", "del", space], check=False, timeout=30)


def probe(clients: dict[str, str], name: str, port: int) -> str:
    """What client ``name`` gets from the instance's port on the host's address it has."""
    python = shutil.which("python3") or "python3"
    host = f"{SUBNETS[name]}.1"
    return run("ip", "netns", "exec", clients[name], python, "-c", PROBE, host, str(port)).strip()


def settle(clients: dict[str, str], port: int, wanted: dict[str, str]) -> dict[str, str]:
    """Each client's answer once they are as ``wanted``, or as they are after ``WAIT``."""
    end = time.monotonic() + WAIT
    while True:
        seen = {name: probe(clients, name, port) for name in wanted}
        if seen == wanted or time.monotonic() > end:
            return seen
        time.sleep(0.5)


def chain_rules(instance_id: str) -> str:
    listed = subprocess.run(
        ["iptables", "-w", "10", "-S", chain_name(instance_id)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return listed.stdout if listed.returncode == 0 else ""


def test_only_the_allowed_network_reaches_the_port_and_an_update_moves_it(
    stack: Stack, clients: dict[str, str]
) -> None:
    api = Api(stack.url, identity=stack.identity)
    body: dict[str, Any] = {
        "name": "fenced",
        "flavorRef": "1",
        "volume": {"size": 1},
        "datastore": {"type": "postgresql"},
        "access": {"is_public": True, "allowed_cidrs": [f"{SUBNETS['a']}.2"]},
    }
    made = api.call("POST", "/instances", json={"instance": body})
    assert made.status_code == 202, made.text
    instance_id = made.json()["instance"]["id"]
    try:
        view = api.wait_instance(instance_id, {"ACTIVE", "ERROR"})
        assert view["status"] == "ACTIVE", view.get("fault")
        assert view["access"] == {"is_public": True, "allowed_cidrs": ["10.231.1.2/32"]}
        port = int(view["connection"]["port"])
        assert "-s 10.231.1.2/32 -j RETURN" in chain_rules(instance_id)

        assert settle(clients, port, {"a": "S", "b": "refused"}) == {"a": "S", "b": "refused"}

        moved = {"access": {"allowed_cidrs": [f"{SUBNETS['b']}.0/30"]}}
        reply = api.call("PUT", f"/instances/{instance_id}", json={"instance": moved})
        assert reply.status_code == 202, reply.text
        assert settle(clients, port, {"a": "refused", "b": "S"}) == {"a": "refused", "b": "S"}
        shown = api.call("GET", f"/instances/{instance_id}").json()["instance"]
        assert shown["access"]["allowed_cidrs"] == ["10.231.2.0/30"]

        refused = api.call("PUT", f"/instances/{instance_id}",
                           json={"instance": {"access": {"is_public": False}}})  # fmt: skip
        assert refused.status_code == 409, refused.text
    finally:
        api.call("DELETE", f"/instances/{instance_id}")
        api.wait_instance(instance_id, {"GONE", "ERROR"})
    assert chain_rules(instance_id) == ""
