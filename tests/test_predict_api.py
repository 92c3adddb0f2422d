"""The prediction API: predict_batch, predict_module / predict_onnx pricing, and measuring missing ops."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from torch import nn

from latency_lut.backends import create_backend
from latency_lut.build import build_lut, config_for
from latency_lut.devices import get_device
from latency_lut.errors import ArchitectureError, LUTFormatError, UnknownOpError
from latency_lut.extend import measurer
from latency_lut.measure import Protocol
from latency_lut.predict import arch_table, predict, predict_batch, predict_module
from latency_lut.spaces import get_space
from latency_lut.store import Store
from latency_lut.synthetic import synthetic_lut

SPACE = get_space("fbnet", 32, 0.25)
FAST = Protocol(warmup=1, runs=3, min_seconds=0, retries=0)


@pytest.fixture(scope="module")
def lut():
    return synthetic_lut(SPACE, seed=3)


def test_predict_batch_equals_predict_per_arch(lut):
    rng = np.random.default_rng(0)
    archs = rng.integers(0, 9, size=(300, 22))
    archs[0] = 8  # all skips: identities cost zero
    got = predict_batch(lut, archs)
    want = np.array([predict(lut, list(a)).total_ms for a in archs])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    for name in ("fbnet_b", "fbnet_c"):
        a = np.array(SPACE.parse_arch(name).choices)
        assert predict_batch(lut, a)[0] == pytest.approx(predict(lut, name).total_ms, rel=1e-12)


def test_predict_batch_accepts_any_integer_dtype_and_a_compiled_table(lut):
    archs = np.random.default_rng(1).integers(0, 9, size=(20000, 22))
    ref = predict_batch(lut, archs)
    table = arch_table(lut)
    for dt in (np.uint8, np.int16, np.int32):
        np.testing.assert_allclose(predict_batch(table, archs.astype(dt)), ref, rtol=1e-12)


def test_predict_batch_errors(lut):
    with pytest.raises(ArchitectureError, match=r"shape \(5, 21\).*\(n, 22\)"):
        predict_batch(lut, np.zeros((5, 21), dtype=int))
    with pytest.raises(ArchitectureError, match="integer"):
        predict_batch(lut, np.zeros((5, 22)))
    bad = np.zeros((20000, 22), dtype=int)
    bad[12345, 7] = 9
    with pytest.raises(ArchitectureError, match="row 12345, layer 8: candidate index 9"):
        predict_batch(lut, bad)
    with pytest.raises(LUTFormatError, match="fbnet-64"):
        predict_batch(lut, np.zeros((1, 22), dtype=int), space=get_space("fbnet", 64, 0.25))


def test_predict_batch_rejects_nan(lut):
    key = SPACE.stem_spec().key
    broken = dataclasses.replace(lut, entries=dict(lut.entries))
    e = broken.entries[key]
    broken.entries[key] = dataclasses.replace(e, stats=dataclasses.replace(e.stats, median=float("nan")))
    with pytest.raises(LUTFormatError, match=f"{key}.*finite and non-negative"):
        predict_batch(broken, np.zeros((1, 22), dtype=int))


def test_predict_module_breakdown_and_missing_ops(lut):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.Hardswish(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 10))
    with pytest.raises(UnknownOpError) as ei:
        predict_module(lut, model)
    # the stem conv is in the LUT; the depthwise conv, pool and classifier are listed, nothing counted as zero
    assert ei.value.missing == ["conv-in16x16x8-out8-k3-s1-g8-hswish", "gap-in16x16x8", "fc-in8-out10"]
    assert "--measure-missing" in str(ei.value)


def _tiny_measured_lut(store_path):
    device = get_device("local")
    backend = create_backend(device, "onnxruntime", threads=1)
    try:
        with Store(store_path) as st:
            res = build_lut(SPACE, device, backend, st, FAST, specs=[SPACE.stem_spec()])
        return res.lut, config_for(device, backend, FAST)
    finally:
        backend.close()


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6())

    def forward(self, x):
        y = self.stem(x)
        return y + self.dw(y)


def test_measure_missing_measures_on_the_luts_device(tmp_path, artifact_cache):
    store_path = tmp_path / "store.sqlite"
    lut, config = _tiny_measured_lut(store_path)
    assert list(lut.entries) == ["conv-in32x32x3-out8-k3-s2"]
    with pytest.raises(UnknownOpError, match="conv-in16x16x8-out8-k3-s1-g8-relu6, add-in16x16x8"):
        predict_module(lut, Small())
    p = predict_module(lut, Small(), measure=measurer(store_path))
    new = ["conv-in16x16x8-out8-k3-s1-g8-relu6", "add-in16x16x8"]
    assert [o.key for o in p.ops] == ["conv-in32x32x3-out8-k3-s2", *new]
    for key in new:
        assert key in lut and lut[key].stats.count >= 3 and lut[key].median > 0
    assert p.total_ms == pytest.approx(sum(lut[k].median for k in ["conv-in32x32x3-out8-k3-s2", *new]))
    with Store(store_path) as st:
        assert set(new) <= st.completed_keys(config)
    # the store is the source of truth: a second LUT gets the same numbers without measuring again
    lut2, _ = _tiny_measured_lut(store_path)
    p2 = predict_module(lut2, Small(), measure=measurer(store_path))
    assert p2.total_ms == p.total_ms


def test_measure_missing_refuses_another_configuration(tmp_path, artifact_cache):
    lut, _ = _tiny_measured_lut(tmp_path / "store.sqlite")
    lut.header["settings_hash"] = "0" * 16
    lut.header["settings"] = {**lut.header["settings"], "runtime_version": "0.0"}
    with pytest.raises(LUTFormatError, match="runtime_version: '0.0' in the LUT"):
        predict_module(lut, Small(), measure=measurer(tmp_path / "store.sqlite"))
    synthetic = synthetic_lut(SPACE)
    with pytest.raises(Exception, match="unknown device 'synthetic'"):
        predict_module(synthetic, Small(), measure=measurer(tmp_path / "store.sqlite"))


def test_predict_keeps_identity_rows_and_sums(lut):
    p = predict(lut, "fbnet_a")
    assert len(p.ops) == 26 and p.ops[1].ms == 0.0 and p.ops[1].choice == "skip"
    assert p.total_ms == pytest.approx(sum(o.ms for o in p.ops))


def test_a_model_whose_weights_fit_in_the_devices_cache_says_so(lut):
    """A model whose weights fit in a third of the LUT device's last-level cache gets a note (back to back it can
    beat its cold-weights price); one that does not, a LUT without the cache size, or a bigger model get none."""
    from latency_lut.predict import CACHE_RESIDENT_SHARE

    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())  # the LUT's stem
    weights = SPACE.stem_spec().params * 4  # bytes, fp32
    for llc, noted in ((None, False), (int(weights / CACHE_RESIDENT_SHARE) + 1, True),
                       (int(weights / CACHE_RESIDENT_SHARE) - 1, False)):
        h = {**lut.header, "device_info": {**(lut.header.get("device_info") or {}), "llc_bytes": llc}}
        p = predict_module(dataclasses.replace(lut, header=h), model, (1, 3, 32, 32))
        assert any("fit in the device's" in n and "--weights cold" in n for n in p.notes) == noted, (llc, p.notes)


def test_host_info_reads_the_last_level_cache():
    from pathlib import Path

    from latency_lut.backends.base import host_info

    llc = host_info()["llc_bytes"]
    if Path("/sys/devices/system/cpu/cpu0/cache/index0").is_dir():  # Linux: the kernel says, so it is read
        assert isinstance(llc, int) and 2**16 <= llc <= 2**31, llc
    else:  # no cache sysfs: unknown, never a guess
        assert llc is None
