"""The farm on a real Ray cluster: a head and a worker node on loopback (hosts lab-a and lab-b), two loopback ADB
daemons as phones of one model, and two local devices, built through the real CLI.

One cluster serves the module (starting one takes ~10-20 s here); each test brings its own phones and store.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import FAST, cli_env, run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backends" / "android"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from adb_daemon import AdbDaemon  # noqa: E402
from android_fixtures import LOOPBACK, install_standin  # noqa: E402
from ray_cluster import RayCluster  # noqa: E402

# Five ops (stem, two candidates, head, classifier): small enough to export once and measure in seconds.
SPACE = textwrap.dedent("""\
    name: tiny_farm
    resolution: {default: 32, min: 16}
    num_classes: 10
    stem:
      - {op: conv, out: 8, kernel: 3, stride: 2}
    stages:
      - {out: 8, layers: 1, stride: 1, candidates: [ir_k3_e1, ir_k3_e3]}
    head_channels: 16
    head:
      - {op: conv, out: head, kernel: 1}
      - {op: logits, out: classes}
    """)
OPS = 5
ROUNDS = 2


@pytest.fixture(scope="module")
def cluster():
    with RayCluster(["lab-a", "lab-b"]) as c, pytest.MonkeyPatch.context() as mp:
        for k, v in c.driver_env({}).items():  # for drivers in this process; Ray reads its token when imported
            mp.setenv(k, v)
        yield c


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The host side of the phones: the benchmark_model stand-in (and, once made, each phone's ADB key)."""
    h = tmp_path / "host"
    install_standin(h)
    (tmp_path / "tiny.yaml").write_text(SPACE)
    return h


def phone(home: Path, daemon: AdbDaemon, host: str | None) -> dict:
    return {"descriptor": str(LOOPBACK), "address": daemon.address, "adb_key": str(home / f"adbkey-{daemon.serial}"),
            "benchmark_binary": str(home / "benchmark_model"), **({"host": host} if host else {})}


def farm_build(tmp_path: Path, cluster: RayCluster, artifact_cache: Path, devices: list, *extra: str):
    (tmp_path / "farm.yaml").write_text(yaml.safe_dump({"ray": cluster.address, "devices": devices}))
    env = cluster.driver_env(cli_env(FBNET_LUT_CACHE=str(artifact_cache)))
    return run_cli("build", "--farm", "farm.yaml", "--space", "tiny.yaml", "--store", "store.sqlite", "--json",
                   "--rounds", str(ROUNDS), *(extra or FAST), cwd=tmp_path, env=env, timeout=400)


def accepted(store: Path) -> list[tuple[str, str, int, str]]:
    """(configuration fingerprint, key, round, device) of every accepted measurement."""
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT s.fingerprint, m.key, m.extra FROM measurements m JOIN sessions s "
                          "ON m.session_id = s.id WHERE m.accepted = 1").fetchall()
    return [(fp, k, int(json.loads(e).get("round", 0)), json.loads(e)["farm_device"]) for fp, k, e in rows]


def measure_hook(daemon: AdbDaemon, offline_at: int):
    """The phone goes away (listener closed, connections cut) when its ``offline_at``-th op starts."""
    seen = []

    def hook(cmd: str) -> str | None:
        if "benchmark_model --graph=" in cmd and ".no-such-model" not in cmd:
            seen.append(cmd)
            if len(seen) == offline_at:
                return "offline"
        return None

    daemon.shell_hook = hook
    return seen


