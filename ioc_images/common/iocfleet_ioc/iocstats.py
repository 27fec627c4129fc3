"""iocStats for runtimes without EPICS base: devIocStats' record names and CA types, and their values.

softioc loads the real devIocStats template (pythonSoftIOC ships it). The caproto IOC serves the records
of `STATS` under `NAME:` with the same Channel Access types, and fills them from `Sampler`, which reads
/proc like devIocStats' Linux code does. Standard library only (this package must not import a runtime).
The table equals orchestrator/spec/iocstats.py:STATS (a unit test keeps them equal).
"""

from __future__ import annotations

import os
import platform
import resource
import socket
import sys
import time

# (suffix, record type, CA type, units, element count) of devIocStats' ioc.template, queue records left out
STATS: tuple[tuple[str, str, str, str, int], ...] = (
    ("ACCESS", "mbbo", "ENUM", "", 1), ("STARTTOD", "stringin", "STRING", "", 1),
    ("TOD", "stringin", "STRING", "", 1), ("HEARTBEAT", "calcout", "DOUBLE", "", 1),
    ("START_CNT", "calcout", "DOUBLE", "", 1), ("READACF", "sub", "DOUBLE", "", 1),
    ("SYSRESET", "sub", "DOUBLE", "", 1), ("CA_CLNT_CNT", "ai", "DOUBLE", "", 1),
    ("CA_CONN_CNT", "ai", "DOUBLE", "", 1), ("RECORD_CNT", "ai", "DOUBLE", "", 1),
    ("FD_MAX", "ai", "DOUBLE", "", 1), ("FD_CNT", "ai", "DOUBLE", "", 1), ("FD_FREE", "calc", "DOUBLE", "", 1),
    ("SYS_CPU_LOAD", "ai", "DOUBLE", "%", 1), ("IOC_CPU_LOAD", "ai", "DOUBLE", "%", 1),
    ("CPU_CNT", "ai", "DOUBLE", "", 1), ("SUSP_TASK_CNT", "ai", "DOUBLE", "", 1),
    ("MEM_USED", "ai", "DOUBLE", "byte", 1), ("MEM_FREE", "ai", "DOUBLE", "byte", 1),
    ("MEM_MAX", "ai", "DOUBLE", "byte", 1), ("CA_UPD_TIME", "ao", "DOUBLE", "sec", 1),
    ("FD_UPD_TIME", "ao", "DOUBLE", "sec", 1), ("LOAD_UPD_TIME", "ao", "DOUBLE", "sec", 1),
    ("MEM_UPD_TIME", "ao", "DOUBLE", "sec", 1), ("ST_SCRIPT1", "stringin", "STRING", "", 1),
    ("ST_SCRIPT2", "stringin", "STRING", "", 1), ("ST_SCRIPT", "waveform", "CHAR", "", 120),
    ("KERNEL_VERS", "stringin", "STRING", "", 1), ("EPICS_VERS", "stringin", "STRING", "", 1),
    ("EPICS_VERSION", "waveform", "CHAR", "", 120), ("HOSTNAME", "stringin", "STRING", "", 1),
    ("APP_DIR1", "stringin", "STRING", "", 1), ("APP_DIR2", "stringin", "STRING", "", 1),
    ("APP_DIR", "waveform", "CHAR", "", 160), ("UPTIME", "stringin", "STRING", "", 1),
    ("ENGINEER", "stringin", "STRING", "", 1), ("LOCATION", "stringin", "STRING", "", 1),
    ("PROCESS_ID", "ai", "DOUBLE", "", 1), ("PARENT_ID", "ai", "DOUBLE", "", 1),
    ("SCANONCE_Q_SIZE", "ai", "DOUBLE", "", 1), ("CB_Q_SIZE", "ai", "DOUBLE", "", 1),
)
ACCESS_STATES = ("Running", "Maintenance", "Test", "OFFLINE")
WRITABLE = {"ACCESS", "SYSRESET", "READACF", "CA_UPD_TIME", "FD_UPD_TIME", "LOAD_UPD_TIME", "MEM_UPD_TIME"}
UPDATE_DEFAULTS = {"CA_UPD_TIME": 15.0, "FD_UPD_TIME": 10.0, "LOAD_UPD_TIME": 20.0, "MEM_UPD_TIME": 10.0}
TOD_FORMAT = "%m/%d/%Y %H:%M:%S"  # the TODFORMAT pythonSoftIOC passes to the template
MAX_STRING = 39


