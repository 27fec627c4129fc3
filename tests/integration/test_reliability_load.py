"""Load: a 50-IOC fleet (process backend, shared port on loopback) under 10,000 CA searches sent on the
loopback broadcast path in bounded time. No IOC dies or restarts, every PV answers in every round (reach 1.0),
and every PV still reads over CA afterwards. Numbers go to docs/reliability.md."""

from __future__ import annotations

import time

import pytest

from cli_run import iocfleet, iocfleet_json, pyepics_read, write_fleet

pytestmark = [pytest.mark.slow]

IOCS = 50
SEARCHES = 10_000
ROUNDS = 50  # rounds per batch, each from a fresh source port; 50 rounds x 200 names = 10,000 searches
BUDGET_S = 180


def test_fifty_iocs_answer_ten_thousand_broadcast_searches_with_reach_1(tmp_path):
    from orchestrator.ca import probe

    fleet = "relload"
    iocs = [{"name": "l", "runtime": "caproto", "prefix": "RELLOAD:{i}:", "replicas": IOCS,
             "pvs": [{"name": "A", "value": 1.0}, {"name": "B", "type": "int", "sim": "counter", "rate_hz": 2}]}]
    path = write_fleet(tmp_path / "fleet.yaml", fleet, iocs, base_port=31300)
    state = tmp_path / "state"
    try:
        started = time.monotonic()
        result = iocfleet_json("up", str(path), "--backend", "process", "--timeout", "240", state=state,
                               timeout=400)
        up_s = time.monotonic() - started
        assert result["ready"] is True and len(result["iocs"]) == IOCS
        env = result["client_env"]
        dest = (env["EPICS_CA_ADDR_LIST"], int(env["EPICS_CA_SERVER_PORT"]))
        assert dest == ("127.255.255.255", 31300)
        names = [f"RELLOAD:{i}:{pv}" for i in range(1, IOCS + 1) for pv in ("A", "B", "HEARTBEAT", "UPTIME")]
        assert len(names) * ROUNDS == SEARCHES

        answered: dict[str, int] = {}
        servers: dict[str, set] = {}
        sent = 0
        t0 = time.monotonic()
        for i in range(0, len(names), probe.MAX_NAMES):
            batch = names[i:i + probe.MAX_NAMES]
            res = probe.search(batch, [dest], rounds=ROUNDS, timeout=2.0)
            assert not res.errors, res.errors[:3]
            sent += len(batch) * ROUNDS
            for name in batch:
                answered[name] = res.rounds_answered(name, dest)
                servers[name] = set(res.servers(name, dest))
        search_s = time.monotonic() - t0
        assert sent == SEARCHES
        reach = {n: answered[n] / ROUNDS for n in names}
        assert min(reach.values()) == 1.0, sorted(reach.items(), key=lambda kv: kv[1])[:5]
        multi = {n: s for n, s in servers.items() if len(s) != 1}
        assert not multi, list(multi.items())[:3]  # one server per name: no duplicates
        assert len({next(iter(s)) for s in servers.values()}) == IOCS
        assert search_s < BUDGET_S

        status = iocfleet_json("status", fleet, "--backend", "process", state=state)["iocs"]
        iocs_now = [i for i in status if i["role"] == "ioc"]
        assert len(iocs_now) == IOCS
        assert all(i["state"] == "running" and i["restarts"] == 0 for i in iocs_now), \
            [(i["name"], i["state"], i["restarts"], i["exit_code"], i["pid"]) for i in iocs_now if i["state"] != "running" or i["restarts"]]
        values = pyepics_read([f"RELLOAD:{i}:A" for i in range(1, IOCS + 1)], env)
        assert all(v == 1.0 for v in values.values()), values
        print(f"\nload: {IOCS} IOCs up in {up_s:.1f} s; {sent} searches ({len(names)} names x {ROUNDS} rounds) "
              f"in {search_s:.2f} s = {sent / search_s:.0f}/s; min reach {min(reach.values()):.3f}; "
              f"restarts 0; {len(values)} reads ok")
    finally:
        iocfleet("down", "--fleet-name", fleet, "--backend", "process", state=state)
    assert ioc_processes("RELLOAD:") == [], "IOC processes outlived `down`"


def ioc_processes(prefix: str) -> list[int]:
    """Pids of IOC processes serving `prefix`, found by their IOCFLEET_IOC environment (orphans included)."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if f'"prefix":"{prefix}' in proc.environ().get("IOCFLEET_IOC", ""):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found
