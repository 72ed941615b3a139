"""Firewall rules of instances, against a fake iptables that keeps its filter table in
memory (no command reaches the host), and the helpers of ``network_access``."""

from __future__ import annotations

import contextlib
import shlex
import types
import uuid
from collections.abc import Iterator, Sequence

import pytest

from cellar.access import Access
from cellar.errors import ComputeError
from taskmanager import network_access
from taskmanager.drivers import firewall
from taskmanager.drivers.firewall import Allowed, CommandFailed, Firewall, Reconciled

BUILT_IN = ("INPUT", "FORWARD", "OUTPUT")
REJECT = ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]
READS = ("-S", "-C")
FakeTable = dict[str, list[list[str]]]


class FakeIptables:
    """A Runner keeping one filter table per program, as Docker leaves it."""

    def __init__(self) -> None:
        self.tables: dict[str, FakeTable] = {
            prog: {
                "INPUT": [],
                "FORWARD": [["-j", "DOCKER-USER"]],
                "OUTPUT": [],
                "DOCKER-USER": [["-j", "RETURN"]],
            }
            for prog in ("iptables", "ip6tables")
        }
        self.calls: list[list[str]] = []
        self.after_writes: list[tuple[list[str], FakeTable]] = []  # argv, table after it

    def __call__(self, argv: Sequence[str]) -> str:
        argv = list(argv)
        self.calls.append(argv)
        assert argv[1:5] == ["-w", "10", "-t", "filter"], argv
        table = self.tables[argv[0]]
        op, args = argv[5], argv[6:]
        out = self._do(argv, table, op, args)
        if op not in READS:
            self.after_writes.append((argv, {c: [list(r) for r in rs] for c, rs in table.items()}))
        return out

    def _do(self, argv: list[str], table: FakeTable, op: str, args: list[str]) -> str:
        if op == "-S":
            lines = [f"-P {c} ACCEPT" for c in BUILT_IN]
            lines += [f"-N {c}" for c in table if c not in BUILT_IN]
            lines += [f"-A {c} {shlex.join(r)}" for c, rs in table.items() for r in rs]
            return "\n".join(lines) + "\n"
        chain, rule = args[0], args[1:]
        if op == "-N":
            if chain in table:
                raise CommandFailed(argv, 1, "Chain already exists")
            table[chain] = []
            return ""
        if chain not in table:
            raise CommandFailed(argv, 1, "No chain/target/match by that name")
        rules = table[chain]
        if op == "-X":
            referenced = any(
                "-j" in r and r[r.index("-j") + 1] == chain for rs in table.values() for r in rs
            )
            if rules or referenced or chain in BUILT_IN:
                raise CommandFailed(argv, 1, "Directory not empty")
            del table[chain]
        elif op == "-F":
            rules.clear()
        elif op == "-I":
            position = int(rule.pop(0)) if rule and rule[0].isdigit() else 1
            rules.insert(position - 1, rule)
        elif op == "-D":
            if len(rule) == 1 and rule[0].isdigit():
                del rules[int(rule[0]) - 1]
            elif rule in rules:
                rules.remove(rule)
            else:
                raise CommandFailed(argv, 1, "Bad rule")
        elif op == "-C":
            if rule not in rules:
                raise CommandFailed(argv, 1, "")
        else:
            raise AssertionError(f"unexpected command {argv}")
        return ""

    def writes(self) -> list[list[str]]:
        return [argv for argv in self.calls if argv[5] not in READS]


@pytest.fixture
def fake() -> FakeIptables:
    return FakeIptables()


@pytest.fixture
def wall(fake: FakeIptables) -> Firewall:
    return Firewall(run=fake, agent_port=8000)


def jump(port: int, chain: str) -> list[str]:
    return [
        "-p", "tcp", "-m", "conntrack", "--ctstate", "DNAT",
        "--ctorigdstport", str(port), "--ctdir", "ORIGINAL", "-j", chain,
    ]  # fmt: skip


def let_in(rules: list[list[str]]) -> set[str]:
    """The sources a chain returns (lets through) before its first REJECT."""
    sources = set()
    for rule in rules:
        if "REJECT" in rule:
            break
        sources.add(rule[rule.index("-s") + 1])
    return sources


