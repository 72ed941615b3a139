"""The names ``Engine.metrics`` reports its values under, and what every engine shares.

An engine reports only the names it has. Names ending in ``_total`` are counters that
only grow while the engine runs (the control plane turns them into rates); the others
are readings of the moment:

- ``connections``: client connections open now, the agent's own among them;
- ``transactions_total``: transactions ended (committed or rolled back);
- ``commands_total``: statements or commands the server was sent;
- ``cache_hit_ratio``: the share of reads its cache answered, 0 to 1 (1 before any);
- ``memory_bytes``: the memory the whole container uses, read from its cgroup;
- ``engine_memory_bytes``: the memory the engine says its data takes (Redis);
- ``volume_used_bytes``: bytes used on the data volume's file system;
- ``replication_lag_seconds``: on a replica, how far behind its source it is;
- ``uptime_seconds``: how long the server has been running.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_DIR = Path("/sys/fs/cgroup")
MEMORY_FILES = ("memory.current", "memory/memory.usage_in_bytes")  # cgroup v2, then v1


def hit_ratio(hits: float, misses: float) -> float:
    """``hits / (hits + misses)``; 1.0 while nothing has been looked up."""
    looked_up = hits + misses
    return 1.0 if looked_up <= 0 else max(0.0, hits) / looked_up


def container_memory(cgroup_dir: Path = CGROUP_DIR) -> float | None:
    """The bytes of memory the container uses now (its cgroup's usage, page cache
    included), or None when neither cgroup v2 nor v1 lets it be read."""
    for name in MEMORY_FILES:
        try:
            return float(int((cgroup_dir / name).read_text().strip()))
        except (OSError, ValueError):
            continue
    return None
