"""The drift guard: its decisions on a reference's timings (pure), its band, and a watched pass of whole networks
on the real ONNX Runtime backend."""

from __future__ import annotations

import math
import random

import pytest
from conftest import SlowedBackend

from latency_lut.build import config_for
from latency_lut.devices import get_device
from latency_lut.drift import DriftGuard, DriftMonitor, Watch, host_factor
from latency_lut.export import export_many
from latency_lut.measure import Protocol, RunResult
from latency_lut.networks import export_networks, measure_stored, sample_archs
from latency_lut.ops import OpSpec
from latency_lut.spaces import get_space
from latency_lut.store import Store


def r(ms: float, t: float | None = None) -> RunResult:
    return RunResult([ms] * 5, None, {} if t is None else {"temperature_c": t})


def test_drift_monitor_counts_temperature_and_recovers_from_a_slow_start():
    g = DriftGuard(threshold=0.10, temp_rise_c=5.0)
    m = DriftMonitor(g)

    assert not m.check(r(1.0, 40.0)).drifted  # baseline
    assert not m.check(r(1.05, 41.0)).drifted
    hot = m.check(r(1.02, 46.5))  # same speed, but the phone heated up past the allowed rise
    assert hot.drifted and "temperature" in hot.reason
    assert m.judge(r(1.3, 40.0)).drifted and m.baseline_ms == pytest.approx(1.02)  # judging takes nothing in
    slow = m.check(r(1.3, 40.0))
    assert slow.drifted and "reference +" in slow.reason
    # The baseline is the median of the scheduled checks, this slow one too: one burst does not move it far.
    assert m.baseline_ms == pytest.approx(1.035)
    # A re-timing while waiting for the reference to come back samples the same event: not taken in.
    assert m.check(r(1.3), scheduled=False).drifted and m.baseline_ms == pytest.approx(1.035)
    fast = m.check(r(0.5))  # the baseline was taken under load: drift, and the baseline restarts there
    assert fast.drifted and m.baseline_ms == 0.5 and not m.check(r(0.52)).drifted
    # A load that outlasts the longest wait: the last wait check re-bases there, so the blocks after it are judged
    # against the loaded state (and the load's end is a drift again, which restarts the baseline).
    assert m.check(r(1.0), scheduled=False).drifted and m.baseline_ms == pytest.approx(0.51)
    last = m.check(r(1.0), rebase=True, scheduled=False)
    assert last.drifted and last.rebased and "re-based" in last.reason and m.baseline_ms == 1.0
    assert not m.check(r(1.04)).drifted and m.check(r(0.5)).drifted and m.baseline_ms == 0.5
    assert not m.check(r(0.5), rebase=True).rebased  # a good check is never a re-base


def test_a_steady_background_load_is_no_drift_a_step_on_top_of_it_is():
    m = DriftMonitor(DriftGuard(threshold=0.20))

    m.check(r(1.0))  # a quiet moment at the start
    # Then a busy shared host: the reference scatters around +20% for the rest of the build.
    busy = [1.25, 1.1, 1.3, 1.15, 1.22, 1.18, 1.28, 1.12, 1.2, 1.24]
    drifted = [m.check(r(x)).drifted for x in busy]
    assert sum(drifted) <= 2 and not any(drifted[4:])  # the baseline follows the host's typical state
    assert m.check(r(1.8)).drifted  # a hog on top of it still is a drift


@pytest.mark.parametrize("kw", [dict(every=0), dict(threshold=-0.1), dict(threshold=math.nan),
                                dict(temp_rise_c=math.inf), dict(min_threshold=0), dict(scatter_k=-1),
                                dict(min_checks=0)])
def test_drift_guard_settings_are_checked(kw):
    with pytest.raises(ValueError, match="drift guard"):
        DriftGuard(**kw)


