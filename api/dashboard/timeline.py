"""An instance's timeline: its tasks, its replica set's changes of primary and the audit
rows about it, newest first, as one list of (when, kind, what) events."""

from __future__ import annotations

from typing import Any

from api.dashboard.client import ApiFailure, call

MAX_EVENTS = 60


def _list(path: str, key: str) -> list[dict[str, Any]]:
    try:
        return list(call("GET", path)[key])
    except ApiFailure:
        return []


def events(instance_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for task in _list(f"/instances/{instance_id}/tasks", "tasks"):
        what = f"{task['workflow']}: {task['state'].lower()}"
        if task.get("error"):
            what += f" ({task['error']})"
        elif task["state"] == "RUNNING" and task.get("description"):
            what += f", {task['description']}"
        found.append({"at": task["created"], "kind": "task", "what": what})
    for event in _list(f"/instances/{instance_id}/replication_events", "replication_events"):
        what = f"{event['kind']} {event['state'].lower()}: primary {event['new_primary']}"
        found.append({"at": event["started"], "kind": "replication", "what": what})
    for row in _list(f"/audit?target={instance_id}&limit=50", "events"):
        who = row.get("user_name") or row.get("user_id") or "Cellar"
        found.append({"at": row["created"], "kind": "audit", "what": f"{row['action']} by {who}"})
    found.sort(key=lambda e: e["at"] or "", reverse=True)
    return found[:MAX_EVENTS]
