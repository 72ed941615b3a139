"""Configuration parameters users may set, per datastore version, and their checks.

Shared by the API (to refuse a bad value with the allowed range) and the guest
agent (which never trusts its caller). Memory settings that follow the flavor,
and anything touching files, ports or authentication, are not offered.
"""

from __future__ import annotations

import dataclasses
import re

from cellar.errors import InvalidInput


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    type: str  # "integer", "float", "boolean" or "string"
    dynamic: bool  # applied without a restart
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()

    def check(self, value: object) -> str:
        """The value as the engine's configuration text, or InvalidInput naming the rule."""
        if self.type == "boolean":
            if isinstance(value, bool):
                return "on" if value else "off"
            if isinstance(value, str) and value.lower() in BOOLEANS:
                return BOOLEANS[value.lower()]
            raise InvalidInput(f"{self.name} must be true or false")
        if self.type in ("integer", "float"):
            return self._number(value)
        if not isinstance(value, str) or not STRING.fullmatch(value):
            raise InvalidInput(f"{self.name} must be a short word ({self._allowed()})")
        if self.choices and value not in self.choices:
            raise InvalidInput(f"{self.name} must be one of {', '.join(self.choices)}")
        return value

    def _number(self, value: object) -> str:
        wrong = InvalidInput(f"{self.name} must be {self._allowed()}")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise wrong
        try:
            number = float(value) if self.type == "float" else int(str(value))
        except ValueError as exc:
            raise wrong from exc
        if (self.min is not None and number < self.min) or (
            self.max is not None and number > self.max
        ):
            raise wrong
        return str(number)

    def _allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        kind = "an integer" if self.type == "integer" else f"a {self.type}"
        if self.min is None and self.max is None:
            return kind
        return f"{kind} from {_plain(self.min)} to {_plain(self.max)}"


BOOLEANS = {"true": "on", "on": "on", "1": "on", "false": "off", "off": "off", "0": "off"}
STRING = re.compile(r"[A-Za-z0-9_./+-]{1,64}")


def _plain(number: float | None) -> str:
    if number is None:
        return "any"
    return str(int(number)) if float(number).is_integer() else str(number)


POSTGRESQL_15 = {
    rule.name: rule
    for rule in (
        Rule("max_connections", "integer", False, 10, 5000),
        Rule("work_mem", "integer", True, 64, 2_097_151),  # kB
        Rule("maintenance_work_mem", "integer", True, 1024, 2_097_151),  # kB
        Rule("statement_timeout", "integer", True, 0, 2_147_483_647),  # ms
        Rule("idle_in_transaction_session_timeout", "integer", True, 0, 2_147_483_647),
        Rule("lock_timeout", "integer", True, 0, 2_147_483_647),
        Rule("log_min_duration_statement", "integer", True, -1, 2_147_483_647),
        Rule("default_statistics_target", "integer", True, 1, 10_000),
        Rule("effective_io_concurrency", "integer", True, 0, 1000),
        Rule("max_wal_size", "integer", True, 32, 1_048_576),  # MB
        Rule("random_page_cost", "float", True, 0, 1000),
        Rule("autovacuum", "boolean", True),
        Rule("log_statement", "string", True, choices=("none", "ddl", "mod", "all")),
        Rule("timezone", "string", True),
    )
}

MARIADB_10_11 = {
    rule.name: rule
    for rule in (
        Rule("max_connections", "integer", True, 10, 5000),
        Rule("wait_timeout", "integer", True, 1, 31_536_000),  # s
        Rule("interactive_timeout", "integer", True, 1, 31_536_000),  # s
        Rule("max_allowed_packet", "integer", True, 1024, 1_073_741_824),  # bytes
        Rule("long_query_time", "float", True, 0, 31_536_000),  # s
        Rule("slow_query_log", "boolean", True),
        Rule("table_open_cache", "integer", True, 1, 1_048_576),
        Rule("tmp_table_size", "integer", True, 1024, 4_294_967_295),  # bytes
        Rule("max_heap_table_size", "integer", True, 16_384, 4_294_967_295),  # bytes
        Rule("sort_buffer_size", "integer", True, 32_768, 1_073_741_824),  # bytes
        Rule("join_buffer_size", "integer", True, 128, 1_073_741_824),  # bytes
        Rule("innodb_lock_wait_timeout", "integer", True, 0, 1_073_741_824),  # s
        Rule("innodb_flush_log_at_trx_commit", "integer", True, 0, 3),
        Rule("character_set_server", "string", True, choices=("utf8mb4", "utf8mb3", "latin1")),
        Rule("innodb_log_buffer_size", "integer", False, 262_144, 4_294_967_295),  # bytes
        Rule("performance_schema", "boolean", False),
    )
}

EVICTION_POLICIES = (
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
)

REDIS_7_0 = {
    rule.name: rule
    for rule in (
        Rule("maxmemory-policy", "string", True, choices=EVICTION_POLICIES),
        Rule("timeout", "integer", True, 0, 2_147_483_647),  # s
        Rule("maxclients", "integer", True, 1, 65_000),
        Rule("appendonly", "boolean", True),
        Rule("appendfsync", "string", True, choices=("always", "everysec", "no")),
        Rule("hz", "integer", True, 1, 500),
        Rule("slowlog-log-slower-than", "integer", True, -1, 2_147_483_647),  # µs
        Rule("slowlog-max-len", "integer", True, 0, 1_000_000),
        Rule("lazyfree-lazy-eviction", "boolean", True),
        Rule("databases", "integer", False, 1, 10_000),
    )
}

RULES: dict[tuple[str, str], dict[str, Rule]] = {
    ("postgresql", "15"): POSTGRESQL_15,
    ("mariadb", "10.11"): MARIADB_10_11,
    ("redis", "7.0"): REDIS_7_0,
}


def rules_for(datastore: str, version: str) -> dict[str, Rule]:
    return RULES.get((datastore, version), {})


def check_values(datastore: str, version: str, values: object) -> dict[str, str]:
    """Every value checked against its rule; unknown names refused with the known ones."""
    if not isinstance(values, dict):
        raise InvalidInput('values must be an object {"parameter": value, ...}')
    rules = rules_for(datastore, version)
    checked: dict[str, str] = {}
    for name, value in values.items():
        rule = rules.get(name)
        if rule is None:
            known = ", ".join(sorted(rules)) or "none"
            raise InvalidInput(
                f"{name!r} is not a parameter of {datastore} {version} that Cellar sets; "
                f"parameters: {known}"
            )
        checked[name] = rule.check(value)
    return checked
