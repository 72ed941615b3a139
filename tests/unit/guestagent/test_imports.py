"""The agent ships in the instance images with grpcio, protobuf, psycopg and PyMySQL only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ALLOWED_CELLAR = {
    "cellar",
    "cellar.agent_tls",
    "cellar.catalog",
    "cellar.errors",
    "cellar.guestagent",
    "cellar.guestagent.v1",
    "cellar.guestagent.v1.agent_pb2",
    "cellar.guestagent.v1.agent_pb2_grpc",
    "cellar.logs",
    "cellar.names",
    "cellar.parameters",
}
FORBIDDEN = {
    "flask", "sqlalchemy", "celery", "docker", "requests", "alembic", "api", "taskmanager", "redis",
}  # fmt: skip


def test_agent_imports_only_what_the_image_holds() -> None:
    probe = (
        "import json, sys; import guestagent.__main__, guestagent.healthcheck; "
        "from guestagent.engines import ENGINES, engine_class; "
        "[engine_class(name) for name in ENGINES]; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    modules = set(json.loads(result.stdout))

    assert {m for m in modules if m.split(".")[0] in FORBIDDEN} == set()
    assert {m for m in modules if m.split(".")[0] == "cellar"} <= ALLOWED_CELLAR
