"""Network access rules of instances, kept in the host's iptables and ip6tables.

Docker sends the traffic that other hosts send to a published port through DNAT and the
FORWARD chain, whose first jump is ``DOCKER-USER``. Each instance with allowed networks
has a chain of its own in both families, jumped to for the connections whose original
destination port is the instance's host port (fixed for its life; the container's
address is not)::

    -A DOCKER-USER -p tcp -m conntrack --ctstate DNAT --ctorigdstport 40000 \\
        --ctdir ORIGINAL -j CELLAR-0123456789ab
    -A CELLAR-0123456789ab -s 10.0.0.0/24 -j RETURN
    -A CELLAR-0123456789ab -p tcp -j REJECT --reject-with tcp-reset

A family that none of the networks belongs to keeps only the REJECT: a list of IPv4
networks shuts IPv6 clients out. REJECT rather than DROP: a client that may not connect
is told at once, as by a closed port, instead of hanging until its own timeout, and a
reset tells a scanner nothing the host's other ports do not. An instance that lets
anyone in has no chain.

Two more chains keep the containers of Cellar's project networks (bridges ``cel-...``)
in their place: ``CELLAR-TO-HOST`` (from INPUT) lets them answer the host but not open
connections to it, and ``CELLAR-TO-AGENTS`` (from DOCKER-USER) stops them from
connecting to another container's agent port.

Cellar creates, rewrites and removes only its own chains and the jumps to them; it never
flushes a chain it does not own. Each change first reads the table (one ``-S`` per
family), so applying twice changes nothing. A rewrite puts the new rules above the old
ones before it removes them, so at no moment is more let in than by the old or the new
rules. Every command goes through one ``Runner`` taking an argv, with ``-w`` for the
xtables lock; Cellar's processes on a host also take a file lock around each change.
Failures become ``ComputeError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import logging
import re
import shlex
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from cellar import access
from cellar.catalog import AGENT_PORT
from cellar.errors import ComputeError

logger = logging.getLogger(__name__)

Runner = Callable[[Sequence[str]], str]  # an argv in, its standard output back
Network = access.Network
Rule = list[str]
Table = dict[str, list[Rule]]  # chain -> its rules, as ``-S`` lists them

BRIDGE_PREFIX = "cel-"  # the bridges of Cellar's project networks (``docker.bridge_name``)
BRIDGES = BRIDGE_PREFIX + "+"
DOCKER_USER = "DOCKER-USER"
HOST_CHAIN = "CELLAR-TO-HOST"
AGENTS_CHAIN = "CELLAR-TO-AGENTS"
INSTANCE_CHAIN = re.compile(r"CELLAR-[0-9a-f]{12}\Z")
UUID_DIGITS = re.compile(r"[0-9a-f]{32}\Z")
LOCK_WAIT = "10"  # seconds an iptables command waits for the xtables lock
COMMAND_TIMEOUT = 30.0
REJECT = ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]
PARENTS = (DOCKER_USER, "INPUT")  # the chains Cellar jumps from


class CommandFailed(Exception):
    """An iptables command ended with an error."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        super().__init__(f"{' '.join(argv)}: exit {returncode}: {output}")
        self.returncode = returncode
        self.output = output


def run_command(argv: Sequence[str]) -> str:
    """The real runner: run ``argv`` (no shell) and return what it printed."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandFailed(argv, -1, str(exc)) from exc
    if done.returncode != 0:
        raise CommandFailed(argv, done.returncode, (done.stderr or done.stdout).strip())
    return done.stdout


def chain_name(instance_id: str) -> str:
    """The chain of one instance: ``CELLAR-`` and the first 12 hex digits of its id."""
    digits = instance_id.replace("-", "").lower()
    if not UUID_DIGITS.match(digits):
        raise ComputeError(f"instance id {instance_id!r} is not a UUID; no firewall rule names it")
    return f"CELLAR-{digits[:12]}"


def network(value: object) -> Network:
    """``value`` as a network (a bare address is a network of one host)."""
    try:
        return access.network(value)
    except ValueError as exc:
        raise ComputeError(str(exc)) from exc


@dataclasses.dataclass(frozen=True)
class Allowed:
    """Who may reach one instance's engine port; no ``networks`` means anyone."""

    instance_id: str
    host_port: int
    networks: tuple[Network, ...] = ()

    def __post_init__(self) -> None:
        chain_name(self.instance_id)
        port = self.host_port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ComputeError(f"host port {port!r} of instance {self.instance_id} is not a port")
        for each in self.networks:
            if not isinstance(each, ipaddress.IPv4Network | ipaddress.IPv6Network):
                raise ComputeError(f"{each!r} is not a network")

    @classmethod
    def of(cls, instance_id: str, host_port: int, cidrs: Iterable[object]) -> Allowed:
        return cls(instance_id, host_port, tuple(dict.fromkeys(network(c) for c in cidrs)))

    @property
    def chain(self) -> str:
        return chain_name(self.instance_id)

    def rules(self, family: int) -> list[Rule]:
        own = [n for n in self.networks if n.version == family]
        return [*(["-s", str(n), "-j", "RETURN"] for n in own), list(REJECT)]

    def jump(self) -> Rule:
        return [
            "-p", "tcp", "-m", "conntrack", "--ctstate", "DNAT",
            "--ctorigdstport", str(self.host_port), "--ctdir", "ORIGINAL", "-j", self.chain,
        ]  # fmt: skip


