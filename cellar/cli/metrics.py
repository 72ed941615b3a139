"""``cellar metrics``: an instance's engine counters over the last minutes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cellar.cli.client import Client
from cellar.cli.output import emit


def add_parser(sub: Any) -> None:
    metrics = sub.add_parser(
        "metrics", help="the engine's counters, sampled every 10 s (rates per second)"
    )
    metrics.add_argument("instance")
    metrics.add_argument(
        "--minutes", type=int, default=60, help="how far back, 1 to 1440 (default 60)"
    )


def columns_of(samples: list[dict[str, Any]]) -> list[str]:
    """``at`` first, then each counter in the order the samples name them."""
    found = ["at"]
    for sample in samples:
        found.extend(name for name in sample if name not in found)
    return found


def run(args: argparse.Namespace, client: Client) -> int:
    reply = client.call("GET", f"/instances/{args.instance}/metrics?minutes={args.minutes}")
    if args.format == "json":
        emit(reply, args.format)
        return 0
    samples = reply["metrics"]["samples"]
    if not samples:
        since = reply["metrics"].get("since")
        print(f"no samples of instance {args.instance} since {since}", file=sys.stderr)
        return 0
    emit(samples, args.format, columns_of(samples))
    return 0
