"""The feed of changes to the rows that instance views read.

The database writes it itself: a trigger on each table a view reads adds a row to
``view_changes`` naming what changed (an instance, a replica set or a configuration
group), in the transaction of the change, so the feed has every change made through
any process, ORM or plain SQL, and none that rolled back. The API reads it
(:class:`Feed`) to know which of the views it keeps must be made again.

Reading in order: on SQLite one transaction writes at a time, so ``seq`` grows in the
order of commits and a reader asks for what is past the last ``seq`` it saw. On
PostgreSQL transactions commit out of the order of their ``seq``, so each row also
holds its writer's transaction id, and a reader asks for the rows of every transaction
that was still open at its previous look (``xid`` at or above that snapshot's
``xmin``), skipping the rows it has seen. :func:`prune` removes rows older than
``KEEP``; a reader that has not looked for ``Feed.STALE`` starts again from scratch.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from cellar.models import ViewChange, utcnow

KEEP = dt.timedelta(minutes=10)

# table, what its rows belong to, the column that names it
FED = (
    ("instances", "instance", "id"),
    ("tasks", "instance", "instance_id"),
    ("backups", "instance", "instance_id"),
    ("archive_segments", "instance", "instance_id"),
    ("replica_sets", "set", "id"),
    ("configurations", "configuration", "id"),
)


def sqlite_triggers() -> list[str]:
    statements = []
    for table, kind, column in FED:
        add = f"INSERT INTO view_changes (kind, key, created) SELECT '{kind}', "
        stamp = ", CURRENT_TIMESTAMP"
        statements += [
            f"CREATE TRIGGER view_change_{table}_insert AFTER INSERT ON {table} "
            f"WHEN NEW.{column} IS NOT NULL BEGIN {add}NEW.{column}{stamp}; END",
            f"CREATE TRIGGER view_change_{table}_update AFTER UPDATE ON {table} BEGIN "
            f"{add}NEW.{column}{stamp} WHERE NEW.{column} IS NOT NULL; "
            f"{add}OLD.{column}{stamp} WHERE OLD.{column} IS NOT NULL "
            f"AND OLD.{column} IS NOT NEW.{column}; END",
            f"CREATE TRIGGER view_change_{table}_delete AFTER DELETE ON {table} "
            f"WHEN OLD.{column} IS NOT NULL BEGIN {add}OLD.{column}{stamp}; END",
        ]
    return statements


POSTGRES_FUNCTION = """
CREATE FUNCTION cellar_view_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_key text;
    old_key text;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        new_key := to_jsonb(NEW) ->> TG_ARGV[1];
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_key := to_jsonb(OLD) ->> TG_ARGV[1];
    END IF;
    IF new_key IS NOT NULL THEN
        INSERT INTO view_changes (kind, key, xid, created)
        VALUES (TG_ARGV[0], new_key, pg_current_xact_id()::text::bigint,
                now() AT TIME ZONE 'utc');
    END IF;
    IF old_key IS NOT NULL AND old_key IS DISTINCT FROM new_key THEN
        INSERT INTO view_changes (kind, key, xid, created)
        VALUES (TG_ARGV[0], old_key, pg_current_xact_id()::text::bigint,
                now() AT TIME ZONE 'utc');
    END IF;
    RETURN NULL;
END
$$
"""


def postgres_triggers() -> list[str]:
    return [POSTGRES_FUNCTION] + [
        f"CREATE TRIGGER view_change AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION cellar_view_change('{kind}', '{column}')"
        for table, kind, column in FED
    ]


def drop_triggers(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS view_change ON {t}" for t, _k, _c in FED] + [
            "DROP FUNCTION IF EXISTS cellar_view_change()"
        ]
    return [
        f"DROP TRIGGER IF EXISTS view_change_{table}_{op}"
        for table, _k, _c in FED
        for op in ("insert", "update", "delete")
    ]


class Changes(NamedTuple):
    """What changed, by id."""

    instances: frozenset[str]
    sets: frozenset[str]
    configurations: frozenset[str]


class Feed:
    """A reader's place in the feed."""

    def __init__(self) -> None:
        self.position: int | None = None  # the last seq seen, or PostgreSQL's xmin
        self._seen: set[int] = set()  # seqs of transactions that may still commit more

    def start(self, session: Session) -> None:
        """From now on: what is read after this shows every change before it."""
        self.position = self._now(session)
        self._seen = set()

    def poll(self, session: Session) -> Changes:
        """What changed since the last look (or since :meth:`start`)."""
        if self.position is None:
            raise RuntimeError("the feed was not started")
        if _postgres(session):
            horizon = self._now(session)
            rows = session.execute(
                select(ViewChange.seq, ViewChange.kind, ViewChange.key, ViewChange.xid).where(
                    ViewChange.xid >= self.position
                )
            ).all()
            fresh = [r for r in rows if r.seq not in self._seen]
            self._seen = {r.seq for r in rows if r.xid is not None and r.xid >= horizon}
            self.position = horizon
        else:
            fresh = [
                *session.execute(
                    select(ViewChange.seq, ViewChange.kind, ViewChange.key, ViewChange.xid).where(
                        ViewChange.seq > self.position
                    )
                )
            ]
            if fresh:
                self.position = max(r.seq for r in fresh)
        found: dict[str, set[str]] = {"instance": set(), "set": set(), "configuration": set()}
        for row in fresh:
            found.setdefault(row.kind, set()).add(row.key)
        return Changes(
            frozenset(found["instance"]), frozenset(found["set"]), frozenset(found["configuration"])
        )

    @staticmethod
    def _now(session: Session) -> int:
        if _postgres(session):
            return int(session.scalar(text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")))
        return int(session.scalar(select(func.coalesce(func.max(ViewChange.seq), 0))) or 0)


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def prune(session: Session, now: dt.datetime | None = None) -> int:
    """Remove the rows older than ``KEEP``; how many went."""
    cutoff = (now or utcnow()) - KEEP
    result = session.execute(delete(ViewChange).where(ViewChange.created < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
