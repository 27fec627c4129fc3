"""Validation of the fields that bring real IOCs into a fleet: images, databases and user PVGroups.

`image` IOCs: entrypoint, workdir, mounts, stdin_open. `softioc` IOCs: db (EPICS .db files with macros,
read here so the plan knows every record name). `caproto` IOCs: module, python_path, kwargs (the group is
asked for its PV names in a subprocess). All runtimes: readiness. Paths are relative to the fleet file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from orchestrator.spec.fields import Problems, line_of, type_name, unknown_keys
from orchestrator.spec.model import READINESS, DbLoad, GroupSpec, Mount
from orchestrator.paths import state_root

MOUNT_KEYS = ("source", "target", "read_only")
DB_KEYS = ("file", "macros")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
MACRO_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
# Where the docker backend mounts databases and user code inside an IOC container.
INTERNAL_TARGETS = ("/iocfleet",)


def base_dir(source: str) -> Path:
    """The folder fleet-file paths are relative to: the fleet file's, or the working directory."""
    path = Path(source)
    return path.resolve().parent if source and not source.startswith("<") and path.exists() else Path.cwd()


def check_real(item: dict, where: str, runtime: str, prefix: str, declared: int, source: str,
               problems: Problems) -> dict:
    """The IOCSpec keyword arguments of the real-IOC fields (problems added for every bad one)."""
    base = base_dir(source)
    out: dict = {}
    container_only = ("entrypoint", "workdir", "mounts", "stdin_open")
    for key in container_only:
        if key in item and runtime != "image":
            problems.add(line_of(item, key), f"{where}.{key}", f"only `image` IOCs take `{key}`",
                         "remove it (caproto and softioc IOCs run iocfleet's own program)")
    if runtime == "image":
        out["entrypoint"] = _strings(item, "entrypoint", where, problems)
        out["workdir"] = _workdir(item, where, problems)
        out["mounts"] = _mounts(item, where, base, problems)
        out["stdin_open"] = _bool(item, "stdin_open", where, False, problems)
    if "db" in item and runtime != "softioc":
        problems.add(line_of(item, "db"), f"{where}.db", "only `softioc` IOCs load EPICS databases",
                     "set `runtime: softioc`, or build an image that loads it (runtime: image)")
    elif runtime == "softioc":
        out["db"] = _databases(item, where, base, problems)
    group_keys = [k for k in ("module", "python_path", "kwargs") if k in item]
    if group_keys and runtime != "caproto":
        problems.add(line_of(item, group_keys[0]), f"{where}.{group_keys[0]}", "only `caproto` IOCs run a PVGroup",
                     "set `runtime: caproto`")
    elif group_keys:
        out["group"] = _group(item, where, base, prefix, declared, problems)
    return out


def resolve_readiness(item: dict, where: str, names: int, problems: Problems) -> str:
    """`readiness`: as written, else `pvs` when the IOC has PV names to probe, else `server`."""
    value = item.get("readiness")
    line = line_of(item, "readiness")
    if value is None:
        return "pvs" if names else "server"
    if value not in READINESS:
        problems.add(line, f"{where}.readiness", f"{value!r} is not one of {', '.join(READINESS)}",
                     "use pvs (read every PV), server (the CA server is up) or none (do not wait)")
        return "pvs"
    if value == "pvs" and not names:
        problems.add(line, f"{where}.readiness", "`pvs` readiness, but the IOC declares no PVs",
                     "declare the PVs it serves under `pvs:`, or use `readiness: server`")
    return value


def _strings(item: dict, key: str, where: str, problems: Problems) -> tuple[str, ...]:
    value = item.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        problems.add(line_of(item, key), f"{where}.{key}", "a shell string is not accepted",
                     f"write {key} as a list of arguments, e.g. [\"/epics/ioc/start.sh\"]")
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(a, str) and "\0" not in a for a in value):
        problems.add(line_of(item, key), f"{where}.{key}", "expected a non-empty list of strings",
                     f"write {key} as a list of arguments")
        return ()
    return tuple(value)


def _workdir(item: dict, where: str, problems: Problems) -> str | None:
    value = item.get("workdir")
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        problems.add(line_of(item, "workdir"), f"{where}.workdir", f"{value!r} is not an absolute path",
                     "write a path inside the container, e.g. /epics/ioc")
        return None
    return value


def _bool(item: dict, key: str, where: str, default: bool, problems: Problems) -> bool:
    value = item.get(key, default)
    if not isinstance(value, bool):
        problems.add(line_of(item, key), f"{where}.{key}", f"expected true or false, got {type_name(value)}",
                     f"write `{key}: true`")
        return default
    return value


