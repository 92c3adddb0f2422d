"""fbnet-lut validate: end to end through the CLI on a tiny space, per-model failures, and the bad inputs."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
import statistics
from pathlib import Path

import pytest
from conftest import FAST, cli_env, run_cli

from latency_lut.backends.base import Backend
from latency_lut.devices import get_device
from latency_lut.errors import ValidationError
from latency_lut.lut import LUT, Entry, load
from latency_lut.measure import RunResult, compute_stats
from latency_lut.networks import NET_PREFIX, NetworkSpec, sample_archs
from latency_lut.spaces import get_space
from latency_lut.validate import run_validation

TINY = ["--resolution", "32", "--width", "0.25"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, artifact_cache: Path) -> tuple[Path, dict[str, str]]:
    """A tiny ONNX Runtime LUT built once for this module, with its own store."""
    d = tmp_path_factory.mktemp("validate")
    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(d / "store.sqlite"))
    run_cli("build", *TINY, "-o", "tiny.json", "-q", *FAST, cwd=d, env=env, check=True)
    return d, env


def _finite_positive(x: float | None) -> bool:
    return x is not None and math.isfinite(x) and x > 0


def test_validate_then_calibrate_then_held_out_check(tiny):
    d, env = tiny
    proc = run_cli("validate", "--lut", "tiny.json", "--n", "3", "--rounds", "2", "--seed", "5", "--calibrate",
                   "--folds", "3", "--csv", "--plot", "v.png", "--json", "-q", cwd=d, env=env, check=True)
    out = json.loads(proc.stdout)
    rows = out["rows"]
    assert [r["label"] for r in rows][-3:] == ["fbnet_a", "fbnet_b", "fbnet_c"] and len(rows) == 6
    for r in rows:
        assert r["status"] == "ok" and r["key"].startswith(NET_PREFIX)
        assert _finite_positive(r["measured_ms"]) and _finite_positive(r["plain_ms"]) and r["rounds"] == 2
        assert r["noise"] >= 0 and math.isfinite(r["cv_ms"])
    s = out["summary"]
    assert s["measured"] == 6 and s["failed"] == [] and s["plain_sum"]["n"] == 6
    assert set(s["calibration_fit"]) >= {"calibrated_cv", "flops_fit_cv", "plain_sum", "folds"}
    assert s["noise"]["median"] >= 0

    # CSV (default path beside the LUT) and PNG written; summary and calibration in the LUT header.
    with open(d / "tiny-validation.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    assert (d / "v.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lut = load(d / "tiny.json")
    assert lut.header["validation"]["measured"] == 6 and lut.header["calibration"]["method"]
    assert len(lut.header["calibration"]["fitted_on"]) == 6

    # Whole-model measurements are in the store, every round, in their own key space.
    with sqlite3.connect(d / "store.sqlite") as db:
        n = db.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM measurements WHERE key LIKE 'net-%'").fetchone()
    assert n == (12, 6)

    # A second run on other random models scores them with the calibration, but not FBNet-A/B/C (fitted on).
    proc = run_cli("validate", "--lut", "tiny.json", "--n", "2", "--rounds", "1", "--seed", "6", "-q",
                   cwd=d, env=env, check=True)
    assert "calibrated (held out)" in proc.stdout and "3 model(s) the calibration was fitted on" in proc.stdout
    lut = load(d / "tiny.json")
    v = lut.header["validation"]
    assert v["predictor"] == "calibrated" and v["held_out"] == 2 and v["excluded_fitted"] == 3

    # One round has no spread: --json stays strict JSON (noise null, no NaN token).
    proc = run_cli("validate", "--lut", "tiny.json", "--n", "2", "--rounds", "1", "--seed", "7", "--json",
                   cwd=d, env=env, check=True)
    doc = json.loads(proc.stdout, parse_constant=lambda tok: pytest.fail(f"non-JSON token {tok} in --json output"))
    assert len(doc["rows"]) == 5 and all(r["noise"] is None and r["measured_ms"] > 0 for r in doc["rows"])


def test_bad_inputs_are_one_line_errors(tiny, tmp_path):
    d, env = tiny
    proc = run_cli("validate", "--lut", str(d / "tiny.json"), "--n", "1", cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "'--n': 1 is not in the range 2<=x" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr

    other = tmp_path / "bench-box.yaml"
    other.write_text("name: bench-box\nkind: local\nruntime: onnxruntime\n")
    proc = run_cli("validate", "--device", str(other), "--lut", str(d / "tiny.json"), cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "built on device 'local', not 'bench-box'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

    torch_only = tmp_path / "local.yaml"
    torch_only.write_text("name: local\nkind: local\nruntime: torch\nruntimes: [torch]\n")
    proc = run_cli("validate", "--device", str(torch_only), "--lut", str(d / "tiny.json"), cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "runtime 'onnxruntime'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# ---- per-model failures, without a runtime -----------------------------------------------------------------
SPACE = get_space("fbnet", 32, 0.25)


def _lut() -> LUT:
    header = {"device": "local", "device_kind": "local", "device_info": {}, "runtime": "torch",
              "runtime_version": "0", "threads": 1, "dtype": "fp32", "unit": "ms",
              "protocol": {"warmup": 0, "runs": 3, "min_seconds": 0.0}, "exporter": {},
              "space": {**SPACE.describe(), "id": SPACE.id}, "tool_version": "t", "created": "now",
              "complete": True, "calibration": None}
    return LUT(header, {s.key: Entry(s, compute_stats([0.01 + s.flops / 1e7])) for s in SPACE.unique_specs()})


class FakeBackend(Backend):
    """Times nothing: returns a latency derived from FLOPs, and refuses one chosen model like a broken runtime."""

    runtime, artifact_format = "torch", None

    def __init__(self, broken: str) -> None:
        super().__init__(threads=1)
        self.broken = broken
        self.calls: list[str] = []

    def runtime_version(self) -> str:
        return "fake"

    def measure(self, spec: NetworkSpec, artifact: Path | None, protocol) -> RunResult:
        self.calls.append(spec.key)
        if spec.key == self.broken:
            raise RuntimeError("kernel not implemented: ChannelShuffle\nsecond line")
        return RunResult([0.02 + spec.flops / 1e7] * 3)


def test_a_model_that_fails_is_reported_and_the_run_continues():
    nets = sample_archs(SPACE, 4, seed=9)
    backend = FakeBackend(broken=nets[1].key)
    rep = run_validation(_lut(), get_device("local"), backend, n=4, seed=9, rounds=3)
    bad = [r for r in rep.rows if not r.ok]
    assert [r.key for r in bad] == [nets[1].key]
    assert "kernel not implemented" in bad[0].status and "\n" not in bad[0].status
    assert backend.calls.count(nets[1].key) == 1  # not retried in later rounds
    assert all(backend.calls.count(n.key) == 3 for n in nets if n.key != nets[1].key)  # the rest: every round
    assert rep.summary["measured"] == 6 and len(rep.summary["failed"]) == 1
    assert rep.summary["plain_sum"]["n"] == 6


def test_sample_count_below_two_is_rejected_in_the_api():
    with pytest.raises(ValidationError, match="at least 2"):
        run_validation(_lut(), get_device("local"), FakeBackend(""), n=1)


def test_network_keys_are_stable_and_distinct_from_op_keys():
    a = NetworkSpec(SPACE, SPACE.parse_arch("fbnet_a"), "fbnet_a")
    assert a.key == NetworkSpec(SPACE, SPACE.parse_arch("fbnet_a")).key
    assert a.key.startswith(f"net-{SPACE.id}-") and a.key.endswith("-h1504")
    assert a.input_shape == (1, 3, 32, 32)
    assert NetworkSpec.from_dict(a.to_dict()).key == a.key
    nets = sample_archs(SPACE, 10, seed=1)
    assert nets == sample_archs(SPACE, 10, seed=1) and len({n.key for n in nets}) == 13


def test_a_model_the_lut_cannot_predict_is_reported_and_not_measured():
    lut = _lut()
    for spec in SPACE.tail_specs(1504):  # FBNet-A's narrower head: only FBNet-A needs these
        lut.entries.pop(spec.key, None)
    backend = FakeBackend(broken="")
    rep = run_validation(lut, get_device("local"), backend, n=2, seed=3, rounds=2)
    bad = [r for r in rep.rows if not r.ok]
    assert [r.label for r in bad] == ["fbnet_a"] and bad[0].status.startswith("prediction failed")
    assert bad[0].key not in backend.calls
    assert rep.summary["measured"] == 4


def test_thread_cpu_clock_is_opt_in_and_keeps_wall_clock_hashes():
    from latency_lut.measure import Protocol, time_callable

    assert "clock" not in Protocol().to_dict()  # wall-clock builds keep the settings hash they always had
    p = Protocol(runs=3, warmup=0, min_seconds=0, clock="thread_cpu")
    assert Protocol.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="clock"):
        Protocol(clock="sundial")
    # CPU time of a sleeping thread is ~0 although the wall time is not: preemption cannot inflate this clock.
    import time

    samples = time_callable(lambda: time.sleep(0.01), p)
    assert len(samples) == 3 and all(0 <= s < 5 for s in samples)


class Killed(BaseException):  # like KeyboardInterrupt: not a per-model failure
    pass


def test_a_killed_validation_resumes_from_the_store(tmp_path):
    """Each round is stored as it is taken; a rerun measures only the rounds the store lacks."""
    from latency_lut.store import Store

    class Dies(FakeBackend):
        def measure(self, spec, artifact, protocol):
            if len(self.calls) == 7:
                raise Killed
            return super().measure(spec, artifact, protocol)

    with Store(tmp_path / "s.sqlite") as st:
        first = Dies(broken="")
        with pytest.raises(Killed):  # 3 random + FBNet-A/B/C = 6 models x 3 rounds; killed inside round 2
            run_validation(_lut(), get_device("local"), first, n=3, seed=4, rounds=3, store=st)
        again = FakeBackend(broken="")
        rep = run_validation(_lut(), get_device("local"), again, n=3, seed=4, rounds=3, store=st)
    # The LUT's reference op is re-timed between the networks (the host factor); of the networks, only the rounds
    # the store lacked are measured again.
    nets = [[k for k in b.calls if k.startswith(NET_PREFIX)] for b in (first, again)]
    assert 0 < len(nets[0]) < 18 and len(nets[1]) == 18 - len(nets[0]) and rep.summary["measured"] == 6
    assert all(r.rounds == 3 for r in rep.rows) and rep.summary["host_observations"] >= 1
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        per = db.execute("SELECT key, json_extract(extra, '$.round'), COUNT(*) FROM measurements WHERE accepted = 1 "
                         "GROUP BY 1, 2").fetchall()
    assert len(per) == 18 and all(n == 1 for *_, n in per)


def test_no_calibration_is_fitted_on_networks_a_busy_host_scattered():
    from latency_lut.networks import NetMeasurement
    from latency_lut.validate import MAX_CALIBRATION_NOISE, fit_into_header

    nets = sample_archs(SPACE, 4, seed=2)
    quiet = {n.key: NetMeasurement(n.key, [RunResult([1.0 + 0.01 * r] * 3) for r in range(3)]) for n in nets}
    busy = {n.key: NetMeasurement(n.key, [RunResult([x] * 3) for x in (1.0, 1.6, 0.7)]) for n in nets}
    lut = _lut()
    cal, report, _ = fit_into_header(lut, "local", nets, busy, 3, 0, {"by": "test"})
    assert cal is None and "too busy" in report["refused"] and report["noise"]["median"] > MAX_CALIBRATION_NOISE
    assert lut.header["calibration"] is None
    cal, report, _ = fit_into_header(lut, "local", nets, quiet, 3, 0, {"by": "test"})
    assert cal is not None and lut.header["calibration"]["device"] == "local"
    assert report["calibrated_cv"]["n"] == len(nets)


def test_a_killed_validate_models_resumes_from_the_store(tmp_path):
    """Any models (validate --module) take the build's per-round path: each round is committed as it is taken,
    and a rerun measures only the rounds the store lacks."""
    from latency_lut.models import ModelUnit
    from latency_lut.store import Store
    from latency_lut.validate import validate_models

    class Models(FakeBackend):
        def measure(self, spec, artifact, protocol):
            if len(self.calls) == int(self.broken or 99):
                raise Killed
            self.calls.append(spec.key)
            return RunResult([0.5 + 0.1 * len(self.calls)] * 3)

    units = [ModelUnit(a, (1, 3, 32, 32), module=SPACE.build_model(a)) for a in ("fbnet_a", "fbnet_c")]
    with Store(tmp_path / "s.sqlite") as st:
        first = Models(broken="4")
        with pytest.raises(Killed):  # 2 models x 3 rounds, killed in round 2
            validate_models(_lut(), get_device("local"), first, units, rounds=3, store=st)
        again = Models(broken="")
        rep = validate_models(_lut(), get_device("local"), again, units, rounds=3, store=st)
    # Between the models the LUT's reference op is re-timed (the host factor); only the model rounds the store
    # lacked are measured again.
    taken = [k for k in first.calls if k.startswith("model-")]
    retaken = [k for k in again.calls if k.startswith("model-")]
    assert 0 < len(taken) < 6 and len(retaken) == 6 - len(taken) and all(r.ok and r.rounds == 3 for r in rep.rows)
    assert {r.key for r in rep.rows} == {u.key for u in units}
    assert set(again.calls) - set(retaken) == {"ir-in16x16x8-out8-k5-e6-g1-s1"}  # the reference
    assert rep.summary["host_observations"] >= 1
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        per = db.execute("SELECT key, json_extract(extra, '$.round'), COUNT(*), json_extract(extra, '$.by') FROM "
                         "measurements WHERE accepted = 1 GROUP BY 1, 2").fetchall()
    assert len(per) == 6 and all(n == 1 and by == "validate" for *_, n, by in per)


def test_the_first_round_stops_at_the_deadline(artifact_cache):
    """A budget holds even when the estimate that chose the models was short: the first round stops at the
    deadline once two models are measured, and the rest are recorded as not measured (no later round starts)."""
    import time

    from latency_lut.backends import create_backend
    from latency_lut.measure import Protocol
    from latency_lut.networks import export_networks, measure_networks

    nets = sample_archs(get_space("fbnet", 32, 0.25), 4, 3, named=False)
    arts = export_networks(nets, "onnx")
    be = create_backend(get_device("local"), "onnxruntime")
    res = measure_networks(be, nets, arts, Protocol(warmup=0, runs=3, min_seconds=0, retries=0), rounds=3,
                           deadline=time.perf_counter())
    measured = [m for m in res.values() if m.ok]
    assert len(measured) == 2 and all(len(m.rounds) == 1 for m in measured)
    assert all("time budget ran out" in m.error for m in res.values() if not m.ok)


def test_the_calibration_pass_fits_networks_on_the_machine_state_of_the_ops(tmp_path, artifact_cache):
    """A machine 1.5x slower during the pass than during the build (a neighbour's load): the pass's observations
    of the reference see it, and the networks are fitted divided by it, not as a 50% gap between ops and nets."""
    from conftest import SlowedBackend

    from latency_lut.build import build_lut, config_for
    from latency_lut.drift import DriftGuard
    from latency_lut.measure import Protocol
    from latency_lut.ops import OpSpec
    from latency_lut.store import Store
    from latency_lut.validate import calibration_pass

    space, dev, be = get_space("fbnet", 32, 0.25), get_device("local"), SlowedBackend()
    protocol = Protocol(warmup=1, runs=8, min_seconds=0, retries=0)
    with Store(tmp_path / "s.sqlite") as st:
        # A heavy op in the build makes the guard's reference steady (~8 ms a run), as a 224 space's heaviest is.
        heavy = OpSpec.from_key("conv-in56x56x128-out128-k3-s1")
        res = build_lut(space, dev, be, st, protocol, rounds=1, guard=DriftGuard(), extra_rounds=0,
                        specs=[*space.unique_specs(), heavy])
        assert res.watch.ref == heavy
        be.slow = 1.5
        p = calibration_pass(res.lut, dev, be, st, budget_s=1000, max_models=3, rounds=2, folds_k=3,
                             watch=res.watch, max_noise=10)
        raw = {k: statistics.median(rec.stats.median for rec in rs.values())
               for k, rs in st.round_records(config_for(dev, be, protocol), [r.key for r in p.rows]).items()}
    src = res.lut.header["calibration"]["source"]
    assert src["observations"] >= 4 and 1.2 < src["host_factor"] < 1.9, src
    for row in p.rows:
        assert row.measured_ms == pytest.approx(raw[row.key] / src["host_factor"], rel=1e-6)


def test_validate_calibrate_fits_networks_on_the_machine_state_of_the_lut(tmp_path, artifact_cache):
    """``validate --calibrate`` on a machine 1.5x slower than during the build: it re-times the LUT's own
    reference between the networks, against the reference's LUT entry, and fits the networks divided by that
    factor; the report's rows stay as measured, and a rerun that measures nothing finds the same factor."""
    from conftest import SlowedBackend

    from latency_lut.build import build_lut, config_for
    from latency_lut.drift import DriftGuard
    from latency_lut.measure import Protocol
    from latency_lut.ops import OpSpec
    from latency_lut.store import Store

    space, dev, be = get_space("fbnet", 32, 0.25), get_device("local"), SlowedBackend()
    protocol = Protocol(warmup=1, runs=8, min_seconds=0, retries=0)
    heavy = OpSpec.from_key("conv-in56x56x128-out128-k3-s1")  # a steady reference (~8 ms a run)
    with Store(tmp_path / "s.sqlite") as st:
        lut = build_lut(space, dev, be, st, protocol, rounds=1, guard=DriftGuard(), extra_rounds=0,
                        specs=[*space.unique_specs(), heavy]).lut
        be.slow = 1.5
        rep = run_validation(lut, dev, be, n=5, seed=3, rounds=2, store=st, do_calibrate=True, folds_k=3)
        again = run_validation(lut, dev, be, n=5, seed=3, rounds=2, store=st, do_calibrate=True, folds_k=3)
        raw = {k: statistics.median(rec.stats.median for rec in rs.values())
               for k, rs in st.round_records(config_for(dev, be, protocol), [r.key for r in rep.rows]).items()}
    src = rep.calibration.source
    assert src["observations"] >= 3 and 1.2 < src["host_factor"] < 1.9, src
    assert again.calibration.source["host_factor"] == pytest.approx(src["host_factor"])
    # Fitted on the corrected networks: the fit's lut_ms coefficient stays near 1, not near the 1.5 of the load.
    assert rep.calibration.coef["lut_ms"] < 1.25, rep.calibration.coef
    ok = [r for r in rep.rows if r.ok]
    assert len(ok) >= 3 and all(r.measured_ms == pytest.approx(raw[r.key], rel=1e-6) for r in ok)  # as measured
