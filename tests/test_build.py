"""build: interleaved rounds, resume mid-round, the drift guard (with temperature), the closing calibration pass."""

from __future__ import annotations

import json
import math
import sqlite3
import statistics

import pytest

from latency_lut.backends import create_backend
from latency_lut.build import build_lut, config_for, reference_op
from latency_lut.devices import get_device
from latency_lut.measure import DriftGuard, DriftMonitor, Protocol, RunResult, time_callable
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
        res = build_lut(SPACE, get_device("local"), be, st, FAST, specs=SPECS, rounds=3, guard=None)
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
    with Store(tmp_path / "s.sqlite") as st:
        lut = build_lut(SPACE, get_device("local"), be, st, Protocol(warmup=1, runs=10, min_seconds=0, retries=0),
                        specs=specs, rounds=2, guard=None).lut
    rel = lut.header["reliability"]
    assert rel["archs"] == 200 and -1 <= rel["kendall_tau"] <= 1 and rel["kendall_tau"] > 0.2
    assert 0 <= rel["rms_diff"] < 1 and lut.header["complete"]


def test_a_build_interrupted_mid_round_resumes_there(tmp_path, artifact_cache):
    n = len(SPECS)
    with Store(tmp_path / "s.sqlite") as st:
        with pytest.raises(Interrupt):
            build_lut(SPACE, get_device("local"), Recording(stop=n + 3), st, FAST, specs=SPECS, guard=None)
        be = Recording()
        res = build_lut(SPACE, get_device("local"), be, st, FAST, specs=SPECS, guard=None)
    assert len(be.seen) == 3 * n - (n + 3)  # only the missing op-rounds, round 1 onwards
    assert sorted(be.seen[:n - 3]) == sorted(set(be.seen[:n - 3]))  # the rest of round 1 first, each op once
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        per = db.execute("SELECT key, json_extract(extra, '$.round'), COUNT(*) FROM measurements WHERE accepted = 1 "
                         "GROUP BY 1, 2").fetchall()
    assert len(per) == 3 * n and all(c == 1 for *_, c in per)
    assert len(res.lut) == n


def test_drift_guard_retakes_the_ops_since_the_last_good_check(tmp_path, artifact_cache):
    guard = DriftGuard(every=4, threshold=1.0, wait_seconds=0.01, max_wait_seconds=0.05)
    ref = reference_op(SPECS)
    # Calls: 1 = baseline check; ops 2-5; check 6 (good); ops 7-10; check 11 slowed 5x: ops 7-10 are re-taken.
    be = Recording(slow=5.0, window=(11, 12))
    with Store(tmp_path / "s.sqlite") as st:
        res = build_lut(SPACE, get_device("local"), be, st, FAST, specs=SPECS, rounds=1, guard=guard)
        cfg = config_for(get_device("local"), be, FAST)
        checks = st.drift_checks(cfg)
        rejected = st.rejected_count(cfg)
    assert be.seen[0] == ref.key and be.seen[5] == ref.key and be.seen[10] == ref.key
    retaken = be.seen[6:10]
    assert res.drift["drifts"] >= 1 and res.drift["remeasured"] == 4 == rejected
    assert all(be.seen.count(k) >= 2 + (k == ref.key) for k in retaken)
    assert checks[2]["drifted"] and checks[2]["ratio"] > 3 and not checks[1]["drifted"]
    hdr = res.lut.header["drift_guard"]
    assert hdr["drifts"] == res.drift["drifts"] and hdr["remeasured"] == 4 and hdr["every"] == 4
    assert len(res.lut) == len(SPECS)


def test_drift_monitor_counts_temperature_and_recovers_from_a_slow_start():
    g = DriftGuard(threshold=0.10, temp_rise_c=5.0)
    m = DriftMonitor(g)

    def r(ms: float, t: float | None = None) -> RunResult:
        return RunResult([ms] * 5, None, {} if t is None else {"temperature_c": t})

    assert not m.check(r(1.0, 40.0)).drifted  # baseline
    assert not m.check(r(1.05, 41.0)).drifted
    hot = m.check(r(1.02, 46.5))  # same speed, but the phone heated up past the allowed rise
    assert hot.drifted and "temperature" in hot.reason
    slow = m.check(r(1.3, 40.0))
    assert slow.drifted and "reference +" in slow.reason and m.baseline_ms == pytest.approx(1.025)
    fast = m.check(r(0.5))  # the baseline was taken under load: drift, and the baseline restarts there
    assert fast.drifted and m.baseline_ms == 0.5 and not m.check(r(0.52)).drifted


@pytest.mark.parametrize("kw", [dict(every=0), dict(threshold=-0.1), dict(threshold=math.nan),
                                dict(temp_rise_c=math.inf)])
def test_drift_guard_settings_are_checked(kw):
    with pytest.raises(ValueError, match="drift guard"):
        DriftGuard(**kw)


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
    guard = DriftGuard(every=4, threshold=1.0, wait_seconds=0.01, max_wait_seconds=0.05)
    be = Recording(slow=5.0, window=(11, 12))
    with Store(tmp_path / "s.sqlite") as st:
        build_lut(SPACE, get_device("local"), be, st, FAST, specs=SPECS, rounds=1, guard=guard)
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        extras = [json.loads(e) for (e,) in db.execute("SELECT extra FROM measurements WHERE accepted = 0")]
    assert sum("rejected" in e for e in extras) == 4 and sum("drift_check" in e for e in extras) >= 3