def _forbidden_source(path: Path) -> str | None:
    """Why a host path must not be mounted into an IOC, or None."""
    if path == Path("/"):
        return "is the root folder"
    sockets = list(DOCKER_SOCKETS)
    docker_host = os.environ.get("DOCKER_HOST", "")
    if docker_host.startswith("unix://"):
        sockets.append(docker_host[len("unix://"):])
    for socket in sockets:
        resolved = Path(socket).resolve()
        if path == resolved or path in resolved.parents:
            return "is or holds the Docker socket (root on this host for anyone who can write it)"
    state = state_root().resolve()
    if path == state or state in path.parents:
        return f"is inside iocfleet's state directory {state}"
    return None


def _mounts(item: dict, where: str, base: Path, problems: Problems) -> tuple[Mount, ...]:
    mounts = item.get("mounts")
    if mounts is None:
        return ()
    if not isinstance(mounts, list):
        problems.add(line_of(item, "mounts"), f"{where}.mounts", f"expected a list, got {type_name(mounts)}",
                     "write `mounts:` followed by `- {source: config, target: /epics/ioc/config}`")
        return ()
    out, targets = [], set()
    for index, mount in enumerate(mounts):
        mwhere, line = f"{where}.mounts[{index}]", line_of(mounts, index)
        if not isinstance(mount, dict):
            problems.add(line, mwhere, f"expected a mapping, got {type_name(mount)}",
                         "write `- {source: config, target: /epics/ioc/config}`")
            continue
        unknown_keys(mount, MOUNT_KEYS, f"{mwhere}.", problems)
        source, target = mount.get("source"), mount.get("target")
        read_only = mount.get("read_only", True)
        if not isinstance(source, str) or not source or "\0" in source:
            problems.add(line_of(mount, "source") or line, f"{mwhere}.source", "missing or not a path",
                         "write the host path, relative to the fleet file")
            continue
        path = (base / source).resolve()
        why = "does not exist" if not path.exists() else _forbidden_source(path)
        if why:
            problems.add(line_of(mount, "source") or line, f"{mwhere}.source", f"{source!r} ({path}) {why}",
                         "mount a folder made for the IOC, e.g. its config folder next to the fleet file")
            continue
        if (not isinstance(target, str) or not target.startswith("/") or "\0" in target or ":" in target
                or os.path.normpath(target) == "/"):
            problems.add(line_of(mount, "target") or line, f"{mwhere}.target", f"{target!r} is not a container path",
                         "write an absolute path other than /, e.g. /epics/ioc/config")
            continue
        target = os.path.normpath(target)
        if target in targets or any(target == t or target.startswith(t + "/") for t in INTERNAL_TARGETS):
            problems.add(line_of(mount, "target"), f"{mwhere}.target", f"{target} is already used",
                         "give every mount its own target (/iocfleet is iocfleet's)")
            continue
        targets.add(target)
        if not isinstance(read_only, bool):
            problems.add(line_of(mount, "read_only"), f"{mwhere}.read_only", "expected true or false",
                         "write `read_only: false` to allow writes (mounts are read-only by default)")
            continue
        out.append(Mount(source=str(path), target=target, read_only=read_only))
    return tuple(out)


def _macros(entry: dict, where: str, problems: Problems) -> dict[str, str] | None:
    macros = entry.get("macros", {})
    if macros is None:
        return {}
    if not isinstance(macros, dict):
        problems.add(line_of(entry, "macros"), f"{where}.macros", f"expected a mapping, got {type_name(macros)}",
                     "write `macros: {P: \"BL7:\", R: \"M1:\"}`")
        return None
    out = {}
    for key, value in macros.items():
        if not isinstance(key, str) or not MACRO_NAME_RE.match(key):
            problems.add(line_of(macros, key), f"{where}.macros.{key}", "not a macro name",
                         "use letters, digits and _, not starting with a digit")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or any(c in str(value) for c in ",\0\n"):
            problems.add(line_of(macros, key), f"{where}.macros.{key}", f"{value!r} is not a macro value",
                         "quote it; values cannot hold commas or newlines")
            return None
        out[key] = str(value)
    return out


