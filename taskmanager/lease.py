"""Step leases: which worker may run a task's current step, and the fence on its commits.

A worker takes a task's lease before it runs the task's step; taking it adds one to
``attempt``, the fencing token. What the step writes commits only while that worker
still holds that attempt: every commit of the step's session first runs

    UPDATE tasks ... WHERE id = :task AND lease_owner = :me AND attempt = :n
                     AND state = 'RUNNING'

in the same transaction, and rolls everything back when no row matches. The update
also locks the task row until the commit, so nobody can take the lease in between.
The runner fences before it writes the step's decision into the task row, so the check
sees the row as the lease left it.

A lease can be taken over when it has run out, or at once when the heartbeat of the
worker holding it is stale (see ``taskmanager.heartbeat``); a worker takes over only
while its own heartbeat is fresh, so a metadata database that stalled everyone makes
nobody look dead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from sqlalchemy import and_, event, exists, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from cellar.db import Database
from cellar.models import Task, Worker, utcnow
from cellar.status import TaskState

logger = logging.getLogger(__name__)

EARLY_SLACK = dt.timedelta(milliseconds=50)


class LeaseLost(Exception):
    """This worker no longer holds the step it was running: it writes nothing more."""


@dataclasses.dataclass
class Lease:
    """One attempt at one task's step, held by one worker."""

    task_id: str
    owner: str  # the worker's id
    attempt: int
    lost: bool = False
    locked: bool = False  # fenced in the session's open transaction

    def _mine(self) -> ColumnElement[bool]:
        return and_(
            Task.id == self.task_id,
            Task.lease_owner == self.owner,
            Task.attempt == self.attempt,
            Task.state == TaskState.RUNNING.value,
        )

    def fence(self, session: Session) -> None:
        """Check, in ``session``'s transaction, that this lease still holds; lock the task
        row until that transaction ends. LeaseLost when it does not hold.

        It runs before the session flushes what the step changed (the task row's own
        changes among them), so it sees the row as the lease left it."""
        with session.no_autoflush:
            result: Any = session.execute(
                update(Task)
                .where(self._mine())
                .values(lease_owner=Task.lease_owner, updated=Task.updated)
                .execution_options(synchronize_session=False)
            )
        if result.rowcount != 1:
            self.lost = True
            raise LeaseLost(
                f"task {self.task_id}: attempt {self.attempt} of {self.owner} lost its lease"
            )
        self.locked = True

    def guard(self, session: Session) -> None:
        """Fence every commit of ``session``: one not fenced yet is fenced before it goes."""

        def before_commit(session: Session) -> None:
            if not self.locked:
                self.fence(session)

        def ended(_session: Session, *_args: Any) -> None:
            self.locked = False

        event.listen(session, "before_commit", before_commit)
        event.listen(session, "after_commit", ended)
        event.listen(session, "after_rollback", ended)

    def renew(self, db: Database, seconds: float) -> bool:
        """Push the lease forward; False (and ``lost``) when it is no longer this one's."""
        with db.session() as session:
            result: Any = session.execute(
                update(Task)
                .where(self._mine())
                .values(lease_until=utcnow() + dt.timedelta(seconds=seconds), updated=Task.updated)
                .execution_options(synchronize_session=False)
            )
            held = result.rowcount == 1
        if not held:
            self.lost = True
        return held

    def release(self, db: Database) -> None:
        """Let go of a lease this attempt still holds without finishing its step (the task
        was cancelled, or the step was abandoned): the next attempt need not wait."""
        with db.session() as session:
            session.execute(
                update(Task)
                .where(
                    Task.id == self.task_id,
                    Task.lease_owner == self.owner,
                    Task.attempt == self.attempt,
                )
                .values(lease_until=None, lease_owner=None, updated=Task.updated)
                .execution_options(synchronize_session=False)
            )


def dead_workers(now: dt.datetime, stale: float) -> Any:
    """The ids of workers whose heartbeat is older than ``stale`` seconds."""
    return select(Worker.id).where(Worker.heartbeat_at < now - dt.timedelta(seconds=stale))


def free(now: dt.datetime, stale: float) -> ColumnElement[bool]:
    """A task row whose lease nobody holds: none, run out, or its worker is dead."""
    return or_(
        Task.lease_until.is_(None),
        Task.lease_until < now,
        Task.lease_owner.in_(dead_workers(now, stale)),
    )


def acquire(db: Database, task_id: str, owner: str, seconds: float, stale: float) -> Lease | None:
    """Take the lease of ``task_id`` if its step is due and nobody alive holds it."""
    now = utcnow()
    alive = exists().where(
        Worker.id == owner, Worker.heartbeat_at >= now - dt.timedelta(seconds=stale)
    )
    takeable = or_(
        Task.lease_until.is_(None),
        Task.lease_until < now,
        and_(Task.lease_owner.in_(dead_workers(now, stale)), alive),
    )
    with db.session() as session:
        attempt = session.scalar(
            update(Task)
            .where(
                Task.id == task_id,
                Task.state == TaskState.RUNNING.value,
                Task.next_run_at <= now + EARLY_SLACK,
                takeable,
            )
            .values(
                lease_until=now + dt.timedelta(seconds=seconds),
                lease_owner=owner,
                attempt=Task.attempt + 1,
            )
            .returning(Task.attempt)
            .execution_options(synchronize_session=False)
        )
    if attempt is None:
        return None
    return Lease(task_id=task_id, owner=owner, attempt=int(attempt))