def test_the_band_narrows_to_a_quiet_references_scatter_and_widens_with_a_busy_one():
    g = DriftGuard(threshold=0.20, min_threshold=0.06, scatter_k=3.0, min_checks=5)  # explicit, not the defaults
    rng = random.Random(1)
    quiet = DriftMonitor(g)
    for _ in range(12):  # a quiet host: the reference within +-1.5%
        quiet.check(r(1.0 + rng.uniform(-0.015, 0.015)))
    assert quiet.threshold == pytest.approx(0.06)  # 3x a ~0.7% scatter is under the floor
    step = quiet.judge(r(1.12))  # a neighbour's burst: every op 12% slower
    assert step.drifted and step.threshold == pytest.approx(0.06) and "+12%" in step.reason
    busy = DriftMonitor(g)
    for _ in range(12):  # a busy shared host: the reference scatters by +-15%
        busy.check(r(1.0 + rng.uniform(-0.15, 0.15)))
    assert busy.threshold == pytest.approx(0.20)  # never wider than the threshold
    assert not busy.judge(r(1.12)).drifted and busy.judge(r(1.5)).drifted
    fresh = DriftMonitor(g)
    for x in (1.0, 1.0, 1.0, 1.0):  # fewer than min_checks deviations: the full threshold
        fresh.check(r(x))
    assert fresh.threshold == 0.20 and not fresh.judge(r(1.12)).drifted


def quiet_start() -> DriftMonitor:
    """A monitor after 8 identical checks: its band is the floor."""
    m = DriftMonitor(DriftGuard(threshold=0.20))
    for _ in range(8):
        m.check(r(1.0))
    assert m.threshold == pytest.approx(0.08)
    return m


def test_a_host_that_turns_busy_widens_the_band_instead_of_drifting_at_every_check():
    m = quiet_start()
    rng = random.Random(2)
    drifted = [m.check(r(1.0 + rng.uniform(-0.12, 0.12)), rebase=True).drifted for _ in range(30)]
    # The drifted checks count in the scatter, the quiet start drops out of its window: the band opens up and the
    # checks pass again.
    assert m.threshold > 0.12 and sum(drifted[15:]) <= 3, (m.threshold, drifted)


def test_a_watched_network_pass_observes_the_reference_between_models(tmp_path, artifact_cache):
    space = get_space("fbnet", 32, 0.25)
    nets = sample_archs(space, 3, seed=5)  # 3 sampled, then FBNet-A/B/C
    # A heavy reference (~8 ms a run), as the heaviest op of a 224 space is: the tiny space's own one (0.03 ms)
    # moves by a third with what ran before it.
    ref = OpSpec.from_key("conv-in56x56x128-out128-k3-s1")
    protocol = Protocol(warmup=2, runs=20, min_seconds=0, retries=0)
    be = SlowedBackend()
    arts = export_networks(nets, "onnx")
    ref_art = export_many([ref], "onnx")[ref.key]
    with Store(tmp_path / "s.sqlite") as st:
        config = config_for(get_device("local"), be, protocol)
        watch = Watch(DriftGuard(), be, ref, ref_art, protocol, st, st.start_session(config, {}, "test"))
        for _ in range(3):
            watch.check(0)  # the ops' baseline
        base = watch.monitor.baseline_ms
        # The same pass twice, as the machine ran the ops and then 1.5x slower (a neighbour's load).
        got = measure_stored(be, nets, arts, protocol, rounds=2, store=st, config=config, tag="cal-a",
                             watch=watch)
        start = len(be.seen)
        be.slow = 1.5
        # rounds 0-1 are reused from the store, 2-3 taken under the load
        measure_stored(be, nets, arts, protocol, rounds=4, store=st, config=config, tag="cal-b", watch=watch)
        checks = st.drift_checks(config)
    # Per round: 4 models, an observation, 2 models, an observation (the round's end).
    calls = be.seen[start:]
    assert [i for i, k in enumerate(calls) if k == ref.key] == [4, 7, 12, 15]
    seen = [c for c in checks if c.get("observed")]
    assert len(seen) == 8 and {c["by"] for c in seen} == {"cal-a", "cal-b"}
    # Observations leave the build's baseline alone, and see the slower machine.
    assert watch.monitor.baseline_ms == base and host_factor(checks, "other") is None
    ratio = host_factor(checks, "cal-b") / host_factor(checks, "cal-a")
    assert 1.2 < ratio < 1.9, ratio
    assert all(got[n.key].ok and len(got[n.key].rounds) == 2 for n in nets)


def test_re_timings_while_waiting_widen_the_band_too():
    m = quiet_start()
    # A drift, then a host that stays noisy while the build waits for the reference to come back: the waiting
    # re-timings leave the baseline alone but count in the scatter, so the wait is not held to the quiet band.
    rng = random.Random(3)
    for _ in range(12):
        m.check(r(1.0 + rng.uniform(0.15, 0.4)), scheduled=False)
    assert m.threshold == pytest.approx(0.20) and m.baseline_ms == pytest.approx(1.0)
