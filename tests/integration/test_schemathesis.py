"""Schemathesis against a live Cellar: every operation of /v1.0/openapi.json, with bodies
and parameters made from the document, must never answer 500 or more, and every answer
must fit what the document says of it.

It calls as a member of a project of its own whose quotas are 0, so that no instance or
backup is made for real: what the fuzzer sends goes through every check of the API but
never reaches Docker. The run is bounded (examples per operation and a time budget), and
made in the embedded profile only, where the document also holds the identity API.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.integration.stack import Api, Stack

REPORTS = Path(__file__).resolve().parents[2] / "build" / "schemathesis"
BUDGET_SECONDS = 150
CONFIG = """\
headers = {{ "X-Auth-Token" = "{token}" }}
request-timeout = 30.0

[parameters]
"path.project_id" = "{project}"
"""


@pytest.mark.skipif(os.environ.get("CELLAR_TEST_PROFILE") == "production", reason="embedded only")
def test_no_operation_answers_a_server_error_or_breaks_the_document(
    api: Api, stack: Stack, tmp_path: Path
) -> None:
    assert stack.identity is not None
    admin = stack.identity.admin
    none = {"quotas": {"instances": 0, "volumes": 0, "backups": 0, "ram": 0}}
    reply = requests.put(
        f"{stack.url}/v1.0/{admin.project_id}/mgmt/quotas/{api.project}",
        json=none, headers={"X-Auth-Token": admin.token}, timeout=30,
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    token = str(api.session.headers["X-Auth-Token"])
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(token=token, project=api.project))
    REPORTS.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "st"), "--config-file", str(config), "run",
        f"{stack.url}/v1.0/openapi.json", "--url", stack.url,
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--max-examples", "15", "--max-time", str(BUDGET_SECONDS), "--workers", "1",
        "--suppress-health-check", "filter_too_much,too_slow",
        "--seed", "20261204", "--generation-database", "none", "--no-color",
        "--report", "junit", "--report-dir", str(REPORTS),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=BUDGET_SECONDS + 180,
        check=False,
        cwd=tmp_path,  # where Schemathesis keeps its own files
    )
    shown = (done.stdout + done.stderr)[-12000:]
    (REPORTS / "output.txt").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, shown
