"""A build on a farm of 2 phones against 1, where the phones' measurement time dominates; and Ray's own cost.

The phones are loopback ADB daemons (tests/backends/android/adb_daemon.py) running the benchmark_model stand-in. A real
phone times a model on its own CPU, so its measurement costs the host nothing; here the phone's time is a sleep of
``--phone-seconds`` per benchmark_model run (before the stand-in really runs the model), so that two phones on
this small shared host behave like two phones and not like two processes fighting for its cores. Each build is a
real `fbnet-lut build --farm` subprocess with `ray: local` (it starts and stops its own Ray head, as a user's
would), on a fresh store, with the artifacts exported beforehand (export is the same for 1 or 2 phones).

    flock /tmp/fbnet-bench.lock python benchmarks/farm_speed.py [--phone-seconds 3] [--ops 12]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests/android"))
from adb_daemon import AdbDaemon  # noqa: E402

STANDIN = REPO / "tests/backends/android/benchmark_model_standin.py"
LOOPBACK = REPO / "tests/backends/android/loopback.yaml"


def space_yaml(ops: int) -> str:
    """A space of ``ops`` ops: stem, head and classifier plus one stage of ``ops - 3`` candidates."""
    cands = [f"ir_k{k}_e{e}" for e in (1, 3, 6, 2, 4) for k in (3, 5, 7)][: max(1, ops - 3)]
    return textwrap.dedent(f"""\
        name: farm_bench
        resolution: {{default: 32, min: 16}}
        num_classes: 10
        stem:
          - {{op: conv, out: 8, kernel: 3, stride: 2}}
        stages:
          - {{out: 8, layers: 1, stride: 1, candidates: [{", ".join(cands)}]}}
        head_channels: 16
        head:
          - {{op: conv, out: head, kernel: 1}}
          - {{op: logits, out: classes}}
        """)


def slow_phone_binary(folder: Path, seconds: float) -> Path:
    """benchmark_model for the loopback phone: the phone's own time (a sleep), then the real stand-in."""
    folder.mkdir(parents=True, exist_ok=True)
    standin = folder / "standin.py"
    standin.write_text(STANDIN.read_text())
    path = folder / "benchmark_model"
    path.write_text(f"#!/bin/sh\nsleep {seconds}\nexec {sys.executable} {standin} \"$@\"\n")
    path.chmod(0o755)
    return path


def farm_build(work: Path, phones: list[AdbDaemon], binary: Path, env: dict[str, str]) -> tuple[float, dict]:
    devices = [{"descriptor": str(LOOPBACK), "address": p.address, "adb_key": str(work / f"adbkey-{p.serial}"),
                "benchmark_binary": str(binary)} for p in phones]
    farm = work / f"farm-{len(phones)}.yaml"
    farm.write_text(yaml.safe_dump({"ray": "local", "devices": devices}))
    store = work / f"store-{len(phones)}.sqlite"
    cmd = [sys.executable, "-m", "latency_lut", "build", "--farm", str(farm), "--space", str(work / "space.yaml"),
           "--store", str(store), "--json", "--warmup", "1", "--runs", "3", "--min-seconds", "0", "--retries", "0",
           "--rounds", "1", "--no-drift-guard",
           "-o", str(work / f"lut-{len(phones)}.json")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"farm build failed: {proc.stderr.strip()}")
    return wall, json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phone-seconds", type=float, default=3.0, help="the phone's own time per benchmark run")
    ap.add_argument("--ops", type=int, default=12, help="ops in the space")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-farm-") as d:
        work = Path(d)
        (work / "space.yaml").write_text(space_yaml(args.ops))
        env = dict(os.environ, PYTHONPATH=str(REPO), FBNET_LUT_CACHE=str(work / "cache"), RAY_USAGE_STATS_ENABLED="0")
        export = ("import sys; from latency_lut.spaces import get_space; from latency_lut.export import export_many; "
                  "export_many(get_space(sys.argv[1]).unique_specs(), 'tflite', jobs=2)")
        subprocess.run([sys.executable, "-c", export, str(work / "space.yaml")], env=env, check=True)
        binary = slow_phone_binary(work / "host", args.phone_seconds)
        rows = []
        with AdbDaemon(work / "pa", serial="BENCHA") as a, AdbDaemon(work / "pb", serial="BENCHB") as b:
            for phones in ([a], [a, b]):
                wall, s = farm_build(work, phones, binary, env)
                [lut] = s["luts"]
                assert lut["complete"], lut
                rows.append((len(phones), lut["tasks"], wall, s["measure_seconds"], s["ray_start_seconds"],
                             s["ray_stop_seconds"], s["setup_seconds"]))
    base_measure, base_wall = rows[0][3], rows[0][2]
    hdr = (f"{'phones':>6} {'tasks':>6} {'total s':>8} {'measure s':>10} {'ray start s':>12} {'ray stop s':>11} "
           f"{'setup s':>8} {'speedup (measure)':>18} {'speedup (total)':>16}")
    print(hdr)
    print("-" * len(hdr))
    for n, tasks, wall, me, rs, rt, su in rows:
        print(f"{n:>6} {tasks:>6} {wall:>8.1f} {me:>10.1f} {rs:>12.1f} {rt:>11.1f} {su:>8.1f} "
              f"{base_measure / me:>17.2f}x {base_wall / wall:>15.2f}x")
    print(f"\nphone time {args.phone_seconds} s per benchmark_model run, {args.ops} ops, 1 round each, "
          f"{os.cpu_count()} host CPUs, Ray {_ray_version()}. Targets: speedup (measure) >= 1.7x; ray start + stop "
          "<= 15 s. Reproduce with:")
    print(f"  flock /tmp/fbnet-bench.lock python benchmarks/farm_speed.py --phone-seconds {args.phone_seconds} "
          f"--ops {args.ops}")


def _ray_version() -> str:
    import ray

    return ray.__version__


if __name__ == "__main__":
    main()
