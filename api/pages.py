"""The instances of recently listed projects, kept in the API process and made again only
where the rows behind them changed.

A project's first list reads all of its instances (a few queries in all, as
:func:`api.views.inputs_of` does) and keeps the inputs of each view. Every list after
that first reads the database's feed of changes (:mod:`cellar.view_changes`), reads
again only the instances whose rows changed, with the other members of their replica
sets (a primary's view names its replicas), and joins the kept views. So a page of a
thousand instances costs a few small queries when little has changed, and it shows
every change committed before it was asked for, made by any process.

Anything that goes wrong while keeping up drops what is kept; the next list starts
from scratch. A project not listed for ``IDLE`` seconds is dropped; if no list has read
the feed for ``STALE`` seconds (well within the feed's ``KEEP``), everything is. At
most ``PROJECTS_KEPT`` projects are kept, the most recently listed.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.related import IDS, LISTED, Every, chunks
from api.views import INSTANCE_COLUMNS, Inputs, InstanceRow, inputs_of, rendered
from cellar.models import Instance
from cellar.view_changes import Changes, Feed

IDLE = 120.0
STALE = 120.0
PLACES_KEPT = 100_000  # instance ids whose project is remembered
PROJECTS_KEPT = 32  # the most recently listed; a project of 1,000 instances takes about 2 MB

Key = tuple[dt.datetime, str]  # kept oldest first (created, then id); listed newest first
ORDER = (Instance.created, Instance.id)
LISTED_ROWS = select(*INSTANCE_COLUMNS).where(*LISTED).order_by(*ORDER)
ROWS_BY_ID = select(*INSTANCE_COLUMNS).where(*LISTED, Instance.id.in_(IDS)).order_by(*ORDER)


@dataclasses.dataclass
class Kept:
    """A project's instances as last read."""

    inputs: dict[str, Inputs]  # by instance id
    order: list[Key]
    used: float
    dirty: set[str] = dataclasses.field(default_factory=set)  # ids to read again
    json: dict[str, dict[str, bytes]] = dataclasses.field(default_factory=dict)  # by root, id

    @classmethod
    def of(cls, inputs: Iterable[Inputs], used: float) -> Kept:
        by_id = {i.instance.id: i for i in inputs}
        return cls(by_id, _order(by_id), used)

    def members(self, sets: set[str]) -> set[str]:
        if not sets:
            return set()
        return {i for i, kept in self.inputs.items() if kept.instance.replica_set_id in sets}

    def views(self, ids: list[str], root: str) -> list[bytes]:
        """The JSON of the views of ``ids`` with links under ``root``."""
        made = self.json.setdefault(root, {})
        found = []
        for instance_id in ids:
            view = made.get(instance_id)
            if view is None:
                view = made[instance_id] = rendered(self.inputs[instance_id], root)
            found.append(view)
        return found


def _order(inputs: dict[str, Inputs]) -> list[Key]:
    return sorted((i.instance.created, i.instance.id) for i in inputs.values())


class Pages:
    """The kept instances of each project, and the API's place in the change feed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feed = Feed()
        self._kept: dict[str, Kept] = {}
        self._looked = 0.0
        self._projects: dict[str, str] = {}  # instance id -> project, as looked up (fixed)

    def page(
        self, session: Session, project_id: str, after: Key | None, count: int, root: str
    ) -> list[bytes]:
        """The JSON views of up to ``count`` of the project's instances, newest first (as
        Trove lists them), older than ``after``, with links under ``root``."""
        with self._lock:
            try:
                kept = self._current(session, project_id)
            except BaseException:
                self._forget()
                raise
            end = len(kept.order) if after is None else bisect.bisect_left(kept.order, after)
            keys = kept.order[max(0, end - count) : end]
            return kept.views([key[1] for key in reversed(keys)], root)

    def _forget(self) -> None:
        self._kept.clear()
        self._feed = Feed()

    def _current(self, session: Session, project_id: str) -> Kept:
        now = time.monotonic()
        if self._feed.position is None or now - self._looked > STALE:
            self._forget()
            self._feed.start(session)
        else:
            self._note(session, self._feed.poll(session))
        self._looked = now
        for name in [p for p, k in self._kept.items() if now - k.used > IDLE]:
            del self._kept[name]
        kept = self._kept.get(project_id)
        if kept is None:
            rows = [
                *map(
                    InstanceRow._make,
                    session.connection().execute(LISTED_ROWS, {"project": project_id}),
                )
            ]
            kept = Kept.of(inputs_of(session, rows, Every(project_id)), now)
            if len(self._kept) >= PROJECTS_KEPT:
                del self._kept[min(self._kept, key=lambda p: self._kept[p].used)]
            self._kept[project_id] = kept
        elif kept.dirty:
            self._refresh(session, project_id, kept)
        kept.used = now
        return kept

    def _note(self, session: Session, changes: Changes) -> None:
        """Mark what ``changes`` touch in each kept project."""
        if not self._kept or not any(changes):
            return
        unplaced = set(changes.instances)
        for kept in self._kept.values():
            touched = {i for i in unplaced if i in kept.inputs}
            unplaced -= touched
            if changes.sets or changes.configurations:
                for instance_id, inputs in kept.inputs.items():
                    row = inputs.instance
                    if row.replica_set_id in changes.sets:
                        touched.add(instance_id)
                    if row.configuration_id in changes.configurations:
                        touched.add(instance_id)
            kept.dirty |= touched
        unknown = sorted(i for i in unplaced if i not in self._projects)
        if len(self._projects) + len(unknown) > PLACES_KEPT:
            self._projects.clear()
        for chunk in chunks(unknown):  # new instances, or other projects'
            query = select(Instance.id, Instance.project_id).where(Instance.id.in_(chunk))
            self._projects.update({i: p for i, p in session.connection().execute(query)})
        for instance_id in unplaced:
            owner = self._kept.get(self._projects.get(instance_id, ""))
            if owner is not None:
                owner.dirty.add(instance_id)

    def _refresh(self, session: Session, project_id: str, kept: Kept) -> None:
        """Read the dirty instances again, with the other members of their sets."""
        dirty = set(kept.dirty)
        rows = _rows_of(session, project_id, dirty)
        sets = {kept.inputs[i].instance.replica_set_id for i in dirty if i in kept.inputs}
        sets |= {r.replica_set_id for r in rows}
        sets.discard(None)
        members = kept.members({s for s in sets if s is not None}) - dirty
        if members:
            rows += _rows_of(session, project_id, members)
            dirty |= members
        fresh = {i.instance.id: i for i in inputs_of(session, rows)}
        inputs = dict(kept.inputs)
        moved = False
        for instance_id in dirty:
            old, new = inputs.pop(instance_id, None), fresh.get(instance_id)
            moved |= old is None or new is None or old.instance.created != new.instance.created
        inputs.update(fresh)
        order = _order(inputs) if moved else kept.order
        for made in kept.json.values():
            for instance_id in dirty:
                made.pop(instance_id, None)
        kept.inputs, kept.order, kept.dirty = inputs, order, set()


def _rows_of(session: Session, project_id: str, ids: set[str]) -> list[InstanceRow]:
    found = []
    for chunk in chunks(sorted(ids)):
        rows = session.connection().execute(ROWS_BY_ID, {"project": project_id, "ids": chunk})
        found += [InstanceRow._make(row) for row in rows]
    return found
