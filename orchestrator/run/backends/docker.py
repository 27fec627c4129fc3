"""The Docker backend: one container per IOC with host networking, found again by its labels.

The only module that imports the docker SDK (besides image builds). Translating an IOC into
`containers.run` keyword arguments is the pure function `run_kwargs`, which only ever emits keys from
an allow-list: the fleet file cannot inject other Docker options.
"""

from __future__ import annotations

import os

import functools
from typing import Iterator

from orchestrator import host
from orchestrator.errors import IocfleetError, BackendUnavailable
from orchestrator.images.catalog import container_hardening, image_tag
from orchestrator.plan import identity
from orchestrator.plan.identity import (IOC_UID, IOC_USER, LABEL_FLEET, LABEL_IOC, LABEL_MEMBERS, LABEL_PLAN, LABEL_ROLE, LABEL_RUNTIME,
                                        container_name)
from orchestrator.plan.model import PlannedIOC
from orchestrator.run.instance import Instance, Member, expand_pack

ALLOWED_RUN_KEYS = frozenset({
    "image", "command", "name", "environment", "labels", "network_mode", "detach", "user", "read_only",
    "tmpfs", "cap_drop", "security_opt", "restart_policy", "mem_limit", "pids_limit", "init", "stop_signal",
    "entrypoint", "working_dir", "mounts", "stdin_open", "healthcheck", "tty",
})
DB_TARGET = "/iocfleet/db"  # database folders, one per `db` entry, read-only
GROUP_TARGET = "/iocfleet/user"  # the PVGroup's python_path, read-only
DESCRIPTION_TARGET = "/run/iocfleet-ioc.json"  # where a large IOC description is bind-mounted (read-only)
ON_FAILURE_RETRIES = 5


def engine_error(timeout: float = 3.0) -> str | None:
    """None when a Docker Engine answers a ping, else a one-line reason."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine" here
        return str(exc).splitlines()[0][:200] or type(exc).__name__


def image_ref(ioc: PlannedIOC) -> str:
    """The image an IOC runs: ours (tagged by content) for caproto/softioc, the user's for `image`."""
    return identity.image_ref(ioc, image_tag)


def run_kwargs(fleet: str, ioc: PlannedIOC, plan_hash: str) -> dict:
    """`containers.run` arguments for one IOC: host network, the plan's env, labels, hardening, limits."""
    kwargs = {
        "image": image_ref(ioc),
        "name": container_name(fleet, ioc.name),
        "environment": ioc.env_dict(),
        "labels": identity.ioc_labels(fleet, ioc, plan_hash),
        "network_mode": "host",
        "detach": True,
        "init": True,
        "restart_policy": restart_policy(ioc.restart),
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
    }
    # every IOC, `image` ones included: non-root, read-only root with a /tmp tmpfs, no capabilities
    kwargs.update(container_hardening(ioc.runtime if ioc.runtime != "image" else "caproto"))
    if not ioc.read_only:
        kwargs.pop("read_only", None)
        kwargs.pop("tmpfs", None)
    kwargs["user"] = ioc.user or IOC_USER
    if ioc.command:
        kwargs["command"] = list(ioc.command)
    if ioc.limits.memory:
        kwargs["mem_limit"] = ioc.limits.memory
    if ioc.limits.pids:
        kwargs["pids_limit"] = ioc.limits.pids
    kwargs.update(real_kwargs(ioc))
    check = healthcheck(ioc)
    if check:
        kwargs["healthcheck"] = check
    if ioc.runtime == "softioc":
        # the IOC shell console (`iocfleet attach`/`exec`, `docker attach`): a TTY and an open stdin
        kwargs["tty"] = True
        kwargs["stdin_open"] = True
    unknown = set(kwargs) - ALLOWED_RUN_KEYS
    if unknown:  # a programming error, never user input: user input only fills values
        raise AssertionError(f"run_kwargs produced keys outside the allow-list: {sorted(unknown)}")
    return kwargs


