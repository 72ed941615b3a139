"""Builds Cellar's images, each only when its inputs changed.

Usage: python images/build.py [--force] [--only NAME] [--verbose]

No registry is needed. When ``debian:bookworm-slim`` cannot be pulled, the base
root filesystem is made here with ``debootstrap --variant=minbase`` and imported
as ``cellar/bookworm:latest``. The guest agent's Python dependencies come from a
wheelhouse built on this host at exactly the versions this interpreter runs, so
the generated protobuf code matches its runtime. Each image carries the hash of
its inputs (Dockerfile, files copied in, parent image id) in the label
``cellar.inputs``; an image whose label matches is kept as it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import requests
from docker.models.images import Image as DockerImage

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
WHEELHOUSE = IMAGES / ".wheelhouse"
INPUTS_LABEL = "cellar.inputs"
ROOTFS_TAG = "cellar/bookworm:latest"
PULLED_ROOTFS = "debian:bookworm-slim"
PULL_TIMEOUT = 30
BUILD_TIMEOUT = 1800
MIRROR = os.environ.get("CELLAR_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get(
    "CELLAR_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"
)
AGENT_REQUIREMENTS = (
    "grpcio",
    "grpcio-health-checking",
    "protobuf",
    "psycopg[binary]",
    "PyMySQL",
)
APP_PACKAGES = ("guestagent", "cellar")
APP_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "tests")
SLIM_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/groff/*",
    "/usr/share/info/*",
    "/usr/share/linda/*",
    "/usr/share/lintian/overrides/*",
    "/usr/share/locale/*",
    "/usr/share/man/*",
)
REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
LOG_TAIL = 30


class BuildError(Exception):
    """A build step failed; the message names the step and ends with its output."""


@dataclasses.dataclass(frozen=True)
class Image:
    """One image built from ``images/<name>/Dockerfile``."""

    name: str
    tag: str
    wheelhouse: bool = False
    app: bool = False

    @property
    def parent(self) -> str:
        dockerfile = (IMAGES / self.name / "Dockerfile").read_text()
        match = re.search(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
        if match is None:
            raise BuildError(f"images/{self.name}/Dockerfile has no FROM line")
        return match.group(1)


IMAGE_LIST = (
    Image("base", "cellar/base:latest", wheelhouse=True),
    Image("postgresql", "cellar/postgresql:15", app=True),
    Image("mariadb", "cellar/mariadb:10.11", app=True),
    Image("redis", "cellar/redis:7.0", app=True),
    Image("haproxy", "cellar/haproxy:2.6"),
)


def tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-LOG_TAIL:])


def run(argv: list[str], step: str, timeout: float = 900) -> None:
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", check=False, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{step}: no result after {timeout:.0f} s") from exc
    if result.returncode != 0:
        output = tail(result.stdout + result.stderr)
        raise BuildError(f"{step} failed (exit {result.returncode}):\n{output}")


def image_or_none(client: docker.DockerClient, tag: str) -> DockerImage | None:
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


# The base root filesystem


def ensure_rootfs(client: docker.DockerClient) -> None:
    """Make ``cellar/bookworm:latest`` when it is missing: pull it, or debootstrap it."""
    if image_or_none(client, ROOTFS_TAG) is not None:
        print(f"{ROOTFS_TAG} up to date")
        return
    started = time.monotonic()
    if pulled(PULLED_ROOTFS):
        client.images.get(PULLED_ROOTFS).tag(ROOTFS_TAG)
        print(f"{ROOTFS_TAG} tagged from the pulled {PULLED_ROOTFS}")
        return
    print(f"creating {ROOTFS_TAG} with debootstrap from {MIRROR}")
    ensure_debootstrap()
    with tempfile.TemporaryDirectory(prefix="cellar-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        try:
            run(
                ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), MIRROR],
                "debootstrap --variant=minbase bookworm",
            )
            slim(rootfs)
            import_rootfs(client, rootfs)
        finally:
            unmount_below(Path(tmp))
    print(f"{ROOTFS_TAG} created in {time.monotonic() - started:.1f} s")


def pulled(reference: str) -> bool:
    """Try one pull with a short deadline; no registry is a normal answer."""
    try:
        docker.from_env(timeout=PULL_TIMEOUT).images.pull(reference)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        print(f"{reference} cannot be pulled ({type(exc).__name__}); building the base here")
        return False
    return True


def ensure_debootstrap() -> None:
    if os.geteuid() != 0:
        raise BuildError(
            f"creating {ROOTFS_TAG} needs root (debootstrap): run `sudo {sys.executable} "
            f"images/build.py` once, or load a Debian bookworm image tagged {ROOTFS_TAG}"
        )
    if shutil.which("debootstrap") is not None:
        return
    print("installing debootstrap")
    run(["apt-get", "update", "-qq"], "apt-get update")
    run(["apt-get", "install", "-y", "-qq", "debootstrap"], "apt-get install debootstrap")


def slim(rootfs: Path) -> None:
    """Trim the fresh root filesystem the way Debian's slim images are trimmed."""
    (rootfs / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} bookworm main\n"
        f"deb {MIRROR} bookworm-updates main\n"
        f"deb {SECURITY_MIRROR} bookworm-security main\n"
    )
    (rootfs / "etc/apt/apt.conf.d/90cellar").write_text(
        'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'
        'Acquire::Languages "none";\n'
    )
    excludes = "".join(f"path-exclude {pattern}\n" for pattern in SLIM_EXCLUDES)
    (rootfs / "etc/dpkg/dpkg.cfg.d/90cellar-slim").write_text(
        excludes + "path-include /usr/share/doc/*/copyright\n"
    )
    for pattern in SLIM_EXCLUDES:
        for path in rootfs.glob(pattern.lstrip("/")):
            if path.is_dir() and not path.is_symlink():
                keep = path / "copyright"
                for child in path.iterdir():
                    if child != keep:
                        remove(child)
            else:
                remove(path)
    for folder in ("var/lib/apt/lists", "var/cache/apt", "var/log"):
        for child in (rootfs / folder).glob("**/*"):
            if child.is_file() or child.is_symlink():
                child.unlink()
    (rootfs / "etc/resolv.conf").write_text("")
    (rootfs / "etc/hostname").unlink(missing_ok=True)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def import_rootfs(client: docker.DockerClient, rootfs: Path) -> None:
    """Stream the folder as a tar into ``docker import``."""
    with tempfile.TemporaryFile() as errors:
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "--one-file-system", "-C", str(rootfs), "-cf", "-", "."],
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        assert tar.stdout is not None
        stdout = tar.stdout

        def chunks() -> Iterator[bytes]:
            while block := stdout.read(1 << 20):
                yield block

        repository, tag = ROOTFS_TAG.split(":")
        try:
            answer = client.api.import_image_from_stream(
                chunks(), repository=repository, tag=tag, changes=['CMD ["/bin/bash"]']
            )
        except (docker.errors.DockerException, requests.RequestException) as exc:
            tar.kill()
            raise BuildError(f"docker import of {ROOTFS_TAG} failed: {exc}") from exc
        finally:
            stdout.close()
            tar.wait()
        if tar.returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace")
            raise BuildError(f"tar of the debootstrap folder failed:\n{tail(message)}")
    if image_or_none(client, ROOTFS_TAG) is None:
        raise BuildError(f"docker import of {ROOTFS_TAG} failed:\n{tail(str(answer))}")


