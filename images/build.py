"""Builds Cellar's images, each only when its inputs changed.

Usage: python images/build.py [--force] [--only NAME]

No registry is needed: when the Debian base cannot be pulled, it is made here
with ``debootstrap --variant=minbase`` and ``docker import``. The guest agent's
Python dependencies come from a wheelhouse built on this host, at exactly the
versions installed in this interpreter. Each image carries the hash of its
inputs in the label ``cellar.inputs``; an image whose label matches is kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
WHEELHOUSE = IMAGES / ".wheelhouse"
ROOTFS_TAG = "cellar/bookworm:latest"
MIRROR = os.environ.get("CELLAR_DEBIAN_MIRROR", "http://deb.debian.org/debian")
AGENT_REQUIREMENTS = ("grpcio", "grpcio-health-checking", "protobuf", "psycopg", "psycopg-binary")
APP_PACKAGES = ("guestagent", "cellar")
APP_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "migrations", "cli")


class BuildError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Image:
    name: str
    tag: str
    parent: str
    wheelhouse: bool = False
    app: bool = False


IMAGE_LIST = (
    Image("base", "cellar/base:latest", ROOTFS_TAG, wheelhouse=True),
    Image("postgresql", "cellar/postgresql:15", "cellar/base:latest", app=True),
)


def run(argv: list[str], what: str, **kwargs: object) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise BuildError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return str(result.stdout)


def image_id(tag: str) -> str | None:
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else None


def image_label(tag: str) -> str | None:
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", '{{index .Config.Labels "cellar.inputs"}}', tag],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_rootfs() -> None:
    """Make the Debian bookworm base image locally when it is missing."""
    if image_id(ROOTFS_TAG):
        print(f"{ROOTFS_TAG} present")
        return
    if shutil.which("debootstrap") is None:
        if os.geteuid() != 0:
            raise BuildError("debootstrap is missing: run `apt-get install -y debootstrap` as root")
        print("installing debootstrap")
        run(["apt-get", "update", "-qq"], "apt-get update")
        run(["apt-get", "install", "-y", "-qq", "debootstrap"], "installing debootstrap")
    started = time.monotonic()
    print(f"creating {ROOTFS_TAG} with debootstrap from {MIRROR}")
    with tempfile.TemporaryDirectory(prefix="cellar-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), MIRROR],
            "debootstrap",
        )
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(["docker", "import", "-", ROOTFS_TAG], "docker import", stdin=tar.stdout)
        if tar.wait() != 0:
            raise BuildError("tar of the debootstrap folder failed")
    print(f"{ROOTFS_TAG} created in {time.monotonic() - started:.1f} s")


def requirements() -> str:
    pins = []
    for name in AGENT_REQUIREMENTS:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError as exc:
            raise BuildError(f"{name} is not installed here; run `make venv` first") from exc
    return "\n".join(pins) + "\n"


def ensure_wheelhouse() -> None:
    """Download the agent's wheels (with their dependencies) once per version set."""
    wanted = requirements()
    stamp = WHEELHOUSE / "requirements.txt"
    if stamp.exists() and stamp.read_text() == wanted:
        return
    print("building the wheelhouse for", ", ".join(wanted.split()))
    shutil.rmtree(WHEELHOUSE, ignore_errors=True)
    WHEELHOUSE.mkdir(parents=True)
    (WHEELHOUSE / "wanted.txt").write_text(wanted)
    run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
         "--dest", str(WHEELHOUSE), "-r", str(WHEELHOUSE / "wanted.txt")],
        "pip download of the agent's wheels",
    )  # fmt: skip
    (WHEELHOUSE / "wanted.txt").unlink()
    stamp.write_text(wanted)


def stage(image: Image, folder: Path) -> None:
    """Copy what the image's Dockerfile uses into ``folder``, the build context."""
    shutil.copytree(IMAGES / image.name, folder, dirs_exist_ok=True)
    if image.wheelhouse:
        shutil.copytree(WHEELHOUSE, folder / "wheelhouse")
    if image.app:
        for package in APP_PACKAGES:
            shutil.copytree(REPO / package, folder / "app" / package, ignore=APP_IGNORE)


def inputs_hash(folder: Path, parent_id: str) -> str:
    digest = hashlib.sha256(parent_id.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
        digest.update(str(path.stat().st_mode & 0o111).encode())
    return digest.hexdigest()[:32]


def build(image: Image, force: bool) -> None:
    parent_id = image_id(image.parent)
    if parent_id is None:
        raise BuildError(f"{image.tag} needs {image.parent}, which is missing")
    with tempfile.TemporaryDirectory(prefix=f"cellar-{image.name}-") as tmp:
        context = Path(tmp)
        stage(image, context)
        wanted = inputs_hash(context, parent_id)
        if not force and image_label(image.tag) == wanted:
            print(f"{image.tag} up to date")
            return
        print(f"building {image.tag}")
        started = time.monotonic()
        run(
            ["docker", "build", "--label", f"cellar.inputs={wanted}", "--tag", image.tag,
             str(context)],
            f"docker build of {image.tag}",
        )  # fmt: skip
        print(f"{image.tag} built in {time.monotonic() - started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build Cellar's images when their inputs change.")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    parser.add_argument("--only", choices=[i.name for i in IMAGE_LIST])
    args = parser.parse_args(argv)
    try:
        ensure_rootfs()
        ensure_wheelhouse()
        for image in IMAGE_LIST:
            if args.only in (None, image.name) or (args.only and image.name == "base"):
                build(image, args.force and args.only in (None, image.name))
    except BuildError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
