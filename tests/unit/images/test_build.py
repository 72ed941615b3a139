"""The image build's pure parts: pins, build contexts, input hashes, the skip decision."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from images import build


class FakeImage:
    def __init__(self, image_id: str, labels: dict[str, str]) -> None:
        self.id = image_id
        self.labels = labels


class FakeApi:
    def __init__(self) -> None:
        self.builds: list[dict[str, Any]] = []

    def build(self, **kwargs: Any) -> Iterator[dict[str, str]]:
        self.builds.append(kwargs)
        yield {"stream": "Step 1/1 : FROM cellar/base:latest\n"}


class FakeImages:
    def __init__(self, images: dict[str, FakeImage]) -> None:
        self.images = images

        self.removed: list[str] = []

    def get(self, tag: str) -> FakeImage:
        if tag not in self.images:
            raise docker.errors.ImageNotFound(tag)
        return self.images[tag]

    def remove(self, image_id: str) -> None:
        self.removed.append(image_id)


class FakeClient:
    def __init__(self, images: dict[str, FakeImage]) -> None:
        self.images = FakeImages(images)
        self.api = FakeApi()


POSTGRESQL = next(image for image in build.IMAGE_LIST if image.name == "postgresql")


def staged_hash(tmp_path: Path, parent_id: str) -> str:
    folder = tmp_path / parent_id
    build.stage(POSTGRESQL, folder)
    return build.inputs_hash(folder, parent_id)


def test_requirements_are_pinned_to_this_interpreter_with_their_dependencies() -> None:
    requirements, constraints = build.pinned_requirements()
    psycopg = importlib.metadata.version("psycopg")
    assert f"psycopg[binary]=={psycopg}" in requirements.split()
    pins = dict(line.split("==") for line in constraints.split())
    assert pins["grpcio"] == importlib.metadata.version("grpcio")
    assert pins["psycopg-binary"] == importlib.metadata.version("psycopg-binary")
    assert "typing-extensions" in pins
    assert "grpcio-tools" not in pins
    assert "psycopg-pool" not in pins


def test_parents_come_from_the_dockerfiles() -> None:
    parents = {image.name: image.parent for image in build.IMAGE_LIST}
    engines = {name: "cellar/base:latest" for name in ("postgresql", "mariadb", "redis")}
    assert parents == {"base": build.ROOTFS_TAG, **engines, "haproxy": build.ROOTFS_TAG}


def test_only_builds_the_image_and_what_it_is_built_on() -> None:
    assert [image.name for image in build.selected("postgresql")] == ["base", "postgresql"]
    assert [image.name for image in build.selected("base")] == ["base"]
    assert [image.name for image in build.selected("haproxy")] == ["haproxy"]


def test_the_haproxy_context_holds_its_config_and_no_agent(tmp_path: Path) -> None:
    haproxy = next(image for image in build.IMAGE_LIST if image.name == "haproxy")
    build.stage(haproxy, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dockerfile", "haproxy.cfg"]


def test_engine_context_holds_the_agent_code_without_caches(tmp_path: Path) -> None:
    build.stage(POSTGRESQL, tmp_path)
    assert (tmp_path / "Dockerfile").is_file()
    assert (tmp_path / "cellar-raw-postgresql").stat().st_mode & 0o111
    assert (tmp_path / "app/cellar/__init__.py").is_file()
    assert (tmp_path / "app/guestagent").is_dir()
    assert not list(tmp_path.rglob("__pycache__"))


def test_inputs_hash_follows_the_files_and_the_parent(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    build.stage(POSTGRESQL, first)
    build.stage(POSTGRESQL, second)
    wanted = build.inputs_hash(first, "sha256:one")
    assert build.inputs_hash(second, "sha256:one") == wanted
    assert build.inputs_hash(second, "sha256:two") != wanted
    (second / "Dockerfile").write_text("FROM cellar/base:latest\n")
    assert build.inputs_hash(second, "sha256:one") != wanted


def test_an_image_whose_label_matches_is_not_rebuilt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wanted = staged_hash(tmp_path, "sha256:base")
    client = FakeClient(
        {
            "cellar/base:latest": FakeImage("sha256:base", {}),
            "cellar/postgresql:15": FakeImage("sha256:pg", {build.INPUTS_LABEL: wanted}),
        }
    )
    build.build(client, POSTGRESQL, force=False, verbose=False)
    assert client.api.builds == []
    assert "cellar/postgresql:15 up to date" in capsys.readouterr().out


def test_a_changed_parent_or_force_rebuilds_with_the_new_label(tmp_path: Path) -> None:
    old = staged_hash(tmp_path, "sha256:old-base")
    client = FakeClient(
        {
            "cellar/base:latest": FakeImage("sha256:new-base", {}),
            "cellar/postgresql:15": FakeImage("sha256:pg", {build.INPUTS_LABEL: old}),
        }
    )
    build.build(client, POSTGRESQL, force=False, verbose=False)
    build.build(client, POSTGRESQL, force=True, verbose=False)
    first, forced = client.api.builds
    assert first["labels"][build.INPUTS_LABEL] != old
    assert first["nocache"] is False and forced["nocache"] is True
    assert client.images.removed == ["sha256:pg", "sha256:pg"]


def test_a_missing_parent_is_a_clear_error() -> None:
    with pytest.raises(build.BuildError, match="needs cellar/base:latest"):
        build.build(FakeClient({}), POSTGRESQL, force=False, verbose=False)


def test_slim_keeps_copyrights_and_drops_docs_and_apt_lists(tmp_path: Path) -> None:
    for path in (
        "usr/share/doc/bash/copyright",
        "usr/share/doc/bash/README",
        "usr/share/man/man1/ls.1.gz",
        "var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease",
        "etc/resolv.conf",
        "etc/hostname",
    ):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    for folder in ("etc/apt/apt.conf.d", "etc/dpkg/dpkg.cfg.d"):
        (tmp_path / folder).mkdir(parents=True)
    build.slim(tmp_path)
    assert (tmp_path / "usr/share/doc/bash/copyright").exists()
    assert not (tmp_path / "usr/share/doc/bash/README").exists()
    assert not list((tmp_path / "usr/share/man").rglob("*.gz"))
    assert not list((tmp_path / "var/lib/apt/lists").iterdir())
    assert (tmp_path / "etc/resolv.conf").read_text() == ""
    assert not (tmp_path / "etc/hostname").exists()
    assert "bookworm-security" in (tmp_path / "etc/apt/sources.list").read_text()
