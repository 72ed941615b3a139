"""``cellar debug-access ...`` and ``cellar settings ...``: the routes and bodies they send."""

from __future__ import annotations

from typing import Any

import pytest

from cellar.cli import debug_access
from cellar.cli import main as cli
from tests.unit.cli.support import RecordingClient

CREDENTIAL = {"id": "c1", "user": "debug_0a1b2c3d4e", "access": "read", "databases": ["shop"],
              "state": "ACTIVE", "requested_by": "ann", "expires_at": "2026-12-05T01:00:00Z",
              "reason": "INC-1", "password": "shown-once"}  # fmt: skip
ANSWER = {"credential": CREDENTIAL, "credentials": [CREDENTIAL],
          "settings": {"approve_write_credentials": True}}  # fmt: skip
PATH = "/instances/i1/credentials"


@pytest.mark.parametrize(
    ("argv", "sent"),
    [
        (["debug-access", "create", "i1", "--reason", "INC-1", "--database", "shop",
          "--database", "books", "--access", "write", "--ttl", "600"],
         ("POST", PATH, {"credential": {"reason": "INC-1", "access": "write",
                                        "ttl_seconds": 600, "databases": ["shop", "books"]}})),
        (["debug-access", "create", "i1", "--reason", "look"],
         ("POST", PATH, {"credential": {"reason": "look", "access": "read",
                                        "ttl_seconds": 3600, "databases": []}})),
        (["debug-access", "list", "i1"], ("GET", PATH, None)),
        (["debug-access", "show", "i1", "c1"], ("GET", f"{PATH}/c1", None)),
        (["debug-access", "revoke", "i1", "c1"], ("DELETE", f"{PATH}/c1", None)),
        (["debug-access", "approve", "i1", "c1"], ("POST", f"{PATH}/c1/action", {"approve": {}})),
        (["debug-access", "reject", "i1", "c1"], ("POST", f"{PATH}/c1/action", {"reject": {}})),
        (["settings", "show"], ("GET", "/settings", None)),
        (["settings", "set", "--approve-write-credentials", "true"],
         ("PUT", "/settings", {"settings": {"approve_write_credentials": True}})),
    ],
)  # fmt: skip
def test_commands_send_the_routes_bodies(argv: list[str], sent: tuple[str, str, Any]) -> None:
    client = RecordingClient(ANSWER)
    args = cli.parser().parse_args(argv)
    assert cli.HANDLERS[args.command] in (debug_access.run, debug_access.run_settings)
    assert cli.HANDLERS[args.command](args, client) == 0  # type: ignore[arg-type]
    assert client.sent == [sent]


def test_the_password_is_printed_once_on_create(capsys: pytest.CaptureFixture[str]) -> None:
    client = RecordingClient(ANSWER)
    args = cli.parser().parse_args(["debug-access", "create", "i1", "--reason", "INC-1"])
    debug_access.run(args, client)  # type: ignore[arg-type]
    assert "shown-once" in capsys.readouterr().out


def test_a_reason_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["debug-access", "create", "i1"])
    assert "--reason" in capsys.readouterr().err
