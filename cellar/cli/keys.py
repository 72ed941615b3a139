"""``cellar secrets rotate-key``: a new secret key, with every stored secret sealed again.

An operator's command: run where Cellar runs, it opens the metadata database and the key
ring itself, as ``cellar serve`` does, while the service keeps running (see
``cellar.key_rotation`` for the steps and why no value is ever left unreadable).

    cellar secrets rotate-key            new key first in the key file, then seal again
    cellar secrets rotate-key --reseal   seal again with the newest key, add none
    cellar secrets rotate-key --retire   drop the older keys, once nothing needs them

With the keys in ``CELLAR_SECRET_KEY`` it cannot add or drop one: it seals again with
the variable's first key and says what the operator has to change on every host.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cellar.cli.output import emit

if TYPE_CHECKING:
    from cellar.db import Database
    from cellar.secrets import SecretBox

REFUSED = 1
CANNOT_RUN = 2
COLUMNS = ("secrets", "resealed", "current", "changed", "unreadable")


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def add_parser(sub: Any) -> None:
    secrets = sub.add_parser(
        "secrets", help="Cellar's secret key (operators, run where Cellar runs)"
    )
    actions = secrets.add_subparsers(dest="action", required=True)
    rotate = actions.add_parser(
        "rotate-key", help="put a new key first and seal every stored secret with it"
    )
    what = rotate.add_mutually_exclusive_group()
    what.add_argument(
        "--reseal", action="store_true", help="add no key: seal again with the newest one"
    )
    what.add_argument(
        "--retire",
        action="store_true",
        help="drop the older keys, once the newest one alone opens every stored secret",
    )
    rotate.add_argument(
        "--batch", type=_positive, default=100, help="rows sealed again per transaction"
    )


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from cellar import settings
    from cellar.db import Database
    from cellar.errors import CellarError
    from cellar.secrets import KeyRing, SecretBox

    config = settings.load()
    if config.database_url.startswith("sqlite"):
        path = config.database_url.split("///", 1)[-1]
        if not Path(path).exists():
            print(f"error: no metadata database at {path} (CELLAR_HOME)", file=sys.stderr)
            return CANNOT_RUN
    box = SecretBox(KeyRing(config.home))
    database = Database(config.database_url)
    try:
        database.upgrade()
        return _retire(args, database, box) if args.retire else _rotate(args, database, box)
    except CellarError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return CANNOT_RUN
    except SQLAlchemyError as exc:
        print(f"error: cannot use the metadata database: {type(exc).__name__}", file=sys.stderr)
        return CANNOT_RUN
    finally:
        database.engine.dispose()


def _rotate(args: argparse.Namespace, database: Database, box: SecretBox) -> int:
    from cellar import key_rotation
    from cellar.secrets import KEY_ENV

    ring = box.ring
    if ring.from_environment:
        print(
            f"the keys come from {KEY_ENV}, which this command cannot change: sealing again "
            f"with its first key ({key_rotation.fingerprint(ring.keys()[0])}). Put the new key "
            f"first in {KEY_ENV} on every host before running this.",
            file=sys.stderr,
        )
    elif not args.reseal:
        key_rotation.add_key(ring)
        print(
            f"a new key ({key_rotation.fingerprint(ring.keys()[0])}) is first in {ring.path}; "
            "running processes seal with it from their next use",
            file=sys.stderr,
        )
    done = key_rotation.reseal(database, box, args.batch)
    rows = [
        {"secrets": d.name, "resealed": d.resealed, "current": d.current, "changed": d.changed,
         "unreadable": len(d.unreadable)}
        for d in done
    ]  # fmt: skip
    emit(rows, args.format, COLUMNS)
    unreadable = sum(len(d.unreadable) for d in done)
    if unreadable:
        print(
            f"error: {unreadable} stored secrets open with no key of the ring; they were left "
            "as they are",
            file=sys.stderr,
        )
        return REFUSED
    print(
        "the older keys still open what was sealed with them; drop them with "
        "'cellar secrets rotate-key --retire' once every host seals with the new key",
        file=sys.stderr,
    )
    return 0


def _retire(args: argparse.Namespace, database: Database, box: SecretBox) -> int:
    from cellar import key_rotation
    from cellar.secrets import KEY_ENV

    ring = box.ring
    left = key_rotation.retire(database, box, args.batch)
    newest = key_rotation.fingerprint(ring.keys()[0])
    if left:
        counts = ", ".join(f"{len(keys)} {name}" for name, keys in left.items())
        print(
            f"error: the older keys were kept: the newest key ({newest}) does not open {counts}; "
            "run 'cellar secrets rotate-key --reseal' and try again",
            file=sys.stderr,
        )
        return REFUSED
    if ring.from_environment:
        print(
            f"the first key of {KEY_ENV} ({newest}) opens every stored secret: remove the "
            f"others from {KEY_ENV} on every host"
        )
    else:
        print(f"{ring.path} holds its newest key ({newest}) alone")
    return 0
