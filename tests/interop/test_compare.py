"""compare: rank agreement, per-op ratios and rank shifts, checked against brute force on small samples."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from latency_lut.interop import import_lut
from latency_lut.interop.compare import CompareError, compare, scatter_png
from latency_lut.lut import LUT, Entry
from latency_lut.predict import predict
from latency_lut.spaces import get_space
from latency_lut.synthetic import constant_stats, synthetic_lut

DATA = Path(__file__).parent / "data" / "hwnasbench_fbnet"


def scaled(lut: LUT, f) -> LUT:
    """A copy of ``lut`` with every latency mapped through ``f(key, ms)``."""
    entries = {k: Entry(e.spec, constant_stats(f(k, e.median))) for k, e in lut.entries.items()}
    return LUT(dict(lut.header), entries)


def brute_tau_b(x, y) -> float:
    conc = disc = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tx += 1
        elif dy == 0:
            ty += 1
        elif dx == dy:
            conc += 1
        else:
            disc += 1
    return (conc - disc) / np.sqrt((conc + disc + tx) * (conc + disc + ty))


def test_agreement_matches_brute_force_and_shifts_match_predict():
    space = get_space("fbnet", 224)
    a = synthetic_lut(space, seed=1)
    b = synthetic_lut(space, seed=2)
    cmp = compare([a, b], n=300, seed=7, k=5)
    x, y = cmp.totals[:, 0], cmp.totals[:, 1]
    (pair,) = cmp.pairs
    assert pair.kendall_tau == pytest.approx(brute_tau_b(x, y), abs=1e-12)
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    assert pair.spearman == pytest.approx(np.corrcoef(rx, ry)[0, 1], abs=1e-12)
    top = 3  # 1% of 300
    assert pair.top_k == top
    assert pair.top_overlap == len(set(np.argsort(x)[:top]) & set(np.argsort(y)[:top])) / top
    # Every sampled total is the LUT's own prediction of that architecture.
    for i in (0, 150, 299):
        assert x[i] == pytest.approx(predict(a, cmp.archs[i].tolist()).total_ms)
    shifts = cmp.shifts
    assert len(shifts) == 5
    d = [abs(s.rank[0] - s.rank[1]) for s in shifts]
    assert d == sorted(d, reverse=True)
    all_d = np.abs(np.argsort(np.argsort(x)) - np.argsort(np.argsort(y)))
    assert d[0] == all_d.max()
    s = shifts[0]
    assert s.ms[0] == pytest.approx(predict(a, list(s.choices)).total_ms)
    assert s.ms[1] == pytest.approx(predict(b, list(s.choices)).total_ms)
    assert s.rank[0] == 1 + int((x < s.ms[0] - 1e-9).sum())


def test_a_scaled_lut_agrees_perfectly_and_a_slower_op_stands_out():
    space = get_space("fbnet", 224)
    a = synthetic_lut(space, seed=1)
    slow = "ir-in28x28x32-out64-k5-e6-g1-s2"
    b = scaled(a, lambda k, ms: ms * (6.0 if k == slow else 2.0))
    c = scaled(a, lambda k, ms: ms * 3.0)
    cmp = compare([a, b, c], n=2000, seed=0)
    ac = next(p for p in cmp.pairs if (p.a, p.b) == (0, 2))
    assert ac.kendall_tau == pytest.approx(1.0) and ac.spearman == pytest.approx(1.0) and ac.top_overlap == 1.0
    rows = {r.op: r for r in cmp.ops}
    assert rows[slow].ratio[1] == pytest.approx(6.0) and rows[slow].relative[1] == pytest.approx(3.0)
    assert all(r.relative[1] == pytest.approx(1.0) for k, r in rows.items() if k != slow)
    assert all(r.relative[2] == pytest.approx(1.0) for r in rows.values())
    assert len(cmp.pairs) == 3 and cmp.unit == "ms"
    df = cmp.pairs_dataframe()
    assert list(df.columns[:3]) == ["a", "b", "kendall_tau"] and len(df) == 3


def test_seed_makes_the_sample_reproducible():
    space = get_space("fbnet", 224)
    a, b = synthetic_lut(space, seed=1), synthetic_lut(space, seed=2)
    assert compare([a, b], n=500, seed=4).to_dict() == compare([a, b], n=500, seed=4).to_dict()
    assert compare([a, b], n=500, seed=4).to_dict() != compare([a, b], n=500, seed=5).to_dict()


def test_other_space_resolution_or_unit_is_an_error():
    a = synthetic_lut(get_space("fbnet", 224))
    with pytest.raises(CompareError, match="space fbnet_cifar100-32.*one space"):
        compare([a, synthetic_lut(get_space("fbnet_cifar100", 32))])
    r192 = synthetic_lut(get_space("fbnet", 192))
    with pytest.raises(CompareError, match="resolution 192.*--across-resolutions"):
        compare([a, r192])
    cmp = compare([a, r192], n=200, across_resolutions=True)
    assert cmp.space.startswith("fbnet at resolutions 192, 224") and cmp.ops[0].op.startswith("layer1:k3_e1 ")
    energy = import_lut("hwnasbench", [DATA / "edgegpu_energy_224.json"])
    with pytest.raises(CompareError, match="different units"):
        compare([import_lut("hwnasbench", [DATA / "edgegpu_latency_224.json"]), energy])
    with pytest.raises(CompareError, match="at least two"):
        compare([a])


def test_imported_tables_compare_and_plot(tmp_path):
    luts = [import_lut("hwnasbench", [DATA / f"{m}_latency_224.json"]) for m in ("pixel3", "raspi4")]
    cmp = compare(luts, n=1000, seed=0)
    assert 0.5 < cmp.pairs[0].kendall_tau < 1.0  # two CPUs: similar, not the same ranking
    out = scatter_png(cmp, tmp_path / "scatter.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_is_strict_when_an_estimate_prices_ops_at_zero():
    import json

    fpga = import_lut("hwnasbench", [DATA / "fpga_latency_224.json"], allow_estimates=True)
    pixel3 = import_lut("hwnasbench", [DATA / "pixel3_latency_224.json"])
    doc = compare([fpga, pixel3], n=200).to_dict()
    text = json.dumps(doc, allow_nan=False)  # raises on NaN or Infinity
    stem = next(r for r in json.loads(text)["ops"] if r["op"] == "conv-in224x224x3-out16-k3-s2")
    assert stem["ms"][0] == 0.0 and stem["ratio"][1] is None


def test_compare_over_a_space_with_ragged_candidate_lists():
    space = get_space("proxylessnas", 224)
    a, b = synthetic_lut(space, seed=1), synthetic_lut(space, seed=2)
    cmp = compare([a, b], n=500, seed=0, k=3)
    counts = np.array([len(l.candidates) for l in space.layers()])
    assert (cmp.archs < counts).all() and (cmp.archs[:, 0] == 0).all()  # the fixed first block has one choice
    assert cmp.archs[:, 2].max() == counts[2] - 1  # the sample reaches every layer's last candidate ('zero')
    for s in cmp.shifts:
        assert s.ms[1] == pytest.approx(predict(b, list(s.choices)).total_ms)