def real_kwargs(ioc: PlannedIOC) -> dict:
    """The real-IOC part of `containers.run`: entrypoint, workdir, stdin, and bind mounts (the fleet
    file's, each database's folder and the PVGroup's python_path) with IOCFLEET_DB/GROUP rewritten to
    the paths inside the container."""
    import json
    from pathlib import Path

    from docker.types import Mount

    out: dict = {}
    if ioc.entrypoint:
        out["entrypoint"] = list(ioc.entrypoint)
    if ioc.workdir:
        out["working_dir"] = ioc.workdir
    if ioc.stdin_open:
        out["stdin_open"] = True
    mounts = [Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in ioc.mounts]
    env = ioc.env_dict()
    if ioc.db:
        loads = json.loads(env["IOCFLEET_DB"])
        for index, load in enumerate(loads):
            folder = f"{DB_TARGET}/{index}"
            mounts.append(Mount(folder, str(Path(load["file"]).parent), type="bind", read_only=True))
            load["file"] = f"{folder}/{Path(load['file']).name}"
        env["IOCFLEET_DB"] = json.dumps(loads, separators=(",", ":"))
    if ioc.group and ioc.group.python_path:
        group = json.loads(env["IOCFLEET_GROUP"])
        mounts.append(Mount(GROUP_TARGET, ioc.group.python_path, type="bind", read_only=True))
        group["python_path"] = GROUP_TARGET
        env["IOCFLEET_GROUP"] = json.dumps(group, separators=(",", ":"))
    if mounts:
        out["mounts"] = mounts
        out["environment"] = env
    return out


def healthcheck(ioc: PlannedIOC) -> dict | None:
    """The engine's healthcheck: a CA read of the IOC's liveness PV (iocStats UPTIME) from inside the
    container, with the timing of the compose export (`docker ps` shows healthy/unhealthy)."""
    from orchestrator.export.common import (HEALTH_INTERVAL_S, HEALTH_RETRIES, HEALTH_START_S, HEALTH_TIMEOUT_S,
                                            health_argv)

    argv = health_argv(ioc)
    if argv is None:
        return None
    second = 1_000_000_000
    return {"test": ["CMD", *argv], "interval": HEALTH_INTERVAL_S * second, "timeout": HEALTH_TIMEOUT_S * second,
            "retries": HEALTH_RETRIES, "start_period": HEALTH_START_S * second}


def restart_policy(policy: str) -> dict:
    if policy == "on-failure":
        return {"Name": "on-failure", "MaximumRetryCount": ON_FAILURE_RETRIES}
    return {"Name": "always" if policy == "always" else "no"}


