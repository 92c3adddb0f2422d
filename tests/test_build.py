"""build: interleaved rounds, resume mid-round, the drift guard (with temperature), the closing calibration pass."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import statistics

import pytest

from latency_lut.backends import create_backend
from latency_lut.build import build_lut, config_for, noisy_rounds, reference_op
from latency_lut.devices import get_device
from latency_lut.drift import DriftGuard
from latency_lut.measure import Protocol, RunResult, time_callable
from latency_lut.ops import OpSpec
from latency_lut.spaces import get_space
from latency_lut.store import Store

FAST = Protocol(warmup=1, runs=15, min_seconds=0, retries=0)
SPACE = get_space("fbnet", 32, 0.25)
SPECS = [s for s in SPACE.unique_specs() if s.kind == "ir"][:8]


class Interrupt(Exception):
    pass


class Recording:
    """The real ONNX Runtime backend, recording the order of what it measures; optionally stops after ``stop``
    measurements, or makes the drift guard's reference look ``slow`` times slower during a window of calls."""

    def __init__(self, stop: int | None = None, slow: float = 1.0, window: tuple[int, int] = (0, 0),
                 temperature: list[float] | None = None) -> None:
        self.inner = create_backend(get_device("local"), "onnxruntime")
        self.seen: list[str] = []
        self.stop, self.slow, self.window, self.temperature = stop, slow, window, temperature

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def measure(self, spec, artifact, protocol):
        if self.stop is not None and len(self.seen) >= self.stop:
            raise Interrupt
        self.seen.append(spec.key)
        res = self.inner.measure(spec, artifact, protocol)
        n = len(self.seen)
        if self.window[0] <= n < self.window[1]:
            res = RunResult([x * self.slow for x in res.samples_ms], None, dict(res.extra))
        if self.temperature is not None:
            res.extra["temperature_c"] = self.temperature[min(n - 1, len(self.temperature) - 1)]
        return res


def test_entries_are_the_median_of_interleaved_round_medians(tmp_path, artifact_cache):
    be = Recording()
    with Store(tmp_path / "s.sqlite") as st:
        res = build_lut(SPACE, get_device("local"), be, st, FAST, specs=SPECS, rounds=3, guard=None, extra_rounds=0)
        by_round = st.round_records(config_for(get_device("local"), be, FAST), [s.key for s in SPECS])
    assert res.rounds == 3 and res.lut.header["rounds"] == 3
    # Each round visits every op once, in its own order.
    orders = [be.seen[i * len(SPECS):(i + 1) * len(SPECS)] for i in range(3)]
    assert all(sorted(o) == sorted(s.key for s in SPECS) for o in orders) and len({tuple(o) for o in orders}) > 1
    for s in SPECS:
        meds = [by_round[s.key][r].stats.median for r in range(3)]
        e = res.lut[s.key]
        assert e.median == pytest.approx(statistics.median(meds))
        assert e.extra["round_ms"] == pytest.approx(meds, abs=1e-6)
        assert e.extra["round_spread"] == pytest.approx((max(meds) - min(meds)) / statistics.median(meds), abs=1e-5)
        assert e.stats.count == 3 * len(by_round[s.key][0].samples_ms)
        assert e.stats.p25 <= e.median <= e.stats.p75


def test_split_half_reliability_in_the_header(tmp_path, artifact_cache):
    be = Recording()
    specs = SPACE.unique_specs()  # every op, so sampled architectures have totals
    # 30 runs and 20 ms an op: with 10 runs the halves of this small space's totals agreed by a tau of 0.34-0.41 on
    # an idle host and 0.198 beside the rest of the suite; with these, 0.50-0.55 idle.
    with Store(tmp_path / "s.sqlite") as st:
        lut = build_lut(SPACE, get_device("local"), be, st, Protocol(warmup=1, runs=30, min_seconds=0.02, retries=0),
                        specs=specs, rounds=2, guard=None, extra_rounds=0).lut
    rel = lut.header["reliability"]
    assert rel["archs"] == 200 and -1 <= rel["kendall_tau"] <= 1 and rel["kendall_tau"] > 0.2
    assert 0 <= rel["rms_diff"] < 1 and lut.header["complete"]


