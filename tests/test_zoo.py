"""A public-zoo model (gen-efficientnet-pytorch, installed by `make setup-test`) priced end to end at a small input:
decomposed into block units, its missing units measured on ONNX Runtime, measured whole, stored."""

from __future__ import annotations

import warnings

import pytest
import torch

from latency_lut.backends import create_backend
from latency_lut.build import build_lut
from latency_lut.decompose.onnx import decompose_onnx
from latency_lut.decompose.torch_fx import decompose_module
from latency_lut.devices import get_device
from latency_lut.export import export_module
from latency_lut.extend import measurer
from latency_lut.measure import Protocol
from latency_lut.models import ModelUnit
from latency_lut.predict import predict_module
from latency_lut.spaces import get_space
from latency_lut.store import Store
from latency_lut.validate import validate_models

with warnings.catch_warnings():  # geffnet scripts its activations at import, which torch calls deprecated
    warnings.simplefilter("ignore", DeprecationWarning)
    import geffnet

SHAPE = (1, 3, 64, 64)
QUICK = Protocol(warmup=1, runs=3, min_seconds=0, retries=0)


def zoo(name: str, exportable: bool = True) -> torch.nn.Module:
    geffnet.config.set_exportable(exportable)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return geffnet.create_model(name, pretrained=False).eval()
    finally:
        geffnet.config.set_exportable(False)


@pytest.mark.parametrize("name", ["tf_mobilenetv3_small_100", "mixnet_s", "efficientnet_b0"])
def test_zoo_models_are_block_units_in_torch_and_onnx(name, tmp_path):
    model = zoo(name)
    ops = decompose_module(model, SHAPE)
    assert not [o.label for o in ops if o.note], "every layer is part of a unit"
    assert {o.spec.kind for o in ops} == {"conv", "ir", "gap", "fc"}
    # the units' multiply-adds are the model's convs and linears (plus their pools): nothing lost, nothing twice
    macs = []

    def count(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            macs.append(out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, torch.nn.Linear):
            macs.append(m.in_features * m.out_features)

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        model(torch.randn(*SHAPE))
    for h in hooks:
        h.remove()
    ours = sum(o.spec.flops for o in ops)
    assert sum(macs) <= ours <= 1.03 * sum(macs)
    path = export_module(model, SHAPE, "onnx", tmp_path / f"{name}.onnx")
    assert [o.spec.key for o in decompose_onnx(path)] == [o.spec.key for o in ops]


def test_zoo_model_end_to_end(tmp_path, artifact_cache):
    space = get_space("fbnet", 64, 0.25)
    device = get_device("local")
    backend = create_backend(device, "onnxruntime", threads=1)
    store_path = tmp_path / "store.sqlite"
    try:
        with Store(store_path) as st:
            lut = build_lut(space, device, backend, st, QUICK, specs=[space.stem_spec()]).lut
        model = zoo("mobilenetv3_small_100")
        p = predict_module(lut, model, SHAPE, measure=measurer(store_path), name="mnv3s")
        assert len(p.ops) == 16 and all(o.ms > 0 for o in p.ops) and not any(o.note for o in p.ops)
        assert p.total_ms == pytest.approx(sum(o.ms for o in p.ops))
        assert all(o.key in lut for o in p.ops)  # measured as one unit each, now in the LUT
        with Store(store_path) as st:
            rep = validate_models(lut, device, backend, [ModelUnit("mnv3s", SHAPE, module=model)], rounds=2,
                                  store=st, store_path=store_path)
    finally:
        backend.close()
    (row,) = rep.rows
    assert row.ok and row.key.startswith("model-") and row.measured_ms > 0 and len(row.round_ms) == 2
    assert row.plain_ms == pytest.approx(p.raw_total_ms)
    import sqlite3

    with sqlite3.connect(store_path) as db:
        n = db.execute("SELECT COUNT(*) FROM measurements WHERE key = ?", (row.key,)).fetchone()[0]
    assert n == 2  # both rounds