def _engine_call(method):
    """Engine errors escaping a backend call (the daemon went away mid-command, a refused request) become
    BackendUnavailable (exit 4) naming the call; docker-py raises transport errors as plain requests
    exceptions, which were reported as internal errors (exit 70)."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        import docker
        import requests

        try:
            return method(self, *args, **kwargs)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise BackendUnavailable(f"Docker Engine error in {method.__name__}: {reason}", "docker",
                                     "check that dockerd answers (`docker info`); a later `iocfleet up` adopts "
                                     "or replaces what this one left") from exc
    return call


class DockerBackend:
    """IOCs as containers on the local Docker Engine."""

    name = "docker"

    def __init__(self, client=None) -> None:
        self.ioc_uid = IOC_UID
        self._client = client

    @property
    def client(self):
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env(timeout=30)
                self._client.ping()
            except Exception as exc:  # noqa: BLE001
                raise BackendUnavailable(f"no Docker Engine answers: {exc}", "docker",
                                         "start dockerd, or use --backend process") from exc
        return self._client

    def _errors(self):
        import docker

        return docker.errors

    @_engine_call
    def instances(self, fleet: str | None = None, details: bool = True) -> list[Instance]:
        """The fleet's containers by label. `details=False` is one engine call (no inspect per container,
        no TCP port lookup): enough to see states while `up` waits."""
        label = f"{LABEL_FLEET}={fleet}" if fleet else LABEL_FLEET
        containers = self.client.containers.list(all=True, filters={"label": label}, sparse=not details)
        return sorted((self._instance(c, details) for c in containers), key=lambda i: (i.fleet, i.role, i.name))

    def _instance(self, container, details: bool = True) -> Instance:
        labels = container.labels if details else (container.attrs.get("Labels") or {})
        state = container.attrs.get("State", {})
        if not isinstance(state, dict):  # a sparse listing: State is just the status word
            state = {"Status": state}
        status = state.get("Status", "unknown")
        exit_code = state.get("ExitCode") if status in ("exited", "restarting", "dead") else None
        pid = state.get("Pid") or None
        return Instance(fleet=labels.get(LABEL_FLEET, ""), name=labels.get(LABEL_IOC, ""),
                        role=labels.get(LABEL_ROLE, "ioc"), runtime=labels.get(LABEL_RUNTIME, "image"),
                        state=status, plan_hash=labels.get(LABEL_PLAN, ""), exit_code=exit_code,
                        restarts=container.attrs.get("RestartCount", 0), container=container.id,
                        pid=pid, tcp_port=host.listening_port(pid, with_children=True) if details else None,
                        health=(state.get("Health") or {}).get("Status"),
                        members=tuple(labels.get(LABEL_MEMBERS, "").split()))

    @_engine_call
    def prepare(self, iocs: list[PlannedIOC], progress=None) -> None:
        """Build our IOC images if missing, and check that `image` IOCs' images exist locally."""
        runtimes = sorted({i.runtime for i in iocs if i.runtime != "image" and not i.image})
        if runtimes:
            from orchestrator.images.build import build_images

            build_images(runtimes, progress=progress)
        for ioc in iocs:
            if ioc.runtime == "image" or ioc.image:
                try:
                    self.client.images.get(image_ref(ioc))
                except self._errors().ImageNotFound:
                    raise BackendUnavailable(f"image {image_ref(ioc)!r} of IOC {ioc.name} is not on this host",
                                             f"iocs[{ioc.declared_as}].image",
                                             "load or build it first (docker load / docker build)")

    @_engine_call
    def start(self, fleet: str, ioc: PlannedIOC, plan_hash: str) -> Instance:
        """Create and start the IOC's container: two engine calls (a leftover of the same name is replaced)."""
        kwargs = run_kwargs(fleet, ioc, plan_hash)
        kwargs.pop("detach")
        kwargs = self._description_via_file(fleet, ioc.name, kwargs)
        errors = self._errors()
        try:
            try:
                container = self.client.containers.create(**kwargs)
            except errors.APIError as exc:
                if exc.status_code != 409:  # 409: a container of that name exists (a crashed run's)
                    raise
                self._remove_named(kwargs["name"])
                container = self.client.containers.create(**kwargs)
            container.start()
        except errors.DockerException as exc:
            raise BackendUnavailable(f"starting {ioc.name} failed: {exc}", kwargs["name"],
                                     "check `docker info` and the image") from exc
        return Instance(fleet=fleet, name=ioc.name, role="ioc", runtime=ioc.runtime, state="running",
                        plan_hash=plan_hash, container=container.id, members=ioc.members)

    @_engine_call
    def start_repeater(self, fleet: str, port: int) -> Instance:
        name = container_name(fleet, identity.REPEATER)
        self._remove_named(name)
        container = self.client.containers.run(
            image=image_tag(identity.REPEATER_RUNTIME), entrypoint=identity.repeater_argv(), name=name,
            environment=identity.repeater_env(port), network_mode="host", detach=True, init=True,
            labels=identity.repeater_labels(fleet), restart_policy={"Name": "always"},
            **{**container_hardening(identity.REPEATER_RUNTIME), "user": IOC_USER},
        )
        container.reload()
        return self._instance(container)

    @_engine_call
    def start_name_server(self, fleet: str, ns, plan_hash: str, names_dir: str) -> Instance:
        """The fleet's name server (R15): a caproto-image container, host network, names mounted read-only."""
        from orchestrator.images.build import IOC_UID, build_images, container_hardening, image_tag
        from orchestrator.plan.nameserver import INSTANCE
        from orchestrator.run.nameserver import NAMES_FILE, ROLE, program_argv

        build_images(["caproto"])  # a no-op when the image is there (a fleet of softioc IOCs only)
        name = container_name(fleet, INSTANCE)
        self._remove_named(name)
        mount = "/run/iocfleet-names"
        argv = program_argv("python3", f"{mount}/{NAMES_FILE}", ns, "/opt/iocfleet/iocfleet_ioc/nameserver.py")
        container = self.client.containers.run(
            image=image_tag("caproto"), entrypoint=argv, name=name, network_mode="host", detach=True, init=True,
            volumes={names_dir: {"bind": mount, "mode": "ro"}},
            labels={LABEL_FLEET: fleet, LABEL_IOC: INSTANCE, LABEL_PLAN: plan_hash, LABEL_ROLE: ROLE,
                    LABEL_RUNTIME: "caproto"},
            restart_policy={"Name": "always"}, **{**container_hardening("caproto"), "user": f"{IOC_UID}:{IOC_UID}"},
        )
        container.reload()
        return self._instance(container)

    def _remove_named(self, name: str) -> None:
        try:
            self.client.containers.get(name).remove(force=True)
        except self._errors().NotFound:
            pass

    @_engine_call
    def remove(self, instance: Instance) -> None:
        try:
            self.client.containers.get(instance.container).remove(force=True)
        except self._errors().NotFound:
            pass
        from orchestrator.run.statedir import fleet_dir

        try:
            (fleet_dir(instance.fleet) / f"{instance.name}.ioc.json").unlink(missing_ok=True)
        except (OSError, IocfleetError):
            pass

    def _description_via_file(self, fleet: str, name: str, kwargs: dict) -> dict:
        """A large IOCFLEET_IOC or IOCFLEET_PACK (over 128 KiB it fails the container's exec with E2BIG, issue
        13 class 4) goes into a file in the state directory, bind-mounted read-only; the IOC reads the
        variable's _FILE twin."""
        import docker

        from orchestrator.run.backends.process import DESCRIPTION_IN_FILE, DESCRIPTION_VARS
        from orchestrator.run.statedir import fleet_dir, make_dir, write_atomic

        env = dict(kwargs["environment"])
        var = next((v for v in DESCRIPTION_VARS if v in env), None)
        if var is None or len(env[var]) <= DESCRIPTION_IN_FILE:
            return kwargs
        path = make_dir(fleet_dir(fleet)) / f"{name}.ioc.json"
        write_atomic(path, env.pop(var))
        os.chmod(path, 0o644)  # the IOC's uid in the container reads it through the bind mount
        env[f"{var}_FILE"] = DESCRIPTION_TARGET
        return {**kwargs, "environment": env,
                "mounts": [docker.types.Mount(DESCRIPTION_TARGET, str(path), type="bind", read_only=True)]}

    @_engine_call
    def restart(self, instance: Instance) -> Instance:
        container = self.client.containers.get(instance.container)
        container.restart(timeout=5)
        container.reload()
        return self._instance(container)

    @_engine_call
    def console(self, instance: Instance):
        """A socket attached to the container's TTY (the engine's attach: stdin, stdout, stream); the
        container must have been started with a TTY and open stdin (softioc IOCs are)."""
        container = self.client.containers.get(instance.container)
        config = container.attrs.get("Config", {})
        if not (config.get("Tty") and config.get("OpenStdin")):
            from orchestrator.errors import UsageError

            raise UsageError(f"container of {instance.name!r} has no TTY and open stdin", "docker",
                             "recreate it with this iocfleet: `iocfleet up FLEET` after `iocfleet down FLEET`")
        sock = self.client.api.attach_socket(container.id, params={"stdin": 1, "stdout": 1, "stderr": 1,
                                                                   "stream": 1})
        return getattr(sock, "_sock", sock)

    @_engine_call
    def logs(self, instance: Instance, tail: int | None = 20) -> list[str]:
        try:
            raw = self.client.containers.get(instance.container).logs(tail=tail or "all")
        except self._errors().NotFound:
            return []
        return raw.decode(errors="replace").splitlines()

    def follow(self, instance: Instance) -> Iterator[str]:
        container = self.client.containers.get(instance.container)
        buffer = b""
        for chunk in container.logs(stream=True, follow=True, tail=20):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            yield from (line.decode(errors="replace") for line in lines)