def test_apply_creates_chain_rules_and_jump_in_both_families(fake, wall):
    allowed = Allowed.of(str(uuid.uuid4()), 40000, ["10.0.0.0/24"])
    chain = allowed.chain
    assert chain == "CELLAR-" + allowed.instance_id.replace("-", "")[:12]
    wall.apply(allowed)
    v4, v6 = fake.tables["iptables"], fake.tables["ip6tables"]
    assert v4[chain] == [["-s", "10.0.0.0/24", "-j", "RETURN"], REJECT]
    assert v6[chain] == [REJECT]
    for table in (v4, v6):
        assert table["DOCKER-USER"] == [jump(40000, chain), ["-j", "RETURN"]]


def test_applying_the_same_allowed_twice_writes_nothing_the_second_time(fake, wall):
    allowed = Allowed.of(str(uuid.uuid4()), 40000, ["10.0.0.0/24", "fd00::/64"])
    wall.apply(allowed)
    before = len(fake.calls)
    wall.apply(allowed)
    second = fake.calls[before:]
    assert second and all(argv[5] in READS for argv in second)


def test_rewrite_never_lets_in_more_than_old_or_new_rules(fake, wall):
    instance_id = str(uuid.uuid4())
    old, new = {"10.0.0.0/24", "10.9.0.0/16"}, {"192.168.1.0/24"}
    wall.apply(Allowed.of(instance_id, 40000, sorted(old)))
    chain = firewall.chain_name(instance_id)
    start = len(fake.after_writes)
    wall.apply(Allowed.of(instance_id, 40000, sorted(new)))
    v4_steps = [t[chain] for argv, t in fake.after_writes[start:] if argv[0] == "iptables"]
    assert v4_steps
    for rules in v4_steps:
        assert rules[-1] == REJECT
        assert let_in(rules) <= old or let_in(rules) <= new
    assert fake.tables["iptables"][chain] == [["-s", "192.168.1.0/24", "-j", "RETURN"], REJECT]
    assert fake.tables["ip6tables"][chain] == [REJECT]


def test_allowed_with_no_networks_removes_chain_and_jump(fake, wall):
    instance_id = str(uuid.uuid4())
    wall.apply(Allowed.of(instance_id, 40000, ["10.0.0.0/24"]))
    wall.apply(Allowed.of(instance_id, 40000, []))
    for table in fake.tables.values():
        assert firewall.chain_name(instance_id) not in table
        assert table["DOCKER-USER"] == [["-j", "RETURN"]]


def test_remove_deletes_chain_and_jump_of_a_gone_instance(fake, wall):
    instance_id = str(uuid.uuid4())
    wall.apply(Allowed.of(instance_id, 40000, ["10.0.0.0/24"]))
    wall.remove(instance_id)
    for table in fake.tables.values():
        assert firewall.chain_name(instance_id) not in table
        assert table["DOCKER-USER"] == [["-j", "RETURN"]]


def test_a_chain_that_is_not_cellars_is_never_flushed(fake, wall):
    table = firewall.parse_table(fake(["iptables", "-w", "10", "-t", "filter", "-S"]))
    with pytest.raises(ComputeError, match="DOCKER-USER is not Cellar's"):
        wall._drop(4, table, "DOCKER-USER")
    assert fake.writes() == []
    assert fake.tables["iptables"]["DOCKER-USER"] == [["-j", "RETURN"]]


def test_reconcile_isolates_keeps_wanted_and_kept_and_removes_stale(fake, wall):
    wanted = Allowed.of(str(uuid.uuid4()), 40000, ["10.0.0.0/24"])
    stale = Allowed.of(str(uuid.uuid4()), 40001, ["10.1.0.0/24"])
    unreadable = Allowed.of(str(uuid.uuid4()), 40002, ["10.2.0.0/24"])
    wall.apply(stale)
    wall.apply(unreadable)
    outcome = wall.reconcile([wanted], keep=[unreadable.chain])
    assert outcome == Reconciled(restricted=1, removed=1, failed=0)
    for table in fake.tables.values():
        assert wanted.chain in table and unreadable.chain in table
        assert stale.chain not in table
        assert ["-i", "cel-+", "-j", "CELLAR-TO-HOST"] in table["INPUT"]
        assert ["-i", "cel-+", "-o", "cel-+", "-j", "CELLAR-TO-AGENTS"] in table["DOCKER-USER"]
        assert table["CELLAR-TO-HOST"][-1] == ["-j", "DROP"]
        assert table["CELLAR-TO-AGENTS"][0][:6] == ["-p", "tcp", "-m", "tcp", "--dport", "8000"]
        assert table["DOCKER-USER"][-1] == ["-j", "RETURN"]
    assert ["-p", "ipv6-icmp", "-j", "RETURN"] in fake.tables["ip6tables"]["CELLAR-TO-HOST"]
    before = len(fake.calls)
    assert wall.reconcile([wanted], keep=[unreadable.chain]) == Reconciled(1, 0, 0)
    assert all(argv[5] in READS for argv in fake.calls[before:])