def unmount_below(folder: Path) -> None:
    """Undo mounts a failed debootstrap may leave behind, before the folder is deleted."""
    prefix = str(folder) + "/"
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mountpoint in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "--lazy", mountpoint], check=False)


# The wheelhouse


def pinned_requirements() -> tuple[str, str]:
    """The agent's requirements and their whole dependency tree, pinned to this interpreter.

    Returns the text of ``requirements.txt`` and of ``constraints.txt``.
    """
    pins: dict[str, str] = {}
    top: list[str] = []
    todo: list[tuple[str, set[str]]] = []
    for requirement in AGENT_REQUIREMENTS:
        name, extras = parse_requirement(requirement)
        version = installed_version(name)
        if version is None:
            raise BuildError(f"{name} is not installed in {sys.executable}; run `make venv`")
        top.append(f"{requirement}=={version}")
        todo.append((name, extras))
    while todo:
        name, extras = todo.pop()
        version = installed_version(name)
        if version is None or canonical(name) in pins:
            continue
        pins[canonical(name)] = version
        for line in importlib.metadata.requires(name) or []:
            spec, _, marker = line.partition(";")
            extra = EXTRA_MARKER.search(marker)
            if extra is None or extra.group(1) in extras:
                todo.append(parse_requirement(spec))
    constraints = [f"{name}=={version}" for name, version in sorted(pins.items())]
    return "\n".join(top) + "\n", "\n".join(constraints) + "\n"