def uptime_text(seconds: float) -> str:
    """devIocStats' UPTIME string: `HH:MM:SS`, after `1 day, ` or `N days, ` once a day has passed."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    head = "" if days == 0 else ("1 day, " if days == 1 else f"{days} days, ")
    return f"{head}{hours:02d}:{minutes:02d}:{secs:02d}"


def _clip(text: str) -> str:
    return text.encode("latin-1", "replace")[:MAX_STRING].decode("latin-1")


class Sampler:
    """Reads the process and host figures devIocStats reports; `static()` once, `periodic()` each tick."""

    def __init__(self, runtime_version: str, records: int, clock=time.monotonic, now=time.time) -> None:
        self.clock = clock
        self.now = now
        self.started = clock()
        self.started_wall = now()
        self.runtime_version = runtime_version
        self.records = records
        self._last = (clock(), _process_cpu(), _host_cpu())

    def static(self) -> dict[str, object]:
        """Values that do not change while the IOC runs."""
        uname = platform.uname()
        cwd = os.getcwd()
        script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        return {
            "ACCESS": 0, "STARTTOD": time.strftime(TOD_FORMAT, time.localtime(self.started_wall)),
            "START_CNT": 1.0, "READACF": 0.0, "SYSRESET": 0.0, "RECORD_CNT": float(self.records),
            "FD_MAX": float(resource.getrlimit(resource.RLIMIT_NOFILE)[0]), "CPU_CNT": float(os.cpu_count() or 1),
            "SUSP_TASK_CNT": 0.0, **UPDATE_DEFAULTS,
            "ST_SCRIPT1": _clip(script), "ST_SCRIPT2": _clip(script[MAX_STRING:]), "ST_SCRIPT": script[:119],
            "KERNEL_VERS": _clip(f"{uname.system} {uname.release}"), "EPICS_VERS": _clip(self.runtime_version),
            "EPICS_VERSION": self.runtime_version[:119], "HOSTNAME": _clip(socket.gethostname()),
            "APP_DIR1": _clip(cwd), "APP_DIR2": _clip(cwd[MAX_STRING:]), "APP_DIR": cwd[:159],
            "ENGINEER": _clip(os.environ.get("ENGINEER", "")), "LOCATION": _clip(os.environ.get("LOCATION", "")),
            "PROCESS_ID": float(os.getpid()), "PARENT_ID": float(os.getppid()),
            "SCANONCE_Q_SIZE": 0.0, "CB_Q_SIZE": 0.0,
        }

    def periodic(self, heartbeat: int, clients: int = 0, connections: int = 0) -> dict[str, object]:
        """Values of one tick: time, heartbeat, uptime, CPU, memory, file descriptors, CA clients."""
        at, proc_cpu, host_cpu = self.clock(), _process_cpu(), _host_cpu()
        last_at, last_proc, last_host = self._last
        self._last = (at, proc_cpu, host_cpu)
        wall = max(at - last_at, 1e-6)
        cpus = os.cpu_count() or 1
        ioc_load = min(100.0, 100.0 * (proc_cpu - last_proc) / (wall * cpus))
        busy, total = host_cpu[0] - last_host[0], host_cpu[1] - last_host[1]
        sys_load = 100.0 * busy / total if total > 0 else 0.0
        fds = _fd_count()
        fd_max = float(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        mem_total, mem_free = _meminfo()
        return {
            "TOD": time.strftime(TOD_FORMAT, time.localtime(self.now())), "HEARTBEAT": float(heartbeat),
            "UPTIME": uptime_text(at - self.started), "IOC_CPU_LOAD": round(ioc_load, 2),
            "SYS_CPU_LOAD": round(sys_load, 2), "MEM_USED": float(_rss_bytes()), "MEM_FREE": float(mem_free),
            "MEM_MAX": float(mem_total), "FD_CNT": float(fds), "FD_FREE": fd_max - fds,
            "CA_CLNT_CNT": float(clients), "CA_CONN_CNT": float(connections),
        }


def _process_cpu() -> float:
    times = os.times()
    return times.user + times.system


def _host_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            fields = [float(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def _fd_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _meminfo() -> tuple[int, int]:
    """(MemTotal + SwapTotal, MemAvailable + SwapFree) in bytes."""
    values: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return 0, 0
    total = values.get("MemTotal", 0) + values.get("SwapTotal", 0)
    free = values.get("MemAvailable", values.get("MemFree", 0)) + values.get("SwapFree", 0)
    return total, free
