"""``cellar audit list`` (the project's trail, over the API) and ``cellar audit verify``.

``verify`` is an operator's command: run where Cellar runs, it opens the metadata
database and the audit signing key itself, as ``cellar serve`` does, and walks the whole
chain; with ``--remote`` it asks the API to do so (admins). It exits 1 when the chain
is broken, naming the first row changed, inserted or deleted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cellar.cli.client import Client
from cellar.cli.output import emit

EVENT_COLUMNS = ("created", "user_name", "action", "target_type", "target_id", "outcome")
FILTERS = (
    ("since", "TIME", "events at or after TIME (ISO 8601)"),
    ("until", "TIME", "events before TIME"),
    ("user", "USER", "by this user (name or id)"),
    ("target", "ID", "about this resource"),
    ("action", "ACTION", "e.g. instance.create"),
    ("limit", "N", "at most N events"),
    ("marker", "ID", "the events after this one (for the next page)"),
)
BROKEN = 1
CANNOT_CHECK = 2


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit trail")
    actions = audit.add_subparsers(dest="action", required=True)
    listed = actions.add_parser("list", help="the project's events, newest first")
    for name, metavar, text in FILTERS:
        kind = int if name == "limit" else str
        listed.add_argument(
            f"--{name}", dest=f"filter_{name}", type=kind, metavar=metavar, help=text
        )
    verify = actions.add_parser(
        "verify", help="check that no audit row was changed, inserted or deleted (operators)"
    )
    verify.add_argument(
        "--remote", action="store_true", help="ask the API (admins) instead of opening the database"
    )


def run(args: argparse.Namespace, client: Client) -> int:
    if args.action == "verify":
        answer = client.call("GET", "/mgmt/audit/verify")["audit"]
        findings = list(answer.get("findings") or [])
        return report(args.format, bool(answer.get("intact")), answer, findings)
    params = {
        name: getattr(args, f"filter_{name}")
        for name, _metavar, _text in FILTERS
        if getattr(args, f"filter_{name}") is not None
    }
    answer = client.call("GET", "/audit", params=params)
    events = answer["events"]
    emit(events, args.format, EVENT_COLUMNS)
    following = _next_marker(answer)
    if following and args.format != "json":
        print(f"more events: add --marker {following}", file=sys.stderr)
    return 0


def _next_marker(answer: dict[str, Any]) -> str | None:
    """The marker of the next page, when the answer names one."""
    if answer.get("next_marker"):
        return str(answer["next_marker"])
    for link in answer.get("links") or []:
        if (
            isinstance(link, dict)
            and link.get("rel") == "next"
            and "marker=" in link.get("href", "")
        ):
            return str(link["href"]).split("marker=", 1)[1].split("&", 1)[0]
    return None


def _finding_text(item: dict[str, Any]) -> str:
    if item.get("text"):
        return str(item["text"])
    row = item.get("id") or item.get("row_id")
    where = f"row {item.get('seq')} ({row})" if row else f"place {item.get('seq')}"
    return f"{where}: {item.get('problem')}"


def report(fmt: str, intact: bool, counts: dict[str, Any], findings: list[dict[str, Any]]) -> int:
    """Print what a check found; the exit status (0 intact, 1 broken)."""
    if fmt == "json":
        rows, points = counts.get("rows"), counts.get("checkpoints")
        shown = {"intact": intact, "rows": rows, "checkpoints": points, "findings": findings}
        emit(shown, fmt)
    else:
        state = "intact" if intact else "BROKEN"
        print(
            f"checked {counts.get('rows')} rows and {counts.get('checkpoints')} signed "
            f"checkpoints: the audit chain is {state}"
        )
        for finding in findings:
            print(f"  {_finding_text(finding)}")
    return 0 if intact else BROKEN


def verify_local(args: argparse.Namespace) -> int:
    """Open the metadata database and the signing key, and walk the chain."""
    from sqlalchemy.exc import SQLAlchemyError

    from cellar import audit, settings
    from cellar.db import Database

    config = settings.load()
    if (
        not os.environ.get(audit.KEY_ENV, "").strip()
        and not (config.home / audit.KEY_FILE).exists()
    ):
        print(
            f"error: no audit signing key: neither {audit.KEY_ENV} nor "
            f"{config.home / audit.KEY_FILE}; run this where Cellar runs (CELLAR_HOME)",
            file=sys.stderr,
        )
        return CANNOT_CHECK
    if config.database_url.startswith("sqlite"):
        path = config.database_url.split("///", 1)[-1]
        if not Path(path).exists():
            print(f"error: no metadata database at {path} (CELLAR_HOME)", file=sys.stderr)
            return CANNOT_CHECK
    public = audit.public_key(audit.load_signer(config.home))
    database = Database(config.database_url)
    try:
        with database.session() as session:
            found = audit.verify(session, public)
    except SQLAlchemyError as exc:
        print(f"error: cannot read the audit trail: {exc}", file=sys.stderr)
        return CANNOT_CHECK
    finally:
        database.engine.dispose()
    findings = []
    if found.finding is not None:
        where = found.finding
        findings.append(
            {"seq": where.seq, "id": where.row_id, "problem": where.problem, "text": str(where)}
        )
    counts = {"rows": found.rows, "checkpoints": found.checkpoints}
    return report(args.format, found.intact, counts, findings)