def test_split_half_reliability_of_a_table_with_no_ranking_is_none_not_nan():
    """Every op timed alike in both halves (a phone reporting whole microseconds, a space of few ops): no ranking,
    so tau is None, and the header stays JSON (a NaN there made a farm build refuse to write its LUT)."""
    from latency_lut.build import split_half_reliability
    from latency_lut.measure import compute_stats
    from latency_lut.store import Record

    # The even round reads every op as 0 (below a phone's resolution): every total of that half is equal.
    rounds = {s.key: {r: Record(s.key, compute_stats([float(r)]), False, 1, {}, 0.0) for r in range(2)}
              for s in SPACE.unique_specs()}
    rel = split_half_reliability(SPACE, rounds)
    assert rel is not None and rel["kendall_tau"] is None and rel["rms_diff"] > 0 and rel["archs"] > 2
    json.dumps(rel, allow_nan=False)
    from latency_lut.cli.info import _rounds_line

    assert "tau none" in _rounds_line({"rounds": 2, "reliability": rel})  # what 'fbnet-lut show' prints


def test_a_build_interrupted_mid_round_resumes_there(tmp_path, artifact_cache):
    n = len(SPECS)
    with Store(tmp_path / "s.sqlite") as st:
        with pytest.raises(Interrupt):
            build_lut(SPACE, get_device("local"), Recording(stop=n + 3), st, FAST, specs=SPECS, guard=None,
                      extra_rounds=0)
        be = Recording()
        res = build_lut(SPACE, get_device("local"), be, st, FAST, specs=SPECS, guard=None, extra_rounds=0)
    assert len(be.seen) == 3 * n - (n + 3)  # only the missing op-rounds, round 1 onwards
    assert sorted(be.seen[:n - 3]) == sorted(set(be.seen[:n - 3]))  # the rest of round 1 first, each op once
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        per = db.execute("SELECT key, json_extract(extra, '$.round'), COUNT(*) FROM measurements WHERE accepted = 1 "
                         "GROUP BY 1, 2").fetchall()
    assert len(per) == 3 * n and all(c == 1 for *_, c in per)
    assert len(res.lut) == n


def test_drift_guard_retakes_the_ops_since_the_last_good_check(tmp_path, artifact_cache):
    # min_threshold: the band never narrows, so only the 5x slowdown counts as drift, whatever the host's scatter.
    guard = DriftGuard(every=4, threshold=1.0, min_threshold=1.0, wait_seconds=0.01, max_wait_seconds=0.05)
    ref = reference_op(SPECS)
    # Calls: 1 = baseline check; ops 2-5; check 6 (good); ops 7-10; check 11 slowed 10x, and so is its re-timing
    # (12) that confirms it: ops 7-10 are re-taken. (10x, so that the checks' ratios clear 3 on a loaded host,
    # where the tiny reference's own time halved from one check to the next: 5x read as 2.5x once.)
    be = Recording(slow=10.0, window=(11, 13))
    with Store(tmp_path / "s.sqlite") as st:
        res = build_lut(SPACE, get_device("local"), be, st, FAST, specs=SPECS, rounds=1, guard=guard)
        cfg = config_for(get_device("local"), be, FAST)
        checks = st.drift_checks(cfg)
        rejected = st.rejected_count(cfg)
    assert be.seen[0] == ref.key and be.seen[5] == ref.key and be.seen[10] == ref.key
    retaken = be.seen[6:10]
    assert res.drift["drifts"] >= 1 and res.drift["remeasured"] == 4 == rejected
    assert all(be.seen.count(k) >= 2 + (k == ref.key) for k in retaken)
    assert not checks[2]["drifted"] and "re-timed to confirm" in checks[2]["reason"] and checks[2]["ratio"] > 3
    assert checks[3]["drifted"] and checks[3]["ratio"] > 3 and not checks[1]["drifted"]
    hdr = res.lut.header["drift_guard"]
    assert hdr["drifts"] == res.drift["drifts"] and hdr["remeasured"] == 4 and hdr["every"] == 4
    assert len(res.lut) == len(SPECS)


class SlowTwice(Recording):
    """The real backend; one op's first two measurements come back ``slow`` times slower (a neighbour's bursts
    landing on two of its three rounds)."""

    def __init__(self, key: str, slow: float = 2.0, **kw) -> None:
        super().__init__(**kw)
        self.key, self.factor = key, slow

    def measure(self, spec, artifact, protocol):
        res = super().measure(spec, artifact, protocol)
        if spec.key == self.key and self.seen.count(spec.key) <= 2:
            res = RunResult([x * self.factor for x in res.samples_ms], None, dict(res.extra))
        return res


