"""Build the IOC images: find or make a base, fetch wheels, `docker build` with no network, tag by content.

What the images and programs are called and how they run (tags, the IOC UID, hardening, argv) is
`catalog`, which needs no engine. Builds need no container registry: the base is python:3.11-slim when it is present or can be pulled,
otherwise a Debian bookworm made here with mmdebstrap; Python packages come from a wheelhouse the
host prepares, and `docker build` itself runs with no network. See docs/images.md and
docs/air-gapped.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from orchestrator.errors import BackendUnavailable, UsageError
from orchestrator.images import ImageBuildError
from orchestrator.images import context
from orchestrator.images import debian
from orchestrator.images import inputs
from orchestrator.images import wheelhouse
from orchestrator.plan.identity import LABEL_FLEET
from orchestrator.images.catalog import (IOC_UID, RUNTIMES, check_runtime, container_hardening, image_tag,
                                         ioc_images_root, program_argv, program_path)

__all__ = ["IOC_UID", "RUNTIMES", "DEFAULT_BASE", "BuiltImage", "BuildEvent", "ImageBuildError",
           "ioc_images_root", "program_path", "program_argv", "image_tag", "container_hardening",
           "build_images"]

DEFAULT_BASE = "python:3.11-slim"
LABEL_PREFIX = "org.iocfleet.image"
BASE_PYTHON = (3, 11)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

Progress = Callable[["BuildEvent"], None]


@dataclass(frozen=True)
class BuildEvent:
    """One step of a build, for progress display: runtime ('' for shared steps), step and message."""

    runtime: str
    step: str
    message: str

    def __str__(self) -> str:
        who = f"{self.runtime}: " if self.runtime else ""
        return f"{who}{self.step}: {self.message}"


@dataclass(frozen=True)
class BuiltImage:
    """An IOC image ready to run: `tag` is what plans use, `content_tag` its exact inputs."""

    runtime: str
    tag: str
    content_tag: str
    image_id: str
    base: str
    base_id: str
    cached: bool
    size_bytes: int
    seconds: float
    wheels: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["wheels"] = list(self.wheels)
        return data


def default_cache_dir(environ: dict | None = None) -> Path:
    from orchestrator.paths import xdg_dir

    return xdg_dir("XDG_CACHE_HOME", (".cache",), environ) / "iocfleet"


def build_images(runtimes: Sequence[str] = RUNTIMES, base_image: str | None = None,
                 offline: bool = False, progress: Progress | None = None, *,
                 cache_dir: Path | None = None, wheelhouse_dir: Path | None = None,
                 mirror: str | None = None, force: bool = False, client=None) -> list[BuiltImage]:
    """Build (or find already built) the IOC image of each runtime; return them in order.

    `base_image`: a local or pullable image with python3.11 (default python:3.11-slim, falling back
    to a Debian base made with mmdebstrap). `offline`: never contact a container registry or a
    package index; wheels must already be in the wheelhouse. `force`: rebuild without any cache (the
    bootstrapped base included), as on a fresh host. Raises ImageBuildError naming the step.
    """
    for runtime in runtimes:
        check_runtime(runtime)
    report = progress or (lambda event: None)
    root = ioc_images_root()
    cache = cache_dir or default_cache_dir()
    wheels_dir = wheelhouse_dir or cache / "wheels"
    client = client or _docker_client()
    with _build_lock(default_cache_dir(), report):
        base_ref, base_id = _resolve_base(client, base_image, offline, mirror, cache, report, force)
        return [_build_one(client, root, runtime, base_ref, base_id, offline, wheels_dir, report, force)
                for runtime in runtimes]


@contextlib.contextmanager
def _build_lock(cache: Path, report: Progress):
    """One build at a time per user (whatever cache_dir a build uses): parallel test workers or CLI
    runs wait for the first one and then find its images up to date instead of building them twice."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report(BuildEvent("", "wait", f"another build holds {cache / 'build.lock'}; waiting"))
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _docker_client():
    import docker
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:  # the SDK raises several unrelated types for "no engine"
        raise BackendUnavailable(f"Docker Engine not reachable: {exc}",
                                 fix="start dockerd, or check DOCKER_HOST and your access to its socket") from None
    return client


