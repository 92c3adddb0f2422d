"""Does the SSH path distort timings, and what does it cost per op? A loopback board against the local backend.

This machine runs both sides: the local ONNX Runtime / LiteRT backend in-process, and the same runtime behind a real
OpenSSH server on loopback (tests/backends/ssh/sshd.py) through fbnet-lut's board runner. The two are measured op by
op in
alternation (local, ssh, local, ssh, ... over several rounds, order flipped each round), so machine load drifts
into both alike; an op's latency on each side is the median of its round medians. Reported: the per-entry
|ssh - local| / local (median and p90) beside the local side's own round-to-round spread (the noise floor), and the
wall time of one op over SSH beyond the measurement itself (sending the model on first use, the request, the samples
streamed back), against the same overhead locally.

    python benchmarks/ssh_transport.py [--runtime onnxruntime] [--resolution 224] [--ops 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "ssh"))

from sshd import LoopbackSshd  # noqa: E402

from latency_lut.backends import create_backend  # noqa: E402
from latency_lut.devices import parse_descriptor  # noqa: E402
from latency_lut.export import export_many  # noqa: E402
from latency_lut.measure import Protocol  # noqa: E402
from latency_lut.spaces import get_space  # noqa: E402


def pick(specs: list, n: int) -> list:
    """n ops spread evenly over the space (early, large-activation blocks and late, small ones alike)."""
    if n >= len(specs):
        return specs
    step = len(specs) / n
    return [specs[int(i * step)] for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "litert"])
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--ops", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--min-seconds", type=float, default=0.2)
    args = ap.parse_args()
    protocol = Protocol(warmup=5, runs=args.runs, min_seconds=args.min_seconds, retries=0)
    specs = pick(get_space("fbnet", args.resolution, 1.0).unique_specs(), args.ops)

    with tempfile.TemporaryDirectory(prefix="bench-ssh-") as d, LoopbackSshd(Path(d) / "sshd") as server:
        local = create_backend(parse_descriptor({"name": "local", "kind": "local", "runtime": args.runtime}),
                               args.runtime)
        board = create_backend(parse_descriptor({
            "name": "loopback-board", "kind": "ssh", "runtime": args.runtime, "host": "board",
            "ssh_config": str(server.client_config), "python": sys.executable, "remote_dir": f"{d}/board"}),
            args.runtime)  # unpinned, like the local side
        t0 = time.perf_counter()
        board.runtime_version()
        connect_s = time.perf_counter() - t0
        arts = export_many(specs, local.artifact_format)
        medians: dict[str, dict[str, list[float]]] = {s.key: {"local": [], "ssh": []} for s in specs}
        overhead: dict[str, list[float]] = {"local": [], "ssh": [], "ssh_first": []}
        for rnd in range(args.rounds):
            for s in specs:
                order = [("local", local), ("ssh", board)]
                for side, backend in order if rnd % 2 == 0 else order[::-1]:
                    t = time.perf_counter()
                    r = backend.measure(s, arts[s.key], protocol)
                    wall = time.perf_counter() - t
                    medians[s.key][side].append(r.summary().median)
                    # Beyond the measurement itself: warmup and timed runs are the measurement.
                    spent = (sum(r.samples_ms) + protocol.warmup * r.summary().median) / 1000
                    key = "ssh_first" if side == "ssh" and rnd == 0 else side
                    overhead[key].append(wall - spent)
        board.close()
        local.close()

    diffs, noise = [], []
    for per in medians.values():
        lo, ss = statistics.median(per["local"]), statistics.median(per["ssh"])
        diffs.append(abs(ss - lo) / lo)
        noise.append((max(per["local"]) - min(per["local"])) / lo)

    def q(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))]

    print(f"{'quantity':<52} {'median':>9} {'p90':>9} {'max':>9}")
    print("-" * 82)
    rows = [("|ssh - local| / local, per entry (%)", [100 * x for x in diffs]),
            ("local round-to-round spread, per entry (%) [noise]", [100 * x for x in noise]),
            ("per-op overhead over SSH, model already there (s)", overhead["ssh"]),
            ("per-op overhead over SSH, first use: model sent (s)", overhead["ssh_first"]),
            ("per-op overhead in-process, local backend (s)", overhead["local"])]
    for name, xs in rows:
        print(f"{name:<52} {statistics.median(xs):>9.3f} {q(xs, 0.9):>9.3f} {max(xs):>9.3f}")
    print(f"\nfirst connection (probe, runner check, runner start with {args.runtime}): {connect_s:.2f} s")
    print(f"{len(specs)} FBNet ops at {args.resolution}, {args.runtime}, 1 thread, {args.rounds} rounds, "
          f"{os.cpu_count()} CPUs. Reproduce with:")
    print(f"  flock /tmp/fbnet-bench.lock python benchmarks/ssh_transport.py --runtime {args.runtime} --resolution "
          f"{args.resolution} --ops {args.ops} --rounds {args.rounds} --runs {args.runs} --min-seconds "
          f"{args.min_seconds}")


if __name__ == "__main__":
    main()
