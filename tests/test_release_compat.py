"""A LUT written by release 0.1.0 (before the block registry and YAML spaces) still loads, keeps every key and
predicts the same numbers; every op key, cost and module of the FBNet space is unchanged.

Both files in tests/data were written by release 0.1.0 (commit b3a8fd5): the LUT by
``fbnet-lut build --resolution 32 --width 0.25 --warmup 1 --runs 3 --min-seconds 0 --retries 0`` with ONNX Runtime,
the expected numbers by that release's ``predict``, ``arch_table``, ``unique_specs``, ``flops``, ``params`` and
``build_module``.
"""

from __future__ import annotations

import json
import math

import pytest
from conftest import REPO

from latency_lut import get_space, load, predict
from latency_lut.networks import sample_archs
from latency_lut.ops import OpSpec
from latency_lut.predict import arch_table

DATA = REPO / "tests" / "data"
LUT_FILE = DATA / "release-0.1.0-fbnet-32-w0.25.json"
EXPECTED = json.loads((DATA / "release-0.1.0-expected.json").read_text())

# Totals (ms) that release 0.1.0 predicted from LUT_FILE.
TOTALS = {
    "fbnet_a": 0.286916,
    "fbnet_b": 0.323258,
    "fbnet_c": 0.327394,
    " ".join(["k3_e1"] * 22): 0.323676,
    " ".join(["skip"] * 22): 0.121109,
    "8,7,6,5,4,3,2,1,0,1,2,3,4,5,6,7,8,0,1,2,3,4": 0.308539,
}


@pytest.fixture(scope="module")
def old_lut():
    return load(LUT_FILE)


def test_old_lut_loads_with_every_key(old_lut):
    raw = json.loads(LUT_FILE.read_text())
    assert sorted(old_lut.entries) == sorted(raw["entries"]) and len(old_lut) == 109
    # Re-serialized entries are field-for-field what the release wrote (no field added, dropped or renamed).
    assert old_lut.to_dict()["entries"] == raw["entries"]


@pytest.mark.parametrize("arch", list(TOTALS))
def test_old_lut_predicts_the_same_totals(old_lut, arch):
    assert predict(old_lut, arch).total_ms == pytest.approx(TOTALS[arch], rel=1e-9, abs=1e-12)


def test_old_lut_compiles_to_the_same_table(old_lut):
    t = arch_table(old_lut)
    want = EXPECTED["arch_table"]
    assert t.fixed == pytest.approx(want["fixed"]) and float(t.table.sum()) == pytest.approx(want["sum"])
    assert int(t.identity.sum()) == want["identity"]


@pytest.mark.parametrize("space_id", sorted(EXPECTED["unique_specs"]))
def test_fbnet_keys_and_costs_are_unchanged(space_id):
    name, res, *w = space_id.split("-")
    space = get_space(name, int(res), float(w[0][1:]) if w else 1.0)
    assert space.id == space_id
    got = {s.key: [s.flops, s.params] for s in space.unique_specs()}
    assert got == EXPECTED["unique_specs"][space_id]
    for key in got:
        assert OpSpec.from_key(key).key == key


def test_named_archs_and_network_keys_are_unchanged():
    space = get_space("fbnet", 224, 1.0)
    for name, want in EXPECTED["named"].items():
        assert [s.key for s in space.arch_specs(name)] == want["specs"]
        assert (space.flops(name), space.params(name)) == (want["flops"], want["params"])
    small = get_space("fbnet", 32, 0.25)
    keys = [n.key for n in sample_archs(space, 3, 0)] + [n.key for n in sample_archs(small, 2, 1, named=False)]
    assert keys == EXPECTED["net_keys"]


def test_modules_are_unchanged():
    """Same structure and same seeded weights, so cached artifacts and measured numbers stay valid."""
    import torch

    for key, (params, total, abs_total) in EXPECTED["modules"].items():
        spec = OpSpec.from_key(key)
        m = spec.build_module()
        x = torch.randn(*spec.input_shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            y = m(x).double()
        assert sum(p.numel() for p in m.parameters()) == params, key
        assert math.isclose(float(y.sum()), total, rel_tol=1e-4, abs_tol=1e-4), key
        assert math.isclose(float(y.abs().sum()), abs_total, rel_tol=1e-4, abs_tol=1e-4), key
