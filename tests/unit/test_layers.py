"""The layers point one way: api -> cellar <- taskmanager, and the task row links them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cellar.workflows import WorkflowName
from taskmanager.workflows import WORKFLOWS

REPO = Path(__file__).resolve().parents[2]
MAY_NOT_IMPORT = {
    "api": {"taskmanager", "guestagent", "docker"},
    "cellar": {"api", "taskmanager", "guestagent", "docker"},
    "taskmanager": {"api", "guestagent"},
}


def imported(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(MAY_NOT_IMPORT))
def test_no_module_imports_across_its_layer(package: str) -> None:
    crossing = {
        f"{path.relative_to(REPO)}: {name}"
        for path in (REPO / package).rglob("*.py")
        for name in imported(path)
        if name.split(".")[0] in MAY_NOT_IMPORT[package]
    }
    assert crossing == set()


def test_the_api_process_loads_no_task_manager_and_no_docker(tmp_path: Path) -> None:
    probe = (
        "import json, sys; from api.app import create_app; create_app(); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"CELLAR_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    loaded = {name.split(".")[0] for name in json.loads(result.stdout)}
    assert loaded & {"taskmanager", "docker", "guestagent"} == set()


def test_every_workflow_name_has_its_workflow_and_no_other() -> None:
    assert set(WORKFLOWS) == set(WorkflowName)
    for name, workflow in WORKFLOWS.items():
        assert workflow.name == name
        assert len({step.label for step in workflow.steps}) == len(workflow.steps)


def test_a_misspelt_workflow_name_fails_at_once() -> None:
    with pytest.raises(ValueError, match="provison"):
        WorkflowName("provison")