def test_two_phones_and_two_hosts_give_one_lut_per_model(tmp_path, home, cluster, artifact_cache):
    with AdbDaemon(tmp_path / "pa", serial="LOOPA") as a, AdbDaemon(tmp_path / "pb", serial="LOOPB") as b:
        devices = [phone(home, a, "lab-a"), phone(home, b, "lab-b"),
                   {"descriptor": "local", "host": "lab-a"}, {"descriptor": "local", "host": "lab-b"}]
        r = farm_build(tmp_path, cluster, artifact_cache, devices)
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        luts = {x["device"]: x for x in s["luts"]}
        assert set(luts) == {"loopback", "local"} and not s["dropped"]
        assert luts["loopback"]["devices"] == [a.address, b.address]
        assert luts["local"]["devices"] == ["local@lab-a", "local@lab-b"]
        for x in luts.values():
            assert x["complete"] and x["entries"] == OPS and x["tasks"] == OPS * ROUNDS
            assert sum(x["per_device"].values()) == OPS * ROUNDS
        assert s["ray_start_seconds"] + s["ray_stop_seconds"] < 60

        for x in luts.values():
            lut = json.loads((tmp_path / x["lut"]).read_text())
            farm = lut["header"]["farm"]
            assert [d["label"] for d in farm["devices"]] == x["devices"]
            for d in farm["devices"]:  # each actor ran on the node that provides its host
                assert d["node"] == cluster.node_of_host[d["host"]], d
            assert all(set(e["extra"]["device_ms"]) <= set(x["devices"]) for e in lut["entries"].values())
            # round r of an op goes to another device than round r-1: entries show how the devices differ
            assert farm["device_spread"]["entries"] >= 1 and lut["header"]["rounds"] == ROUNDS
        phones = [d["device_info"]["serial"] for d in json.loads((tmp_path / luts["loopback"]["lut"]).read_text())
                  ["header"]["farm"]["devices"]]
        assert phones == ["LOOPA", "LOOPB"]

        rows = accepted(tmp_path / "store.sqlite")
        per_config: dict[str, list] = {}
        for fp, key, rnd, _ in rows:
            per_config.setdefault(fp, []).append((key, rnd))
        assert len(per_config) == 2
        for tasks in per_config.values():  # every (op, round) exactly once, whichever device took it
            assert len(tasks) == len(set(tasks)) == OPS * ROUNDS

        again = farm_build(tmp_path, cluster, artifact_cache, devices)
        assert again.returncode == 0, again.stderr
        s2 = json.loads(again.stdout)
        assert all(x["measured"] == 0 and x["reused"] == OPS and x["tasks"] == 0 for x in s2["luts"])
        assert len(accepted(tmp_path / "store.sqlite")) == len(rows)


def test_a_phone_that_drops_mid_build_leaves_its_op_to_the_other(tmp_path, home, cluster, artifact_cache):
    with AdbDaemon(tmp_path / "pa", serial="LOOPA") as a, AdbDaemon(tmp_path / "pb", serial="LOOPB") as b:
        seen = measure_hook(b, offline_at=2)  # b finishes one op, then vanishes during its second
        r = farm_build(tmp_path, cluster, artifact_cache, [phone(home, a, "lab-a"), phone(home, b, "lab-b")])
        assert r.returncode == 0, r.stderr
        s = json.loads(r.stdout)
        [x] = s["luts"]
        assert list(s["dropped"]) == [b.address] and len(seen) == 2
        assert x["complete"] and x["per_device"][b.address] == 1 and x["per_device"][a.address] == OPS * ROUNDS - 1
        assert s["returned"] >= 1
        rows = accepted(tmp_path / "store.sqlite")
        tasks = [(k, rnd) for _, k, rnd, _ in rows]
        assert len(tasks) == len(set(tasks)) == OPS * ROUNDS  # nothing lost, nothing counted twice
        assert sum(dev == b.address for *_, dev in rows) == 1


def test_when_every_phone_drops_the_store_keeps_what_was_measured(tmp_path, home, cluster, artifact_cache):
    with AdbDaemon(tmp_path / "pa", serial="LOOPA") as a:
        measure_hook(a, offline_at=3)
        devices = [phone(home, a, None)]
        r = farm_build(tmp_path, cluster, artifact_cache, devices)
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("Error: every device of loopback")
        assert "rerun the same command to resume" in r.stderr
        assert len(accepted(tmp_path / "store.sqlite")) == 2
        a.shell_hook = None
        a.come_back()
        r = farm_build(tmp_path, cluster, artifact_cache, devices)
        assert r.returncode == 0, r.stderr
        [x] = json.loads(r.stdout)["luts"]
        assert x["complete"] and x["tasks"] == OPS * ROUNDS - 2
        assert len(accepted(tmp_path / "store.sqlite")) == OPS * ROUNDS