def _local_image(client, ref: str):
    import docker.errors
    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _resolve_base(client, base_image, offline, mirror, cache, report, force=False) -> tuple[str, str]:
    """The base image to build on, as (reference, id): local first, then pull, then bootstrap."""
    import docker.errors
    wanted = base_image or DEFAULT_BASE
    candidates = [wanted] if base_image else [DEFAULT_BASE, debian.base_tag()]
    if force and not base_image:
        candidates = []
    for ref in candidates:
        image = _local_image(client, ref)
        if image is not None:
            report(BuildEvent("", "base", f"using local {ref}"))
            return ref, image.id
    if not offline:
        report(BuildEvent("", "base", f"pulling {wanted}"))
        try:
            image = client.images.pull(wanted)
            return wanted, image.id
        except docker.errors.APIError as exc:
            if base_image:
                raise ImageBuildError(f"base step: cannot pull {base_image}: {exc.explanation or exc}",
                                      fix="load it with `docker load`, or omit --base-image to "
                                          "bootstrap a Debian base with mmdebstrap") from None
            report(BuildEvent("", "base", f"pull failed ({exc.explanation or exc}); bootstrapping Debian"))
    elif base_image:
        raise ImageBuildError(f"base step: {base_image} is not present locally and --offline forbids pulling",
                              fix="`docker load` it first, or omit --base-image")
    return _bootstrap_base(client, mirror, cache, report)


def _bootstrap_base(client, mirror, cache, report) -> tuple[str, str]:
    tag = debian.base_tag()
    mirrors = [f"deb {mirror} {debian.SUITE} main"] if mirror else debian.mirror_lines(debian.read_host_sources())
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="iocfleet-base-", dir=cache) as scratch:
        tarball = Path(scratch) / "rootfs.tar"
        debian.bootstrap(tarball, mirrors, debian.host_apt_options(),
                         log=lambda line: report(BuildEvent("", "base", line)))
        report(BuildEvent("", "base", f"importing {tarball.stat().st_size // 2**20} MiB as {tag}"))
        repository, _, version = tag.partition(":")
        try:
            with open(tarball, "rb") as data:
                client.api.import_image_from_data(data, repository=repository, tag=version,
                                                  changes=list(debian.IMAGE_CHANGES))
        except Exception as exc:
            raise ImageBuildError(f"base step: docker import of the bootstrapped root filesystem failed: {exc}",
                                  fix="check free space in the Docker root dir (docker info)") from None
    return tag, client.images.get(tag).id


def _build_one(client, root, runtime, base_ref, base_id, offline, wheels_dir, report, force=False) -> BuiltImage:
    started = time.monotonic()
    alias = inputs.source_tag(root, runtime)
    content = inputs.content_tag(root, runtime, base_id)
    image = None if force else _local_image(client, content)
    if image is not None:
        current = _local_image(client, alias)
        if current is None or current.id != image.id:
            image.tag(*alias.split(":"))
        report(BuildEvent(runtime, "cached", f"{content} is up to date"))
        return _built(runtime, alias, content, image, base_ref, base_id, True, started)

    _check_base_python(client, base_ref)
    pins = inputs.requirements(root / "common" / "installer.txt") + inputs.requirements(root / runtime / "requirements.txt")
    wheels = wheelhouse.ensure_wheels(wheels_dir, pins, offline,
                                      log=lambda line: report(BuildEvent(runtime, "wheels", line)))
    from orchestrator import __version__
    from orchestrator.images.labels import image_labels

    labels = image_labels(runtime, alias.split(":")[1], base_ref, base_id, [w.name for w in wheels], __version__)
    with tempfile.TemporaryDirectory(prefix=f"iocfleet-{runtime}-") as scratch:
        ctx = context.assemble(Path(scratch) / "context", root, runtime, wheels)
        report(BuildEvent(runtime, "build", f"docker build {content} FROM {base_ref} (no network)"))
        _docker_build(client, ctx, content, base_ref, labels, runtime, report, nocache=force)
    image = client.images.get(content)
    image.tag(*alias.split(":"))
    _prune_install_stages(client)
    _untag_superseded(client, alias, content)
    report(BuildEvent(runtime, "done", f"{alias} ({image.attrs.get('Size', 0) // 2**20} MiB)"))
    return _built(runtime, alias, content, image, base_ref, base_id, False, started,
                  tuple(w.name for w in wheels))