def test_ops_whose_median_round_is_slowed_get_two_more_rounds(tmp_path, artifact_cache):
    victim = SPECS[3]
    be = SlowTwice(victim.key, slow=4.0)
    with Store(tmp_path / "s.sqlite") as st:
        res = build_lut(SPACE, get_device("local"), be, st, FAST, specs=SPECS, rounds=3, guard=None)
        by_round = st.round_records(config_for(get_device("local"), be, FAST), [s.key for s in SPECS])
    assert sorted(by_round[victim.key]) == [0, 1, 2, 3, 4] and be.seen.count(victim.key) == 5
    e = res.lut[victim.key]
    meds = [by_round[victim.key][r].stats.median for r in range(5)]
    # Two slowed rounds of five: the median is one of the three taken at the op's own speed (with three rounds
    # it would have been a slowed one).
    assert e.median == pytest.approx(statistics.median(meds)) and e.median in meds[2:]
    assert statistics.median(meds[:3]) in meds[:2]
    assert len(e.extra["round_ms"]) == 5
    extra = [k for k, rs in by_round.items() if len(rs) > 3]
    assert res.lut.header["extra_rounds"] == {"rounds": 2, "median_over_fastest": 0.08, "ops": len(extra)}
    # Only ops whose median round was over 8% slower than their fastest got them.
    for k, rs in by_round.items():
        base = [rs[r].stats.median for r in range(3)]
        med = statistics.median(base)
        assert (len(rs) == 5) == ((med - min(base)) / med > 0.08), (k, base)


def test_noisy_rounds_resume_after_a_kill_and_are_owed_once(tmp_path, artifact_cache):
    victim = SPECS[2]
    n = len(SPECS)
    cfg = config_for(get_device("local"), Recording(), FAST)
    with Store(tmp_path / "s.sqlite") as st:
        with pytest.raises(Interrupt):  # killed at the first extra measurement
            build_lut(SPACE, get_device("local"), SlowTwice(victim.key, slow=4.0, stop=3 * n), st, FAST, specs=SPECS,
                      rounds=3, guard=None)
        owed = noisy_rounds(st.round_records(cfg, [s.key for s in SPECS]), SPECS, 3, 2)
        assert victim in owed[0] and victim in owed[1]
        be = Recording()
        res = build_lut(SPACE, get_device("local"), be, st, FAST, specs=SPECS, rounds=3, guard=None)
        again = build_lut(SPACE, get_device("local"), Recording(), st, FAST, specs=SPECS, rounds=3, guard=None)
    assert sorted(be.seen) == sorted(s.key for r in owed for s in r)  # no base round taken again
    assert again.measured == 0 and again.lut[victim.key].median == res.lut[victim.key].median
    with pytest.raises(ValueError, match="extra rounds"):
        build_lut(SPACE, get_device("local"), Recording(), Store(tmp_path / "t.sqlite"), FAST, specs=SPECS,
                  extra_rounds=-1)


def test_rounds_must_be_positive(tmp_path):
    with Store(tmp_path / "s.sqlite") as st, pytest.raises(ValueError, match="rounds"):
        build_lut(SPACE, get_device("local"), Recording(), st, FAST, specs=SPECS, rounds=0)


def test_max_seconds_caps_a_slow_op():
    import time

    samples = time_callable(lambda: time.sleep(0.02), Protocol(warmup=0, runs=1000, min_seconds=0,
                                                               max_seconds=0.1))
    assert 3 <= len(samples) <= 8


def test_nan_thresholds_are_rejected_by_the_protocol():
    with pytest.raises(ValueError, match="noise_threshold"):
        Protocol(noise_threshold=math.nan)
    with pytest.raises(ValueError, match="noise_threshold"):
        Protocol(noise_threshold=-1)


def test_store_keeps_rejected_rows_and_checks(tmp_path, artifact_cache):
    guard = DriftGuard(every=4, threshold=1.0, min_threshold=1.0, wait_seconds=0.01, max_wait_seconds=0.05)
    be = Recording(slow=5.0, window=(11, 13))
    with Store(tmp_path / "s.sqlite") as st:
        build_lut(SPACE, get_device("local"), be, st, FAST, specs=SPECS, rounds=1, guard=guard)
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        extras = [json.loads(e) for (e,) in db.execute("SELECT extra FROM measurements WHERE accepted = 0")]
    assert sum("rejected" in e for e in extras) == 4 and sum("drift_check" in e for e in extras) >= 3


