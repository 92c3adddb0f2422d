"""Calibration: features, fit, round trip through the LUT file and the predictor, held-out discipline."""

from __future__ import annotations

import json
import random

import pytest

from latency_lut.calibration import FEATURES, Calibration, features, fit, from_header
from latency_lut.errors import LUTFormatError
from latency_lut.lut import LUT, Entry, load
from latency_lut.measure import compute_stats
from latency_lut.networks import NetMeasurement, sample_archs
from latency_lut.predict import predict
from latency_lut.spaces import get_space
from latency_lut.validate import compare, cross_validate, folds, summarize

SPACE = get_space("fbnet", 32, 0.25)


def synthetic_lut(device: str = "local", runtime: str = "onnxruntime") -> LUT:
    """A complete LUT of the tiny space whose medians are a deterministic function of each op's cost."""
    header = {
        "device": device, "device_kind": "local", "device_info": {}, "runtime": runtime, "runtime_version": "0",
        "threads": 1, "dtype": "fp32", "unit": "ms", "protocol": {"warmup": 0, "runs": 3, "min_seconds": 0.0},
        "exporter": {}, "space": {**SPACE.describe(), "id": SPACE.id}, "tool_version": "test", "created": "now",
        "complete": True, "calibration": None,
    }
    entries = {}
    for spec in SPACE.unique_specs():
        ms = 0.01 + spec.flops / 2e7
        entries[spec.key] = Entry(spec, compute_stats([0.9 * ms, ms, 1.1 * ms]))
    return LUT(header, entries)


def test_features_skip_identities_and_count_ops():
    lut = synthetic_lut()
    arch = SPACE.parse_arch(["skip"] * SPACE.num_layers)
    specs = SPACE.arch_specs(arch)
    f = features((s, 0.0 if s.is_identity else lut[s.key].median) for s in specs)
    real = [s for s in specs if not s.is_identity]
    assert f["ops"] == len(real) < len(specs)  # identity skips are free and not counted
    assert f["lut_ms"] == pytest.approx(sum(lut[s.key].median for s in real))
    assert f["wparams"] == pytest.approx(sum(s.params for s in real) / 1e6)
    assert f["const"] == 1.0


def _truth(f: dict[str, float]) -> float:
    return 1.08 * f["lut_ms"] + 0.9 * f["wparams"] + 0.002 * f["ops"] + 0.05


def _rows(lut: LUT, n: int, seed: int) -> tuple[list[dict[str, float]], list[float], list[str]]:
    nets = sample_archs(SPACE, n, seed)
    feats = [features((s, lut[s.key].median) for s in net.specs if not s.is_identity) for net in nets]
    return feats, [_truth(f) for f in feats], [net.key for net in nets]


def test_fit_recovers_a_known_linear_truth():
    lut = synthetic_lut()
    feats, ys, keys = _rows(lut, 40, seed=3)
    cal = fit(feats, ys, keys, ridge=1e-9, select=False)  # every feature free: the least squares itself
    for f, y in zip(feats, ys):
        assert cal.apply(f) == pytest.approx(y, rel=1e-4)
    assert cal.fitted_on == tuple(keys)
    assert cal.train["rmspe"] < 1e-4


def test_ridge_shrinks_towards_the_plain_sum():
    lut = synthetic_lut()
    feats, ys, keys = _rows(lut, 10, seed=4)
    cal = fit(feats, ys, keys, ridge=1e6)
    assert cal.coef["lut_ms"] == pytest.approx(1.0, abs=1e-3)
    assert all(abs(cal.coef[k]) < 1e-3 for k in FEATURES if k != "lut_ms")


def test_a_correction_the_held_out_networks_do_not_confirm_is_not_applied():
    """Networks whose plain sums are right up to their noise get the identity (nothing to carry onto other
    families); a systematic effect that held-out networks confirm is fitted."""
    lut = synthetic_lut()
    feats, _, keys = _rows(lut, 20, seed=8)
    rng = random.Random(1)
    noisy = [f["lut_ms"] * (1 + rng.gauss(0, 0.03)) for f in feats]
    cal = fit(feats, noisy, keys)
    assert cal.selected == () and cal.coef == {k: (1.0 if k == "lut_ms" else 0.0) for k in FEATURES}
    free = fit(feats, noisy, keys, select=False)  # the unselected fit moves every coefficient
    assert free.selected is None and all(free.coef[k] != 0.0 for k in FEATURES if k != "lut_ms")

    weights = [f["lut_ms"] + 0.9 * f["wparams"] for f in feats]  # cold weights re-read: confirmed out of sample
    cal = fit(feats, weights, keys)
    assert cal.selected == FEATURES and cal.coef["wparams"] > 0
    assert all(f["lut_ms"] < 0.5 * y and cal.apply(f) == pytest.approx(y, rel=0.1)  # the ridge holds it back a bit
               for f, y in zip(feats, weights))
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back.selected == cal.selected and back.coef == pytest.approx(cal.coef)