def host_rules(family: int) -> list[Rule]:
    """CELLAR-TO-HOST: answers, and (IPv6) neighbour discovery, but no new connections."""
    rules = [["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"]]
    if family == 6:
        rules.append(["-p", "ipv6-icmp", "-j", "RETURN"])
    return [*rules, ["-j", "DROP"]]


def agent_rules(agent_port: int) -> list[Rule]:
    """CELLAR-TO-AGENTS: no container opens a connection to an agent's port."""
    return [
        ["-p", "tcp", "-m", "tcp", "--dport", str(agent_port), "-m", "conntrack",
         "--ctdir", "ORIGINAL", "-j", "DROP"],
    ]  # fmt: skip


def parse_table(text: str) -> Table:
    """The chains and rules of ``iptables -S``."""
    chains: Table = {}
    for line in text.splitlines():
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        if len(words) >= 2 and words[0] in ("-N", "-P"):
            chains.setdefault(words[1], [])
        elif len(words) >= 2 and words[0] == "-A":
            chains.setdefault(words[1], []).append(words[2:])
    return chains


def canonical(rule: Sequence[str]) -> tuple[str, ...]:
    """A rule as iptables lists it back: without the implicit ``-m tcp``, with networks
    and conntrack states in one spelling."""
    found: list[str] = []
    words = iter(rule)
    for word in words:
        if word == "-m":
            match = next(words, "")
            if match not in ("tcp", "udp"):
                found += [word, match]
        elif word in ("-s", "-d"):
            value = next(words, "")
            try:
                net = ipaddress.ip_network(value, strict=False)
            except ValueError:
                found += [word, value]
                continue
            if net.prefixlen:  # "-s 0.0.0.0/0" is listed as no -s at all
                found += [word, str(net)]
        elif word == "--ctstate":
            found += [word, ",".join(sorted(next(words, "").split(",")))]
        else:
            found.append(word)
    return tuple(found)


def target(rule: Sequence[str]) -> str:
    words = list(rule)
    return words[words.index("-j") + 1] if "-j" in words[:-1] else ""


def original_port(rule: Sequence[str]) -> int | None:
    words = list(rule)
    if "--ctorigdstport" in words[:-1]:
        value = words[words.index("--ctorigdstport") + 1]
        return int(value) if value.isdigit() else None
    return None


class Reconciled(NamedTuple):
    restricted: int  # instances whose chains are in place
    removed: int  # chains of instances that are gone or let anyone in
    failed: int

    @property
    def sentence(self) -> str:
        said = f"{self.restricted} instances restricted, {self.removed} stale chains removed"
        return said + (f", {self.failed} failed" if self.failed else "")


