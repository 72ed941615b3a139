"""``cellar quota``, ``cellar limits``, ``cellar audit list`` and ``audit verify --remote``:
the requests they build and what they print."""

from __future__ import annotations

import json

import pytest

from cellar.cli import main as cli
from tests.unit.cli.support import API, AUTH_URL, FakeCloud

BASE = f"{API}/p-1"  # the token's project: the admin project when an admin logs in
QUOTAS = {
    "quotas": [
        {"resource": "instances", "in_use": 2, "reserved": 0, "limit": 10},
        {"resource": "volumes", "in_use": 3, "reserved": 0, "limit": 40},
    ]
}


def api_calls(cloud: FakeCloud) -> list[tuple[str, str, object]]:
    return [(s.method, s.url.removeprefix(BASE), s.params or s.body) for s in cloud.calls()]


def test_quota_show_of_a_named_project_goes_through_the_admin_project(
    cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.answers[("GET", f"{AUTH_URL}/projects")] = (200, {"projects": [{"id": "p-2"}]})
    cloud.answers[("GET", f"{BASE}/mgmt/quotas/p-2")] = (200, QUOTAS)
    assert cli.main(["quota", "show", "books"], http=cloud) == 0
    assert api_calls(cloud) == [("GET", "/mgmt/quotas/p-2", None)]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["RESOURCE", "IN_USE", "RESERVED", "LIMIT"]
    assert lines[1].split() == ["instances", "2", "0", "10"]


def test_quota_show_without_a_project_is_the_tokens(cloud: FakeCloud) -> None:
    cloud.answers[("GET", f"{BASE}/mgmt/quotas/p-1")] = (200, QUOTAS)
    assert cli.main(["quota", "show"], http=cloud) == 0
    assert api_calls(cloud) == [("GET", "/mgmt/quotas/p-1", None)]


def test_quota_set_sends_only_the_limits_given(cloud: FakeCloud) -> None:
    cloud.answers[("GET", f"{AUTH_URL}/projects")] = (200, {"projects": [{"id": "p-2"}]})
    answer = {"quotas": {"instances": 5, "ram": 4096}}
    cloud.answers[("PUT", f"{BASE}/mgmt/quotas/p-2")] = (200, answer)
    argv = ["quota", "set", "books", "--instances", "5", "--ram", "4096"]
    assert cli.main(argv, http=cloud) == 0
    assert api_calls(cloud) == [("PUT", "/mgmt/quotas/p-2", answer)]


def test_quota_set_with_nothing_to_set_is_a_usage_error(cloud: FakeCloud) -> None:
    cloud.answers[("GET", f"{AUTH_URL}/projects")] = (200, {"projects": [{"id": "p-2"}]})
    assert cli.main(["quota", "set", "books"], http=cloud) == 2
    assert api_calls(cloud) == []


def test_limits_shows_the_absolute_limits(
    cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    limits = {"limits": [{"verb": "ABSOLUTE", "max_instances": 10, "max_volumes": 40}]}
    cloud.answers[("GET", f"{BASE}/limits")] = (200, limits)
    assert cli.main(["limits"], http=cloud) == 0
    assert api_calls(cloud) == [("GET", "/limits", None)]
    assert capsys.readouterr().out.split() == ["max_instances", "10", "max_volumes", "40"]


def test_audit_list_passes_each_filter_as_its_query_parameter(
    cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    event = {"id": "e1", "created": "2030-01-01T00:00:00", "action": "instance.create"}
    cloud.answers[("GET", f"{BASE}/audit")] = (200, {"events": [event]})
    argv = (
        "-f json audit list --since 2030-01-01T00:00:00Z --until 2030-02-01T00:00:00Z "
        "--user bob --target i1 --action instance.create --limit 20 --marker e0"
    ).split()
    assert cli.main(argv, http=cloud) == 0
    assert api_calls(cloud) == [
        (
            "GET",
            "/audit",
            {
                "since": "2030-01-01T00:00:00Z",
                "until": "2030-02-01T00:00:00Z",
                "user": "bob",
                "target": "i1",
                "action": "instance.create",
                "limit": 20,
                "marker": "e0",
            },
        )
    ]
    assert json.loads(capsys.readouterr().out) == [event]


def test_audit_list_says_how_to_get_the_next_page(
    cloud: FakeCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    page = {
        "events": [{"id": "e9"}],
        "links": [{"rel": "next", "href": f"{BASE}/audit?limit=1&marker=e9"}],
    }
    cloud.answers[("GET", f"{BASE}/audit")] = (200, page)
    assert cli.main(["audit", "list", "--limit", "1"], http=cloud) == 0
    assert api_calls(cloud) == [("GET", "/audit", {"limit": 1})]
    assert "--marker e9" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"intact": True, "rows": 12, "checkpoints": 2, "findings": []}, 0),
        (
            {
                "intact": False,
                "rows": 5,
                "checkpoints": 1,
                "findings": [{"seq": 5, "id": "e5", "problem": "its content was changed"}],
            },
            1,
        ),
    ],
)
def test_audit_verify_remote_asks_the_api_and_exits_1_when_broken(
    cloud: FakeCloud, capsys: pytest.CaptureFixture[str], answer: dict[str, object], code: int
) -> None:
    cloud.answers[("GET", f"{BASE}/mgmt/audit/verify")] = (200, {"audit": answer})
    assert cli.main(["audit", "verify", "--remote"], http=cloud) == code
    assert api_calls(cloud) == [("GET", "/mgmt/audit/verify", None)]
    out = capsys.readouterr().out
    assert f"checked {answer['rows']} rows and {answer['checkpoints']} signed checkpoints" in out
    if code:
        assert "BROKEN" in out and "row 5 (e5): its content was changed" in out