def _databases(item: dict, where: str, base: Path, problems: Problems) -> tuple[DbLoad, ...]:
    from orchestrator.spec.dbfile import DbError, load

    entries = item.get("db")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        problems.add(line_of(item, "db"), f"{where}.db", f"expected a list, got {type_name(entries)}",
                     "write `db: [{file: motor.db, macros: {P: \"BL7:\"}}]`")
        return ()
    out = []
    for index, entry in enumerate(entries):
        dwhere, line = f"{where}.db[{index}]", line_of(entries, index)
        if isinstance(entry, str):
            entry = {"file": entry}
        if not isinstance(entry, dict):
            problems.add(line, dwhere, f"expected a mapping, got {type_name(entry)}", "write `- {file: motor.db}`")
            continue
        unknown_keys(entry, DB_KEYS, f"{dwhere}.", problems)
        file = entry.get("file")
        macros = _macros(entry, dwhere, problems)
        if not isinstance(file, str) or not file:
            problems.add(line_of(entry, "file") or line, f"{dwhere}.file", "missing", "write `file: motor.db`")
            continue
        if macros is None:
            continue
        path = (base / file).resolve()
        if not path.is_file():
            problems.add(line_of(entry, "file") or line, f"{dwhere}.file",
                         f"database file {file!r} not found ({path})",
                         "check the path; it is relative to the fleet file")
            continue
        seen: list[tuple[str, str]] = []
        try:
            records = load(path, macros, seen=seen)
        except DbError as err:
            problems.lines.append(f"{err.file}:{err.line}: {dwhere}: {err.problem} — {err.fix}")
            continue
        names = tuple(dict.fromkeys(r.name for r in records))
        out.append(DbLoad(file=str(path), macros=tuple(sorted(macros.items())), records=names,
                          digest=_digest(sorted(seen))))
    return tuple(out)


def _group(item: dict, where: str, base: Path, prefix: str, declared: int, problems: Problems) -> GroupSpec | None:
    from orchestrator.spec.pvgroup import GroupError, declared_pvs
    from orchestrator.spec.pvs import PV_CHARS, PV_NAME_MAX

    before = len(problems.lines)
    module = item.get("module")
    if not isinstance(module, str) or not MODULE_RE.match(module):
        problems.add(line_of(item, "module") or line_of(item, "python_path"), f"{where}.module",
                     f"{module!r} is not a PVGroup reference", "write `module: \"package.module:GroupClass\"`")
    if declared:
        problems.add(line_of(item, "pvs"), f"{where}.pvs", "an IOC that runs a PVGroup serves the group's PVs",
                     "remove `pvs:`; the group declares its PVs itself")
    python_path = item.get("python_path")
    if python_path is not None:
        path = (base / str(python_path)).resolve() if isinstance(python_path, str) and python_path else None
        why = "is not a folder" if path is None or not path.is_dir() else _forbidden_source(path)
        if why:
            problems.add(line_of(item, "python_path"), f"{where}.python_path", f"{python_path!r} {why}",
                         "give the folder your package is importable from, relative to the fleet file")
        python_path = str(path) if path else None
    kwargs = item.get("kwargs", {})
    try:
        kwargs_text = json.dumps(kwargs, sort_keys=True)
        if not isinstance(kwargs, dict):
            raise TypeError
    except (TypeError, ValueError):
        problems.add(line_of(item, "kwargs"), f"{where}.kwargs", "expected a mapping of plain values",
                     "write `kwargs: {rate: 2.0, label: x}`")
        kwargs_text = "{}"
    if len(problems.lines) > before:
        return None
    try:
        names = declared_pvs(module, python_path, kwargs)
    except GroupError as exc:
        problems.add(line_of(item, "module"), f"{where}.module", str(exc),
                     "make the module importable from python_path and the class a caproto PVGroup")
        return None
    longest = prefix.replace("{i}", "999")
    for name in names:
        if len(longest) + len(name) > PV_NAME_MAX or not PV_CHARS.match(name):
            problems.add(line_of(item, "module"), f"{where}.module", f"the group's PV {longest + name!r} is not a "
                         f"valid PV name", f"keep prefix + name within {PV_NAME_MAX} characters of A-Z a-z 0-9 _ - : ")
            return None
    if not names:
        problems.add(line_of(item, "module"), f"{where}.module", f"{module} declares no PVs",
                     "add pvproperty attributes to the group")
        return None
    return GroupSpec(module=module, python_path=python_path, kwargs=kwargs_text, pvs=names,
                     digest=_code_digest(python_path))


MAX_CODE_FILES = 2000


def _digest(files: list[tuple[str, str]]) -> str:
    import hashlib

    sha = hashlib.sha256()
    for name, text in files:
        sha.update(name.encode() + b"\0" + text.encode(errors="replace") + b"\0")
    return sha.hexdigest()[:16]


def _code_digest(python_path: str | None) -> str:
    """A digest of the .py files under `python_path` (the first MAX_CODE_FILES, sorted): edited group code
    changes the plan hash, so `up` recreates the IOC instead of keeping the old code running."""
    if not python_path:
        return ""
    files = []
    for path in sorted(Path(python_path).rglob("*.py"))[:MAX_CODE_FILES]:
        try:
            files.append((str(path.relative_to(python_path)), path.read_text(encoding="utf-8", errors="replace")))
        except OSError:
            continue
    return _digest(files)