def test_reconcile_counts_the_chain_of_an_instance_that_now_lets_anyone_in(fake, wall):
    instance_id = str(uuid.uuid4())
    wall.apply(Allowed.of(instance_id, 40000, ["10.0.0.0/24"]))
    outcome = wall.reconcile([Allowed.of(instance_id, 40000, [])])
    assert firewall.chain_name(instance_id) not in fake.tables["iptables"]
    assert outcome == Reconciled(restricted=0, removed=1, failed=0)


def test_a_changed_host_port_moves_the_jump(fake, wall):
    instance_id = str(uuid.uuid4())
    wall.apply(Allowed.of(instance_id, 40000, ["10.0.0.0/24"]))
    moved = Allowed.of(instance_id, 40005, ["10.0.0.0/24"])
    wall.apply(moved)
    for table in fake.tables.values():
        assert table["DOCKER-USER"] == [jump(40005, moved.chain), ["-j", "RETURN"]]


@pytest.mark.parametrize(
    ("instance_id", "port", "cidr", "message"),
    [
        (None, 40000, "10.0.0.1/24", "has host bits set"),
        (None, 40000, "not-a-cidr", "is not a network in CIDR notation"),
        ("db-1", 40000, "10.0.0.0/24", "'db-1' is not a UUID"),
        (None, 0, "10.0.0.0/24", "host port 0 .* is not a port"),
    ],
)
def test_bad_input_is_a_compute_error_saying_what_is_wrong(instance_id, port, cidr, message):
    with pytest.raises(ComputeError, match=message):
        Allowed.of(instance_id or str(uuid.uuid4()), port, [cidr])


def test_firewall_off_never_runs_a_command():
    calls: list[Sequence[str]] = []
    wall = Firewall.off()

    def run(argv: Sequence[str]) -> str:
        calls.append(argv)
        return ""

    wall.run = run
    allowed = Allowed.of(str(uuid.uuid4()), 40000, ["10.0.0.0/24"])
    wall.apply(allowed)
    wall.remove(allowed.instance_id)
    wall.isolate()
    assert wall.reconcile([allowed]) == Reconciled(0, 0, 0)
    assert calls == []


SETTINGS = types.SimpleNamespace(
    public_host="203.0.113.7", publish_host="127.0.0.1", advertise_host="db.example.com"
)


def test_publish_host_and_address_of_public_and_private_access():
    public, private = Access(is_public=True), Access()
    assert network_access.publish_host(SETTINGS, public) == "203.0.113.7"  # type: ignore[arg-type]
    assert network_access.publish_host(SETTINGS, private) == "127.0.0.1"  # type: ignore[arg-type]
    assert network_access.address(SETTINGS, public) == "203.0.113.7"  # type: ignore[arg-type]
    assert network_access.address(SETTINGS, private) == "db.example.com"  # type: ignore[arg-type]
    wildcard = types.SimpleNamespace(**{**vars(SETTINGS), "public_host": "0.0.0.0"})  # noqa: S104
    assert network_access.address(wildcard, public) == "db.example.com"  # type: ignore[arg-type]


def test_network_access_reconcile_keeps_the_chain_of_a_row_it_cannot_read(fake, wall):
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    wall.apply(Allowed.of(bad, 40001, ["10.1.0.0/24"]))
    rows = [
        (good, 40000, {"is_public": True, "allowed_cidrs": ["10.0.0.0/24"]}),
        (bad, 40001, {"allowed_cidrs": ["10.1.0.1/24"]}),  # host bits: cannot be applied
    ]

    @contextlib.contextmanager
    def session() -> Iterator[types.SimpleNamespace]:
        yield types.SimpleNamespace(execute=lambda _query: types.SimpleNamespace(all=lambda: rows))

    services = types.SimpleNamespace(firewall=wall, db=types.SimpleNamespace(session=session))
    outcome = network_access.reconcile(services)  # type: ignore[arg-type]
    assert outcome == Reconciled(restricted=1, removed=0, failed=0)
    v4 = fake.tables["iptables"]
    assert v4[firewall.chain_name(good)][0] == ["-s", "10.0.0.0/24", "-j", "RETURN"]
    assert v4[firewall.chain_name(bad)][0] == ["-s", "10.1.0.0/24", "-j", "RETURN"]