def host_members(client=None) -> list:
    """Every iocfleet container on this engine with its environment, for the host-wide view.

    One sparse listing, then one inspect per container; a container that vanishes in between (another
    `down`, a test worker's cleanup) is skipped, never an error.
    """
    import docker

    out = []
    own = client is None
    try:
        if own:
            client = docker.from_env(timeout=10)
        listed = client.containers.list(all=True, filters={"label": LABEL_FLEET}, sparse=True)
    except Exception:  # noqa: BLE001 - no engine answers: there are no containers to show
        if own and client is not None:
            client.close()
        return []
    for container in listed:
        try:
            attrs = client.api.inspect_container(container.id)
        except Exception:  # noqa: BLE001 - gone since the listing (NotFound), or the engine hiccuped: skip it
            continue
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        env = dict(e.partition("=")[::2] for e in (attrs.get("Config") or {}).get("Env") or [])
        state = attrs.get("State") or {}
        out += expand_pack(Member("docker", labels.get(LABEL_FLEET, ""), labels.get(LABEL_IOC, ""),
                                  labels.get(LABEL_ROLE, "ioc"), labels.get(LABEL_RUNTIME, "image"),
                                  state.get("Status", "unknown"), state.get("Pid") or None, attrs.get("Id"), env,
                                  (attrs.get("Config") or {}).get("User") or None))
    if own:
        client.close()
    return out
