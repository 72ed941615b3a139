"""Publishing an engine log to backup storage, and discarding what was published.

Each publish stores what the log gained since the last one as one more object under the
log's prefix, ``<project>/<instance>-logs/<log>/<part>``, and rewrites the prefix's
``metafile`` (a JSON list of the parts, each with its byte range, size and SHA-256), the
way Trove's ``log publish`` appends to its container. A log that is shorter than what was
published was rotated: publishing starts again at its first byte. A crash between storing
a part and committing the row stores the same part again under the same name.
"""

from __future__ import annotations

import json
import logging

from cellar.errors import AgentError
from cellar.models import Instance, LogPublication, utcnow
from cellar.workflows import WorkflowName
from taskmanager.backup_storage import StorageError
from taskmanager.context import StepContext
from taskmanager.workflow import NEXT, Decision, Step, StepFailed, Workflow
from taskmanager.workflows.common import agent_call

logger = logging.getLogger(__name__)

READ_DEADLINE = 120.0  # seconds for the agent to send a log (its file is at most 10 MiB)


def prefix_of(instance: Instance, name: str) -> str:
    return f"{instance.project_id}/{instance.id}-logs/{name}/"


def publication(ctx: StepContext, instance: Instance, name: str) -> LogPublication:
    row = ctx.session.get(LogPublication, (instance.id, name))
    if row is None:
        row = LogPublication(instance_id=instance.id, name=name, published=0, parts=0)
        ctx.session.add(row)
    return row


def publish_log(ctx: StepContext) -> Decision:
    instance, name = ctx.instance, ctx.task.params["name"]
    agent, storage = ctx.agent, ctx.services.storage
    sizes = {log["name"]: log["size"] for log in agent_call(agent.list_logs)}
    if name not in sizes:
        raise StepFailed(f"instance {instance.id} has no log {name!r} any more")
    known = ctx.session.get(LogPublication, (instance.id, name))
    published, count = (known.published, known.parts) if known is not None else (0, 0)
    start = published if sizes[name] >= published else 0
    if sizes[name] == start:
        return NEXT
    prefix = prefix_of(instance, name)
    # end the read before the stores write: each records its object's data key in a
    # transaction of its own, which a transaction held open here would keep waiting
    ctx.session.commit()
    part_key = f"{prefix}{count + 1:06d}"
    try:  # a part stored twice (a crash before the commit) is the same bytes again
        with storage.writer(part_key, ctx.attempt_tag) as out:
            for chunk in agent.read_log(name, start, READ_DEADLINE):
                ctx.keep_lease()
                out.write(chunk)
        part = {
            "object": part_key,
            "from": start,
            "to": start + out.written.size,
            "size": out.written.size,
            "sha256": out.written.checksum,
            "published_at": utcnow().isoformat(timespec="seconds") + "Z",
        }
        parts = [*_parts(ctx, prefix, count), part]
        with storage.writer(f"{prefix}metafile", ctx.attempt_tag) as meta:
            meta.write(json.dumps({"log": name, "parts": parts}, indent=1).encode())
    except AgentError as exc:
        if exc.retryable:
            raise
        raise StepFailed(exc.message) from exc
    except StorageError as exc:
        raise StepFailed(exc.message) from exc
    row = publication(ctx, instance, name)
    row.published, row.parts = start + out.written.size, len(parts)
    row.location = storage.location(f"{prefix}metafile").removesuffix("metafile")
    logger.info("log %s of instance %s: %d bytes published as %s", name, instance.id,
                out.written.size, part_key)  # fmt: skip
    return NEXT


def _parts(ctx: StepContext, prefix: str, count: int) -> list[dict[str, object]]:
    """The first ``count`` parts the metafile lists (a crash may have left it one ahead)."""
    if count == 0:
        return []
    try:
        data = b"".join(ctx.services.storage.reader(f"{prefix}metafile"))
    except StorageError as exc:
        raise StepFailed(f"the published log's metafile cannot be read: {exc.message}") from exc
    listed: list[dict[str, object]] = json.loads(data)["parts"]
    return listed[:count]


def discard_log(ctx: StepContext) -> Decision:
    instance, name = ctx.instance, ctx.task.params["name"]
    row = ctx.session.get(LogPublication, (instance.id, name))
    if row is None:
        return NEXT
    prefix, storage, count = prefix_of(instance, name), ctx.services.storage, row.parts
    ctx.session.commit()  # as in publish_log: no transaction held while the store works
    try:
        for part in range(count, 0, -1):
            storage.delete(f"{prefix}{part:06d}")
        storage.delete(f"{prefix}metafile")
    except StorageError as exc:
        raise StepFailed(exc.message) from exc
    gone = ctx.session.get(LogPublication, (instance.id, name))
    if gone is not None:
        ctx.session.delete(gone)
    return NEXT


PUBLISH_LOG = Workflow(
    WorkflowName.PUBLISH_LOG,
    (Step("publish_log", publish_log, 180, "publishing the log to backup storage"),),
)
DISCARD_LOG = Workflow(
    WorkflowName.DISCARD_LOG,
    (Step("discard_log", discard_log, 60, "removing the published log"),),
)