# Long enough that the check after the hogged block still finds them running on a loaded host (at 4 s, beside a
# slow suite, the confirming re-timing came after they had stopped).
HOG_SECONDS = 8.0
# A busy loop that says when it is running, then stops by itself.
HOG = ("import sys, time\nend = time.monotonic() + {s}\nprint('go', flush=True)\n"
       "while time.monotonic() < end:\n    pass\n")


class Hogged(Recording):
    """The real backend; just before it measures the ``at``-th op other than ``ref``, real CPU hogs start on the
    CPU the build runs on (and stop by themselves after HOG_SECONDS). Records their window in store (wall) time.

    Three of them, so the build's share of its core drops to a quarter or less, whatever a neighbour on a shared
    machine took of it before (one hog against a neighbour that just left would not move the share)."""

    def __init__(self, cpu: int, ref: str, at: int, n: int = 3) -> None:
        super().__init__()
        self.cpu, self.ref, self.at, self.n, self.procs, self.hog_window = cpu, ref, at, n, [], None

    def measure(self, spec, artifact, protocol):
        import subprocess
        import sys
        import time

        if spec.key != self.ref and sum(k != self.ref for k in self.seen) + 1 == self.at and not self.procs:
            self.procs = [subprocess.Popen([sys.executable, "-c", HOG.format(s=HOG_SECONDS)], stdout=subprocess.PIPE,
                                           text=True, preexec_fn=lambda: os.sched_setaffinity(0, {self.cpu}))
                          for _ in range(self.n)]
            assert all(p.stdout.readline().strip() == "go" for p in self.procs)  # running: the core is shared
            t = time.time()
            self.hog_window = (t, t + HOG_SECONDS)
        return super().measure(spec, artifact, protocol)


def test_drift_guard_catches_a_real_cpu_hog_and_retakes_the_ops_it_slowed(tmp_path, artifact_cache):
    # A heavy op (~8 ms a run, so every run spans the hogs' time slices) is the reference, as in a real space.
    # The wall clock (FAST): a hog that only takes turns on the core slows what a user waits, not the thread's
    # CPU time (thread_cpu builds are not slowed by it, so there is nothing to catch).
    heavy = OpSpec.from_key("conv-in56x56x128-out128-k3-s1")
    specs = [*SPECS, heavy]
    assert reference_op(specs) == heavy
    guard = DriftGuard(every=4, threshold=0.3, wait_seconds=0.25, max_wait_seconds=15.0)
    cpu = sorted(os.sched_getaffinity(0))[0]
    saved = os.sched_getaffinity(0)
    # The hogs start before the 5th light op; the check after its block (a drift that holds) catches them.
    be = Hogged(cpu, heavy.key, at=5)
    os.sched_setaffinity(0, {cpu})
    try:
        with Store(tmp_path / "s.sqlite") as st:
            res = build_lut(SPACE, get_device("local"), be, st, FAST, specs=specs, rounds=1, guard=guard)
            cfg = config_for(get_device("local"), be, FAST)
            checks = st.drift_checks(cfg)
            accepted = {k: rs[0].created for k, rs in st.round_records(cfg, [s.key for s in specs]).items()}
        with sqlite3.connect(tmp_path / "s.sqlite") as db:
            rejected = [(k, c) for k, c, e in db.execute("SELECT key, created, extra FROM measurements "
                                                         "WHERE accepted = 0") if "rejected" in json.loads(e)]
    finally:
        os.sched_setaffinity(0, saved)
        for proc in be.procs:
            proc.kill()
            proc.wait()
    h0, h1 = be.hog_window
    # A check taken while the hog ran saw the reference slowed past the threshold.
    hogged = [c for c in checks if c["drifted"] and c["ratio"] > 1 + guard.threshold]
    assert hogged, [(c["ratio"], c["drifted"]) for c in checks]
    assert res.drift["drifts"] >= 1 and res.drift["remeasured"] >= 1 and not res.drift["rebased"]
    # The ops timed while the hog ran were rejected, and each was measured again once it had stopped: no accepted
    # measurement of the LUT was taken under the hog.
    under = {k for k, c in rejected if h0 <= c <= h1}
    assert under and under <= set(accepted)
    assert all(not (h0 <= c <= h1) for c in accepted.values()), (h0, h1, accepted)
    assert all(accepted[k] > h1 for k in under)
    assert len(res.lut) == len(specs) and res.lut.header["drift_guard"]["remeasured"] >= len(under)