def test_fit_needs_two_models():
    with pytest.raises(ValueError):
        fit([{"lut_ms": 1.0, "const": 1.0}], [1.0])


def test_round_trip_through_the_lut_file_and_the_predictor(tmp_path):
    lut = synthetic_lut()
    feats, ys, keys = _rows(lut, 30, seed=5)
    cal = fit(feats, ys, keys)
    lut.header["calibration"] = cal.to_dict()
    path = lut.save(tmp_path / "cal.json")
    assert json.loads(path.read_text())["schema_version"] == 1

    again = load(path)
    loaded = from_header(again.header)
    assert loaded is not None and loaded.coef == pytest.approx(cal.coef) and loaded.fitted_on == tuple(keys)
    arch = SPACE.parse_arch("fbnet_c")
    plain = predict(synthetic_lut(), arch)
    p = predict(again, arch)
    f = features((s, again[s.key].median) for s in SPACE.arch_specs(arch) if not s.is_identity)
    assert p.raw_total_ms == pytest.approx(plain.total_ms)  # the raw sum is kept
    assert p.total_ms == pytest.approx(cal.apply(f))  # and the total is calibrated
    assert p.total_ms != pytest.approx(p.raw_total_ms)
    assert p.p10_ms < p.total_ms < p.p90_ms
    assert p.to_dict()["raw_total_ms"] == pytest.approx(p.raw_total_ms)


def test_malformed_calibration_is_a_clear_error(tmp_path):
    lut = synthetic_lut()
    lut.header["calibration"] = {"method": "magic", "coef": {}}
    with pytest.raises(LUTFormatError, match="calibration"):
        predict(lut, "fbnet_a")
    lut.header["calibration"] = Calibration({"lut_ms": float("nan")}).to_dict()
    with pytest.raises(LUTFormatError, match="lut_ms"):
        predict(lut, "fbnet_a")


def test_cross_validation_never_predicts_a_model_it_was_fitted_on():
    xs = list(range(23))
    ys = [float(x + 1) for x in xs]
    seen: list[tuple[set[int], list[int]]] = []

    def fit_fn(train_x, train_y):
        train = set(train_x)
        seen.append((train, []))
        return lambda x: (seen[-1][1].append(x), -1.0 if x in train else 1.0)[1]

    preds = cross_validate(xs, ys, fit_fn, k=5, seed=7)
    assert preds == [1.0] * len(xs)  # every prediction came from a fit that did not contain that model
    tested = [x for _, t in seen for x in t]
    assert sorted(tested) == xs  # each model predicted exactly once
    fs = folds(23, 5, seed=7)
    assert sorted(i for f in fs for i in f) == xs and all(not set(a) & set(b) for a in fs for b in fs if a is not b)


def test_models_of_the_fitting_set_are_shown_but_not_scored():
    lut = synthetic_lut()
    fit_nets = sample_archs(SPACE, 4, seed=1)  # includes FBNet-A/B/C
    feats = [features((s, lut[s.key].median) for s in n.specs if not s.is_identity) for n in fit_nets]
    cal = fit(feats, [_truth(f) for f in feats], [n.key for n in fit_nets])
    lut.header["calibration"] = cal.to_dict()

    eval_nets = sample_archs(SPACE, 5, seed=2)  # disjoint random models, the same named ones
    rng = random.Random(0)
    measured = {}
    for n in eval_nets:
        m = NetMeasurement(n.key)
        m.rounds = [type("R", (), {"summary": lambda self, v=rng.uniform(0.5, 1): compute_stats([v])})()]
        measured[n.key] = m
    rows = compare(lut, eval_nets, measured)
    fitted = {n.key for n in fit_nets}
    assert [r.held_out for r in rows] == [r.key not in fitted for r in rows]
    assert sum(not r.held_out for r in rows) == 3  # fbnet_a/b/c
    s = summarize(rows)
    assert s["held_out"] == 5 and s["excluded_fitted"] == 3
    assert s["accuracy"]["n"] == 5


def test_batch_and_dnas_tables_apply_the_same_calibration():
    import numpy as np
    import torch

    from latency_lut.dnas import LatencyTable
    from latency_lut.predict import predict_batch

    lut = synthetic_lut()
    feats, ys, keys = _rows(lut, 30, seed=7)
    lut.header["calibration"] = fit(feats, ys, keys).to_dict()
    rng = np.random.default_rng(0)
    archs = rng.integers(0, SPACE.num_candidates, size=(20, SPACE.num_layers))
    batch = predict_batch(lut, archs)
    single = [predict(lut, list(map(int, a))).total_ms for a in archs]
    assert batch == pytest.approx(single)
    assert batch != pytest.approx([predict(synthetic_lut(), list(map(int, a))).total_ms for a in archs])
    onehot = torch.nn.functional.one_hot(torch.from_numpy(archs[0]), SPACE.num_candidates).double()
    assert float(LatencyTable.from_lut(lut).expected(onehot)) == pytest.approx(single[0])