class Firewall:
    """The rules of this host; ``programs`` maps a family (4, 6) to its iptables program."""

    def __init__(
        self,
        run: Runner = run_command,
        programs: Mapping[int, str] | None = None,
        lock_path: Path | None = None,
        agent_port: int = AGENT_PORT,
        enabled: bool = True,
    ) -> None:
        self.run = run
        self.programs = dict(programs if programs is not None else {4: "iptables", 6: "ip6tables"})
        self.lock_path = lock_path
        self.agent_port = agent_port
        self.enabled = enabled
        self._thread_lock = threading.Lock()

    @classmethod
    def off(cls) -> Firewall:
        """A firewall that does nothing (CELLAR_FIREWALL=off, or not root)."""
        return cls(programs={}, enabled=False)

    def apply(self, allowed: Allowed) -> None:
        """Put one instance's rules in place (or remove them when anyone may connect)."""
        if not self.enabled:
            return
        with self._locked():
            for family in self.programs:
                self._apply(family, self._read(family), allowed)

    def remove(self, instance_id: str) -> None:
        """Remove the rules of an instance that is gone."""
        if not self.enabled:
            return
        chain = chain_name(instance_id)
        with self._locked():
            for family in self.programs:
                self._drop(family, self._read(family), chain)

    def isolate(self) -> None:
        """Put the isolation chains of the project networks in place."""
        if not self.enabled:
            return
        with self._locked():
            for family in self.programs:
                self._isolate(family, self._read(family))

    def reconcile(self, wanted: Sequence[Allowed], keep: Iterable[str] = ()) -> Reconciled:
        """The isolation chains and exactly the chains of ``wanted``; every other instance
        chain is removed but those named in ``keep`` (rows that could not be read)."""
        if not self.enabled:
            return Reconciled(0, 0, 0)
        kept = {a.chain for a in wanted if a.networks} | set(keep)
        removed, failed = set(), set()
        with self._locked():
            for family in self.programs:
                table = self._read(family)
                self._isolate(family, table)
                for allowed in wanted:
                    if not allowed.networks and allowed.chain in table:
                        removed.add(allowed.chain)  # it lets anyone in now
                    try:
                        self._apply(family, table, allowed)
                    except ComputeError as exc:
                        logger.warning("rules of instance %s: %s", allowed.instance_id, exc)
                        failed.add(allowed.instance_id)
                for chain in [c for c in table if INSTANCE_CHAIN.match(c) and c not in kept]:
                    self._drop(family, table, chain)
                    removed.add(chain)
        restricted = len({a.chain for a in wanted if a.networks and a.instance_id not in failed})
        return Reconciled(restricted, len(removed), len(failed))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            if self.lock_path is None:
                yield
                return
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.lock_path, "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _command(self, family: int, *words: str) -> str:
        argv = [self.programs[family], "-w", LOCK_WAIT, "-t", "filter", *words]
        try:
            return self.run(argv)
        except CommandFailed as exc:
            raise ComputeError(f"cannot change the firewall: {exc}") from exc

    def _check(self, family: int, chain: str, rule: Rule) -> bool:
        """Whether iptables itself finds ``rule`` in ``chain`` (``-C``)."""
        argv = [self.programs[family], "-w", LOCK_WAIT, "-t", "filter", "-C", chain, *rule]
        try:
            self.run(argv)
        except CommandFailed as exc:
            if exc.returncode == 1:
                return False
            raise ComputeError(f"cannot read the firewall: {exc}") from exc
        return True

    def _read(self, family: int) -> Table:
        return parse_table(self._command(family, "-S"))

    def _ensure_chain(self, family: int, table: Table, chain: str) -> None:
        if chain not in table:
            self._command(family, "-N", chain)
            table[chain] = []

    def _has(self, family: int, table: Table, chain: str, rule: Rule) -> bool:
        listed = {canonical(r) for r in table.get(chain, [])}
        return canonical(rule) in listed or self._check(family, chain, rule)

    def _ensure_jump(self, family: int, table: Table, parent: str, rule: Rule) -> None:
        if not self._has(family, table, parent, rule):
            self._command(family, "-I", parent, "1", *rule)
            table.setdefault(parent, []).insert(0, rule)

    def _same(self, family: int, chain: str, current: list[Rule], rules: list[Rule]) -> bool:
        if len(current) != len(rules):
            return False
        if [canonical(r) for r in current] == [canonical(r) for r in rules]:
            return True  # iptables may list a rule in other words: ask it before rewriting
        return target(current[-1]) == target(rules[-1]) and all(
            self._check(family, chain, r) for r in rules
        )

    def _write(self, family: int, table: Table, chain: str, rules: list[Rule]) -> None:
        """Make ``chain`` hold exactly ``rules``: the new ones go in above the old (the
        last, which shuts the rest out, first), then the old ones are removed."""
        self._ensure_chain(family, table, chain)
        current = table[chain]
        if self._same(family, chain, current, rules):
            return
        self._command(family, "-I", chain, "1", *rules[-1])
        for position, rule in enumerate(rules[:-1], start=1):
            self._command(family, "-I", chain, str(position), *rule)
        for _old in current:
            self._command(family, "-D", chain, str(len(rules) + 1))
        table[chain] = [list(r) for r in rules]

    def _apply(self, family: int, table: Table, allowed: Allowed) -> None:
        chain = allowed.chain
        if not allowed.networks:
            self._drop(family, table, chain)
            return
        self._ensure_chain(family, table, DOCKER_USER)
        self._write(family, table, chain, allowed.rules(family))
        found = False
        for rule in [r for r in table[DOCKER_USER] if target(r) == chain]:
            if not found and original_port(rule) == allowed.host_port:
                found = True
                continue
            self._command(family, "-D", DOCKER_USER, *rule)  # another port, or twice
            table[DOCKER_USER].remove(rule)
        if not found:
            self._ensure_jump(family, table, DOCKER_USER, allowed.jump())

    def _drop(self, family: int, table: Table, chain: str) -> None:
        """Remove the jumps to a chain of Cellar's, then the chain."""
        if not (INSTANCE_CHAIN.match(chain) or chain in (HOST_CHAIN, AGENTS_CHAIN)):
            raise ComputeError(f"chain {chain} is not Cellar's; it is left alone")
        for parent in PARENTS:
            for rule in [r for r in table.get(parent, []) if target(r) == chain]:
                self._command(family, "-D", parent, *rule)
                table[parent].remove(rule)
        if chain in table:
            self._command(family, "-F", chain)
            self._command(family, "-X", chain)
            del table[chain]

    def _isolate(self, family: int, table: Table) -> None:
        self._write(family, table, HOST_CHAIN, host_rules(family))
        self._ensure_jump(family, table, "INPUT", ["-i", BRIDGES, "-j", HOST_CHAIN])
        self._ensure_chain(family, table, DOCKER_USER)
        self._write(family, table, AGENTS_CHAIN, agent_rules(self.agent_port))
        jump = ["-i", BRIDGES, "-o", BRIDGES, "-j", AGENTS_CHAIN]
        self._ensure_jump(family, table, DOCKER_USER, jump)