def test_a_host_no_node_provides_is_refused_before_measuring(tmp_path, home, cluster, artifact_cache):
    r = farm_build(tmp_path, cluster, artifact_cache, [{"descriptor": "local", "host": "lab-a"},
                                                       {"descriptor": "local", "host": "lab-z"}])
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "devices[1]: host 'lab-z' is provided by no node" in r.stderr and "hosts: lab-a, lab-b" in r.stderr
    assert '--resources=\'{"host:lab-z": 1}\'' in r.stderr
    assert not (tmp_path / "store.sqlite").exists()


def test_a_phone_that_cannot_be_reached_is_named_before_measuring(tmp_path, home, cluster, artifact_cache):
    daemon = AdbDaemon(tmp_path / "gone", serial="GONE").start()
    daemon.stop()  # its port is known and nothing listens there
    r = farm_build(tmp_path, cluster, artifact_cache, [{"descriptor": "local"}, phone(home, daemon, "lab-b")])
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"devices[1] ({daemon.address} on host lab-b)" in r.stderr
    assert not (tmp_path / "store.sqlite").exists()


def test_a_phone_that_hangs_is_dropped_after_the_task_timeout(tmp_path, home, cluster, artifact_cache):
    """Through the library: FarmSession, with a short timeout; the hung phone's op is finished by the other."""
    import threading

    from latency_lut.farm.config import parse_farm
    from latency_lut.farm.runner import FarmSession
    from latency_lut.measure import Protocol
    from latency_lut.spaces import get_space
    from latency_lut.store import Store

    release = threading.Event()
    with AdbDaemon(tmp_path / "pa", serial="LOOPA") as a, AdbDaemon(tmp_path / "pb", serial="LOOPB") as b:
        b.shell_hook = lambda cmd: release.wait(60) and None if "benchmark_model --graph=" in cmd and \
            ".no-such-model" not in cmd else None
        farm = parse_farm({"ray": cluster.address, "devices": [phone(home, a, "lab-a"), phone(home, b, "lab-b")]})
        try:
            with FarmSession(farm, task_timeout=4) as fs, Store(tmp_path / "s.sqlite") as st:
                res = fs.build(get_space(tmp_path / "tiny.yaml"), st, Protocol(warmup=1, runs=3, min_seconds=0,
                                                                               retries=0), rounds=ROUNDS)
        finally:
            release.set()
    [g] = res.groups
    assert res.dropped[b.address].startswith("no result for 4 s (op ")
    assert g.lut is not None and g.lut.header["complete"] and g.per_device == {a.address: OPS * ROUNDS}


def test_the_drift_guard_runs_per_device_and_retakes_what_drifted(tmp_path, home, cluster, artifact_cache):
    """A threshold so tight that every re-timing of the reference counts as drift: what each device timed since
    its last good check is rejected and taken again (at most twice), and nothing is counted twice."""
    guard = [x for x in FAST if x != "--no-drift-guard"] + ["--drift-every", "2", "--drift-threshold", "0.0001"]
    r = farm_build(tmp_path, cluster, artifact_cache, [{"descriptor": "local", "host": "lab-a"},
                                                       {"descriptor": "local", "host": "lab-b"}], *guard)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    [x] = s["luts"]
    assert x["complete"] and s["drift"]["checks"] >= 4 and s["drift"]["drifts"] >= 1
    assert s["drift"]["remeasured"] >= 1 and x["tasks"] == OPS * ROUNDS + s["drift"]["remeasured"]
    rows = accepted(tmp_path / "store.sqlite")
    tasks = [(k, rnd) for _, k, rnd, _ in rows]
    assert len(tasks) == len(set(tasks)) == OPS * ROUNDS
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        extras = [json.loads(e) for (e,) in db.execute("SELECT extra FROM measurements WHERE accepted = 0")]
    assert {e["drift_check"]["farm_device"] for e in extras if "drift_check" in e} == set(x["devices"])
    assert any(e.get("rejected", "").startswith("drift guard: reference op drifted on local@lab-") for e in extras)
    lut = json.loads((tmp_path / x["lut"]).read_text())
    assert lut["header"]["drift_guard"]["checks"] == s["drift"]["checks"]