def _docker_build(client, ctx, tag, base_ref, labels, runtime, report, nocache=False) -> None:
    last: list[str] = []
    try:
        stream = client.api.build(path=str(ctx), tag=tag, buildargs={"BASE_IMAGE": base_ref,
                                  "IOC_UID": str(IOC_UID)}, labels=labels, network_mode="none",
                                  rm=True, forcerm=True, pull=False, nocache=nocache, decode=True)
        for chunk in stream:
            if "error" in chunk:
                raise ImageBuildError(f"build step ({runtime}): {_ANSI.sub('', chunk['error']).strip()}",
                                      where="last output: " + " | ".join(last[-3:]),
                                      fix="a missing module means ioc_images/<runtime>/requirements.txt "
                                          "lacks a pin; a base without python3.11 needs another --base-image")
            line = _ANSI.sub("", chunk.get("stream") or "").strip()
            if line:
                last.append(line)
                if line.startswith("Step "):
                    report(BuildEvent(runtime, "build", line))
    except ImageBuildError:
        raise
    except Exception as exc:
        raise ImageBuildError(f"build step ({runtime}): {exc}", fix="check `docker info` and free space") from None


def _prune_install_stages(client) -> None:
    """Remove untagged images of ours: install stages (wheels and pip), and final images whose tag
    a newer build took over. Docker keeps any that a container still uses."""
    for label in (f"{LABEL_PREFIX}.stage=install", f"{LABEL_PREFIX}.runtime"):
        try:
            client.images.prune(filters={"dangling": True, "label": label})
        except Exception:
            pass  # leftovers cost disk space, not correctness; `docker image prune` clears them too


def _untag_superseded(client, alias: str, content: str) -> None:
    """Drop the tags of this source built on an older base; images still in use are kept by Docker."""
    for image in client.images.list(name=alias.split(":")[0]):
        for tag in image.tags:
            if tag.startswith(f"{alias}-") and tag != content:
                try:
                    client.images.remove(tag, noprune=False)
                except Exception:
                    pass  # in use by a container, or already gone


def _check_base_python(client, base_ref: str) -> None:
    """Refuse a base whose python3 is not 3.11 before the build fails on every wheel."""
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    try:
        out = client.containers.run(base_ref, ["python3", "-c", probe], remove=True, network_mode="none",
                                    entrypoint=[], labels={LABEL_FLEET: "image-build"})
    except Exception as exc:
        raise ImageBuildError(f"base step: {base_ref} has no usable python3 ({exc})",
                              fix="pass a --base-image with python 3.11, or omit it") from None
    version = out.decode().strip()
    if version != "%d.%d" % BASE_PYTHON:
        raise ImageBuildError(f"base step: {base_ref} has Python {version}; the wheelhouse is for 3.11",
                              fix="use a python:3.11 base, or omit --base-image")


def _built(runtime, alias, content, image, base_ref, base_id, cached, started, wheels=()) -> BuiltImage:
    if not wheels:
        wheels = tuple((image.labels or {}).get(f"{LABEL_PREFIX}.wheels", "").split())
    return BuiltImage(runtime=runtime, tag=alias, content_tag=content, image_id=image.id, base=base_ref,
                      base_id=base_id, cached=cached, size_bytes=int(image.attrs.get("Size", 0)),
                      seconds=round(time.monotonic() - started, 3), wheels=wheels)