def parse_requirement(text: str) -> tuple[str, set[str]]:
    match = REQUIREMENT.match(text)
    if match is None:
        raise BuildError(f"cannot read the requirement {text!r}")
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return match.group(1), extras


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def ensure_wheelhouse() -> None:
    """Build the wheels on this host, once per set of versions."""
    requirements, constraints = pinned_requirements()
    wanted = {"requirements.txt": requirements, "constraints.txt": constraints}
    if all(
        (WHEELHOUSE / name).is_file() and (WHEELHOUSE / name).read_text() == text
        for name, text in wanted.items()
    ):
        return
    print("building the wheelhouse for", ", ".join(requirements.split()), flush=True)
    started = time.monotonic()
    fresh = WHEELHOUSE.with_name(WHEELHOUSE.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    for name, text in wanted.items():
        (fresh / name).write_text(text)
    try:
        run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--prefer-binary",
             "--wheel-dir", str(fresh),
             "-r", str(fresh / "requirements.txt"), "-c", str(fresh / "constraints.txt")],
            "pip wheel of the agent's dependencies",
        )  # fmt: skip
    except BuildError:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    shutil.rmtree(WHEELHOUSE, ignore_errors=True)
    fresh.rename(WHEELHOUSE)
    print(f"wheelhouse built in {time.monotonic() - started:.1f} s")


# The images


def stage(image: Image, folder: Path) -> None:
    """Copy what the image's Dockerfile uses into ``folder``, its build context."""
    shutil.copytree(IMAGES / image.name, folder, dirs_exist_ok=True, ignore=APP_IGNORE)
    if image.wheelhouse:
        shutil.copytree(WHEELHOUSE, folder / "wheelhouse")
    if image.app:
        for package in APP_PACKAGES:
            shutil.copytree(REPO / package, folder / "app" / package, ignore=APP_IGNORE)


def inputs_hash(folder: Path, parent_id: str) -> str:
    """A digest of every file in the build context (path, mode, bytes) and the parent id."""
    digest = hashlib.sha256(parent_id.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(oct(path.stat().st_mode & 0o777).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build(client: docker.DockerClient, image: Image, force: bool, verbose: bool) -> None:
    parent = image_or_none(client, image.parent)
    if parent is None:
        raise BuildError(f"{image.tag} needs {image.parent}, which is missing")
    with tempfile.TemporaryDirectory(prefix=f"cellar-{image.name}-") as tmp:
        context = Path(tmp)
        stage(image, context)
        wanted = inputs_hash(context, str(parent.id))
        existing = image_or_none(client, image.tag)
        if not force and existing is not None and existing.labels.get(INPUTS_LABEL) == wanted:
            print(f"{image.tag} up to date")
            return
        print(f"building {image.tag}", flush=True)
        started = time.monotonic()
        docker_build(client, context, image.tag, wanted, force, verbose)
    print(f"{image.tag} built in {time.monotonic() - started:.1f} s")
    if existing is not None:
        remove_replaced(client, existing)


def remove_replaced(client: docker.DockerClient, old: DockerImage) -> None:
    """Delete the image a build replaced, unless a container or another image still uses it."""
    try:
        client.images.remove(old.id)
    except docker.errors.APIError:
        return


def docker_build(
    client: docker.DockerClient, context: Path, tag: str, inputs: str, force: bool, verbose: bool
) -> None:
    log: list[str] = []
    try:
        for chunk in client.api.build(
            path=str(context),
            tag=tag,
            labels={INPUTS_LABEL: inputs},
            rm=True,
            forcerm=True,
            nocache=force,
            pull=False,
            decode=True,
        ):
            text = chunk.get("stream", "")
            if text:
                log.append(text)
                if verbose:
                    print(text, end="", flush=True)
            if "error" in chunk:
                step = last_step(log)
                raise BuildError(
                    f"docker build of {tag} failed at {step}:\n"
                    f"{tail(''.join(log))}\n{chunk['error'].strip()}"
                )
    except docker.errors.DockerException as exc:
        raise BuildError(f"docker build of {tag} failed: {exc}\n{tail(''.join(log))}") from exc


def last_step(log: list[str]) -> str:
    steps = [line.strip() for line in log if line.startswith("Step ")]
    return f'"{steps[-1]}"' if steps else "its start"


def selected(only: str | None) -> list[Image]:
    """The images to build, in order: all, or ``only`` and the images it is built on."""
    if only is None:
        return list(IMAGE_LIST)
    by_tag = {image.tag: image for image in IMAGE_LIST}
    chain = [next(image for image in IMAGE_LIST if image.name == only)]
    while chain[0].parent in by_tag:
        chain.insert(0, by_tag[chain[0].parent])
    return chain


def connect() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=BUILD_TIMEOUT)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise BuildError(f"no Docker engine answers ({exc}); run `make docker`") from exc
    return client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build Cellar's images when their inputs change.")
    parser.add_argument("--force", action="store_true", help="rebuild without the layer cache")
    parser.add_argument("--only", choices=[image.name for image in IMAGE_LIST])
    parser.add_argument("--verbose", action="store_true", help="print the docker build output")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        client = connect()
        ensure_rootfs(client)
        ensure_wheelhouse()
        for image in selected(args.only):
            force = args.force and args.only in (None, image.name)
            build(client, image, force, args.verbose)
    except BuildError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    print(f"images ready in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
