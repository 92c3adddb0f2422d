"""Decomposing whole models (torch modules, ONNX files) into LUT ops."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from reference_models import MnasBlock, MobileNetV2, MobileNetV3Small, ShuffleNetV1, TinyMnasNet
from torch import nn

from latency_lut.decompose import ModelError, UnsupportedLayerError
from latency_lut.decompose.onnx import decompose_onnx
from latency_lut.decompose.torch_fx import decompose_module
from latency_lut.export import export_module
from latency_lut.ops import OpSpec
from latency_lut.predict import predict, predict_module, predict_onnx
from latency_lut.spaces import get_space
from latency_lut.synthetic import synthetic_lut

SPACE = get_space("fbnet", 32, 0.25)
SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module")
def lut():
    return synthetic_lut(SPACE, seed=2)


def kinds(ops):
    return Counter(o.desc for o in ops)


@pytest.mark.parametrize("arch", ["fbnet_a", "fbnet_b", "fbnet_c", "0,1,2,3,4,5,6,7,8,0,1,2,3,4,5,6,7,8,8,8,8,8"])
def test_fbnet_models_decompose_to_their_arch_ops_exactly(lut, arch):
    model = SPACE.build_model(arch)
    ops = decompose_module(model, (1, 3, 32, 32), known=lut.__contains__)
    assert [o.spec.key for o in ops] == [s.key for s in SPACE.arch_specs(arch) if not s.is_identity]
    # each block is one op: its inner convs are not priced again
    assert not any(o.spec.kind == "conv" and o.spec.kernel == 1 and o.spec.groups > 1 for o in ops)
    assert predict_module(lut, model, (1, 3, 32, 32)).total_ms == predict(lut, arch).total_ms


def test_fbnet_onnx_equals_predict(lut, tmp_path):
    path = export_module(SPACE.build_model("fbnet_a"), (1, 3, 32, 32), "onnx", tmp_path / "a.onnx")
    p = predict_onnx(lut, path)
    assert [o.key for o in p.ops] == [s.key for s in SPACE.arch_specs("fbnet_a") if not s.is_identity]
    assert p.total_ms == predict(lut, "fbnet_a").total_ms


def test_skip_projection_uses_the_skip_entry(lut):
    arch = ["skip"] * 22
    ops = decompose_module(SPACE.build_model(arch), (1, 3, 32, 32), known=lut.__contains__)
    assert sum(o.spec.kind == "skip" for o in ops) == sum(not s.is_identity for s in SPACE.arch_specs(arch)
                                                          if s.kind == "skip")


def test_mobilenet_v2(lut):
    ops = decompose_module(MobileNetV2(), SHAPE)
    # 17 blocks, each one mb unit: the first without expansion conv, 4 of stride 2, the residual adds inside
    assert kinds(ops) == {"conv3x3/2 relu6": 1, "ir k3/1 dw-sep relu6": 1, "ir k3/2 x6 relu6": 4,
                          "ir k3/1 x6 relu6": 12, "conv1x1/1 relu6": 1, "gap": 1, "linear": 1}
    keys = [o.spec.key for o in ops]
    assert keys[:3] == ["conv-in64x64x3-out8-k3-s2-relu6", "ir-in32x32x8-out8-k3-e1-g1-s1-noexp-relu6",
                        "ir-in32x32x8-out8-k3-e6-g1-s2-relu6"]
    assert keys[-2:] == ["gap-in2x2x1280", "fc-in1280-out10"]
    assert sum(o.spec.has_residual for o in ops) == 11 and not any(o.note for o in ops)
    # a unit's members are its convs, BNs, activations and its residual add: nothing is priced twice
    assert len(ops[2].members) == 8 and len(ops[3].members) == 9


def test_mobilenet_v3_with_handwritten_hswish_and_linear_se():
    ops = decompose_module(MobileNetV3Small(), SHAPE)
    # its h-swish and h-sigmoid are written as arithmetic, and priced as such (see ops.ACTS)
    hs = "hswish_arith"
    assert kinds(ops) == {f"conv3x3/2 {hs}": 1, "ir k3/2 dw-sep se relu": 1, "ir k3/2 x4.5 relu": 1,
                          "ir k3/1 x3.67 relu": 1, f"ir k5/2 x4 se {hs}": 1, f"ir k5/1 x6 se {hs}": 4,
                          f"ir k5/1 x3 se {hs}": 2, f"ir k5/2 x6 se {hs}": 1, f"conv1x1/1 {hs}": 1, "gap": 1,
                          f"linear {hs}": 1, "linear": 1}
    mb = [o for o in ops if o.spec.kind == "ir"]
    assert mb[0].spec.key == "ir-in32x32x16-out16-k3-e1-g1-s2-se4-gatehsigmoid_arith-noexp"
    assert [o.spec.key for o in ops if o.spec.kind == "fc"] == [f"fc-in576-out1024-{hs}", "fc-in1024-out10"]


def test_shufflenet_v1():
    ops = decompose_module(ShuffleNetV1(), SHAPE)
    # 16 units (3 of stride 2 with an avg-pool shortcut concatenated, 13 with a residual add + ReLU)
    assert kinds(ops) == {"conv3x3/2 relu": 1, "maxpool3x3/2": 1, "conv1x1/1 relu": 1, "conv1x1/1 g3 relu": 15,
                          "shuffle": 16, "dwconv3x3/2 linear": 3, "dwconv3x3/1 linear": 13,
                          "conv1x1/1 g3 linear": 16, "avgpool3x3/2": 3, "concat": 3, "act relu": 3,
                          "add relu": 13, "gap": 1, "linear": 1}
    keys = [o.spec.key for o in ops]
    assert "shuffle-in8x8x30-g3" in keys and "concat-in8x8x24-out120" in keys and "add-in8x8x120-relu" in keys
    # grouped units have no block pattern here: priced from primitives, and the breakdown says so
    assert {o.note for o in ops if o.spec.kind in ("shuffle", "add")} == {"fallback: primitive"}


@pytest.mark.parametrize("model", [MobileNetV2, ShuffleNetV1, TinyMnasNet])
def test_onnx_and_torch_decompositions_agree(model, tmp_path):
    m = model()
    path = export_module(m, SHAPE, "onnx", tmp_path / "m.onnx")
    assert [o.spec.key for o in decompose_onnx(path)] == [o.spec.key for o in decompose_module(m, SHAPE)]


def test_independent_block_code_uses_block_entries_when_the_lut_has_them():
    model = TinyMnasNet()
    units = decompose_module(model, SHAPE)
    assert [o.spec.key for o in units if o.spec.kind == "ir"] == [
        "ir-in32x32x16-out24-k3-e3-g1-s2", "ir-in16x16x24-out24-k3-e3-g1-s1", "ir-in16x16x24-out40-k5-e6-g1-s2"]
    assert len(units) == 7 and "add" not in kinds(units)  # each block's 3 convs and its add: one unit
    irs = [OpSpec("ir", 16, 32, 32, 24, 3, 2, 3), OpSpec("ir", 24, 16, 16, 24, 3, 1, 3),
           OpSpec("ir", 24, 16, 16, 40, 5, 2, 6)]
    with_blocks = synthetic_lut(SPACE, extra=irs)
    ops = decompose_module(model, SHAPE, known=with_blocks.__contains__)
    # the LUT's own block entries are preferred: the space's keys do not change
    assert [o.spec.key for o in ops if o.spec.kind == "ir"] == [s.key for s in irs]
    assert len(ops) == 7 and ops[2].label == "blocks.1"
    # the same blocks measured as mb units are the same modules: equal FLOPs
    assert [o.spec.flops for o in ops[1:4]] == [o.spec.flops for o in units[1:4]]


def test_unsupported_layers_are_named():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.up = nn.Upsample(scale_factor=2)
            self.lstm_like = nn.GRU(8, 8)

        def forward(self, x):
            a, b = self.conv(x).chunk(2, dim=1)
            return self.up(a * 2.0) + b.repeat(1, 1, 2, 2)

    with pytest.raises(UnsupportedLayerError, match=r"up \(torch.nn.modules.upsampling.Upsample\)") as ei:
        decompose_module(Odd(), (1, 3, 16, 16))
    text = str(ei.value)
    # chunk is supported now (two channel slices); a * 2.0 is arithmetic that computes no activation
    assert "mul 2 (arithmetic with a constant)" in text and ".repeat()" in text and "GRU" not in text
    assert len(ei.value.layers) >= 3


def test_untraceable_module_falls_back_to_its_onnx_export():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return torch.relu(y) if y.sum() > -1e9 else y  # control flow on a tensor: fx cannot trace this

    notes: list[str] = []
    ops = decompose_module(Dynamic(), (1, 3, 8, 8), notes=notes)
    assert [o.spec.key for o in ops] == ["conv-in8x8x3-out8-k3-s1"]
    assert len(notes) == 1 and "torch.fx cannot trace Dynamic" in notes[0] and "ONNX export" in notes[0]

    class Nothing(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else x

    with pytest.raises(ModelError, match="no layers to price"):
        decompose_module(Nothing(), (1, 3, 8, 8))


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ModelError, match="fails on an input of shape"):
        decompose_module(MnasBlock(16, 16, 3, 1, 3), (1, 3, 8, 8))
    with pytest.raises(ModelError, match="batch 1"):
        decompose_module(MnasBlock(16, 16, 3, 1, 3), (2, 16, 8, 8))


def test_onnx_errors(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        decompose_onnx(tmp_path / "none.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot read ONNX file"):
        decompose_onnx(bad)


def test_new_op_kinds_build_measurable_modules():
    for key in ["conv-in8x8x8-out8-k3-s1-g8-relu6", "se-in8x8x16-m4-hsigmoid", "add-in8x8x16-relu",
                "shuffle-in8x8x30-g3", "avgpool-in8x8x8-k3-s2", "concat-in8x8x24-out120", "fc-in96-out128-hswish"]:
        spec = OpSpec.from_key(key)
        with torch.no_grad():
            assert tuple(spec.build_module()(torch.randn(*spec.input_shape)).shape) == spec.output_shape


def test_onnx_with_shared_weights_decomposes(tmp_path):
    # torch.onnx routes deduplicated weights through Identity nodes; both convs must still be found.
    import torch

    from latency_lut.decompose.lower import lower
    from latency_lut.decompose.onnx import onnx_graph

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.b = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
            self.b.load_state_dict(self.a.state_dict())  # equal values: the exporter deduplicates them

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    path = tmp_path / "twice.onnx"
    torch.onnx.export(Twice().eval(), (torch.randn(1, 8, 16, 16),), str(path), dynamo=False)
    ops = lower(onnx_graph(path))
    convs = [o for o in ops if o.spec.kind == "conv"]
    assert len(convs) == 2 and {o.spec.kernel for o in convs} == {3}
