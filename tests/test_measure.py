import numpy as np
import pytest

from latency_lut.measure import Protocol, RunResult, compute_stats, measure_gated, time_callable


def test_stats_match_numpy():
    rng = np.random.default_rng(1)
    xs = list(rng.lognormal(0, 0.3, 257))
    s = compute_stats(xs)
    for name, q in [("p10", 10), ("p25", 25), ("median", 50), ("p75", 75), ("p90", 90)]:
        assert getattr(s, name) == pytest.approx(np.percentile(xs, q))
    assert s.mean == pytest.approx(np.mean(xs))
    assert s.std == pytest.approx(np.std(xs, ddof=1))
    assert s.cv == pytest.approx(s.std / s.mean)
    assert (s.min, s.max, s.count) == (min(xs), max(xs), 257)


def test_noise_ignores_a_preempted_tail_but_not_a_spread_bulk():
    steady = [1.0] * 90 + [5.0] * 10  # 10% preempted runs
    assert compute_stats(steady).noise == 0.0
    assert compute_stats(steady).cv > 0.5
    bimodal = [1.0] * 50 + [1.5] * 50
    assert compute_stats(bimodal).noise > 0.1


def test_time_callable_honours_runs_and_min_seconds():
    calls = []
    samples = time_callable(lambda: calls.append(1), Protocol(warmup=4, runs=7, min_seconds=0))
    assert len(samples) == 7 and len(calls) == 11
    assert all(s >= 0 for s in samples)
    timed = time_callable(lambda: None, Protocol(warmup=0, runs=3, min_seconds=0.02, max_runs=10**7))
    assert len(timed) > 3


def test_gate_remeasures_noisy_ops_and_flags_when_all_attempts_are_noisy():
    noisy = RunResult([1.0] * 50 + [2.0] * 50)
    calm = RunResult([1.0] * 100)
    seq = iter([noisy, calm])
    res = measure_gated(lambda: next(seq), Protocol(retries=2))
    assert len(res.attempts) == 2 and res.best is calm and not res.flagged

    res = measure_gated(lambda: noisy, Protocol(retries=2))
    assert len(res.attempts) == 3 and res.flagged

    res = measure_gated(lambda: noisy, Protocol(retries=0))
    assert len(res.attempts) == 1 and res.flagged


def test_protocol_round_trip_and_validation():
    p = Protocol(warmup=2, runs=10, noise_threshold=0.05)
    assert Protocol.from_dict(p.to_dict() | {"unknown": 1}) == p
    with pytest.raises(ValueError):
        Protocol(runs=1)
