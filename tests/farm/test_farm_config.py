"""The farm without a cluster: the farm file's checks, sharding with work stealing, and Ray kept out of imports."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

from latency_lut.farm.config import FarmError, load_farm, parse_farm
from latency_lut.farm.schedule import Task, WorkQueue

LOOPBACK = REPO / "tests/backends/android/loopback.yaml"


def phone(serial: str | None = None, **kw) -> dict:
    return {"descriptor": str(LOOPBACK), **({"serial": serial} if serial else {}), **kw}


def test_farm_file_resolves_devices_and_overrides():
    farm = parse_farm({"ray": "head.lab:6379", "devices": [
        phone("A1", host="lab-1", transport="usb"), phone("A2", host="lab-2", transport="usb"), "local",
        {"descriptor": "local", "host": "lab-2", "threads": 2}]}, "farm.yaml")
    assert farm.ray == "head.lab:6379"
    labels = [d.label for d in farm.devices]
    assert labels == ["A1", "A2", "local-2", "local@lab-2"]
    assert farm.devices[0].device.options["serial"] == "A1" and farm.devices[0].resource == "host:lab-1"
    assert farm.devices[3].device.threads == 2 and farm.devices[2].resource is None


@pytest.mark.parametrize("doc, needle", [
    ({"devices": [phone(), {"descriptor": "pixle"}]}, "devices[1]: unknown device 'pixle' (did you mean 'pixel'?)"),
    ({"devices": [phone("X1", transport="usb"), phone("X1", transport="usb")]},
     "devices[1]: duplicate serial 'X1' (also devices[0])"),
    ({"devices": [phone(address="127.0.0.1:7001"), phone(address="127.0.0.1:7001")]}, "duplicate address"),
    ({"devices": ["local", "local"], "raay": "local"}, "unknown field 'raay'; did you mean 'ray'?"),
    ({"ray": "head.lab", "devices": ["local"]}, "field 'ray' must be 'local' or HOST:PORT"),
    ({"ray": "local", "devices": []}, "'devices' must be a non-empty list"),
    ({"devices": [{"descriptor": "local", "hots": "x"}]}, "unknown field 'hots'"),
    ({"devices": [{"descriptor": "local", "host": ""}]}, "field 'host'"),
    ({"devices": ["iphonex"]}, "iOS devices run their bundle"),
])
def test_bad_farm_files_are_named(doc, needle):
    with pytest.raises(FarmError) as e:
        parse_farm(doc, "farm.yaml")
    assert needle in str(e.value) and "farm.yaml" in str(e.value)


def test_unreadable_farm_file(tmp_path):
    with pytest.raises(FarmError, match="does not exist"):
        load_farm(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("devices: [\n")
    with pytest.raises(FarmError, match="is not valid YAML .line 2"):
        load_farm(tmp_path / "bad.yaml")


def test_cli_bad_input_is_one_line_before_anything_runs(tmp_path, cli):
    (tmp_path / "dup.yaml").write_text(yaml.safe_dump({"devices": [phone("S1", transport="usb"),
                                                                   phone("S1", transport="usb")]}))
    r = cli("build", "--farm", "dup.yaml")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "duplicate serial 'S1'" in r.stderr
    # Nothing answers on this port: refused at once, with the fix, not after Ray's long retries.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "gone.yaml").write_text(yaml.safe_dump({"ray": f"127.0.0.1:{port}", "devices": ["local"]}))
    r = cli("build", "--farm", "gone.yaml", "--space", "fbnet", "--resolution", "32", "--width", "0.25")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"cannot reach the Ray head at 127.0.0.1:{port}" in r.stderr and "ray start --head" in r.stderr
    assert not (tmp_path / "store.sqlite").exists()
    r = cli("build", "--farm", "gone.yaml", "--device", "local")
    assert r.returncode == 2 and "drop --device" in r.stderr


def test_sharding_puts_an_ops_rounds_on_different_devices():
    keys = [f"op{i}" for i in range(6)]
    tasks = [Task(r, k) for r in range(2) for k in keys]
    q = WorkQueue(tasks, ["a", "b", "c"], keys)
    shard = {t: d for d, s in q.shards.items() for t in s}
    assert all(shard[Task(0, k)] != shard[Task(1, k)] for k in keys)
    assert sorted(map(len, q.shards.values())) == [4, 4, 4]


def test_stealing_and_dropping_lose_nothing_and_repeat_nothing():
    keys = [f"op{i}" for i in range(40)]
    tasks = [Task(r, k) for r in range(3) for k in keys]
    rng = random.Random(1)
    q = WorkQueue(tasks, ["a", "b", "c", "d"], keys)
    done: list[Task] = []
    in_flight = {d: q.next(d) for d in q.alive}
    drops = {20: "b", 50: "c"}  # two devices drop mid-task
    while in_flight:
        if len(done) in drops and drops[len(done)] in in_flight:
            d = drops.pop(len(done))
            assert q.drop(d, in_flight.pop(d)) == []
            for other in in_flight:
                in_flight[other] = in_flight[other] or q.next(other)
            continue
        # "a" is three times as fast as the others, so it runs dry first and steals
        d = rng.choice(["a"] * 3 * len(in_flight) + list(in_flight))
        if d not in in_flight:
            continue
        done.append(in_flight[d])
        nxt = q.next(d)
        if nxt is None:
            del in_flight[d]
        else:
            in_flight[d] = nxt
    assert sorted(done) == sorted(tasks) and len(done) == len(set(done))
    assert q.stolen > 0 and q.returned >= 2 and not drops


def test_the_last_device_dropping_leaves_its_tasks_unfinished():
    q = WorkQueue([Task(0, "x"), Task(0, "y")], ["a"], ["x", "y"])
    t = q.next("a")
    assert q.drop("a", t) == [Task(0, "x"), Task(0, "y")] and len(q) == 0


def test_ray_is_imported_only_by_the_runner():
    code = ("import sys, latency_lut, latency_lut.cli, latency_lut.farm.config, latency_lut.farm.schedule; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "False"
    assert "import ray" in Path(REPO / "latency_lut/farm/runner.py").read_text()


def test_ssh_boards_take_their_address_from_overrides_and_are_listed_once():
    farm = parse_farm({"devices": [{"descriptor": "raspi4", "host": "lab-1", "overrides": {"host": "pi-1.lab"}},
                                   {"descriptor": "raspi4", "host": "lab-1", "overrides": {"host": "pi-2.lab"}}]})
    assert [(d.label, d.host, d.device.options["host"]) for d in farm.devices] == [
        ("pi-1.lab", "lab-1", "pi-1.lab"), ("pi-2.lab", "lab-1", "pi-2.lab")]
    with pytest.raises(FarmError, match=r"devices\[1\]: duplicate host 'raspberrypi.local'"):
        parse_farm({"devices": ["raspi4", "raspi4"]})


def test_without_ray_the_farm_says_which_extra_to_install(tmp_path, cli):
    shadow = tmp_path / "no-ray" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named ray', name='ray')\n")
    (tmp_path / "farm.yaml").write_text("devices: [local]\n")
    env = {**cli.env, "PYTHONPATH": f"{shadow.parent}{os.pathsep}{cli.env['PYTHONPATH']}"}
    r = run_cli("build", "--farm", "farm.yaml", cwd=tmp_path, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "pip install 'fbnet-lut[farm]'" in r.stderr
