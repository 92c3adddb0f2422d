"""Patterns a decomposition must recognize in models written by others, in several styles, torch and ONNX."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latency_lut.decompose import UnsupportedLayerError
from latency_lut.decompose.onnx import decompose_onnx
from latency_lut.decompose.torch_fx import decompose_module
from latency_lut.export import export_module
from latency_lut.ops import OpSpec


def keys(model: nn.Module, shape=(1, 8, 16, 16)) -> list[str]:
    return [o.spec.key for o in decompose_module(model.eval(), shape)]


def onnx_keys(model: nn.Module, tmp_path, shape=(1, 8, 16, 16)) -> list[str]:
    path = export_module(model.eval(), shape, "onnx", tmp_path / "m.onnx")
    return [o.spec.key for o in decompose_onnx(path)]


class ConvAct(nn.Module):
    """A conv + BN followed by an activation written as ``act(x)``."""

    def __init__(self, act, cin: int = 8, cout: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class HSwishModule(nn.Module):
    def forward(self, x):
        return x * F.relu6(x + 3.0) / 6.0


class HSwishInplace(nn.Module):  # geffnet's hard_swish: a clone, in-place add, clamp and divide
    def forward(self, x):
        return x * x.add(3.0).clamp_(0.0, 6.0).div_(6.0)


# Written as arithmetic, hard-swish and hard-sigmoid run as several ops (add, clip, div, mul), not one: they are
# recognized, and priced as the arithmetic form they are.
ACTIVATION_STYLES = [
    (HSwishModule(), "hswish_arith"),
    (HSwishInplace(), "hswish_arith"),
    (lambda x: x * F.hardtanh(x + 3, 0.0, 6.0) / 6, "hswish_arith"),
    (lambda x: x * (F.relu6(x + 3) * (1 / 6)), "hswish_arith"),
    (lambda x: F.relu6(x + 3.0) / 6.0, "hsigmoid_arith"),
    (lambda x: torch.clamp(x + 3, min=0, max=6) / 6, "hsigmoid_arith"),
    (nn.Hardswish(), "hswish"),
    (F.hardsigmoid, "hsigmoid"),
    (lambda x: x * torch.sigmoid(x), "swish"),
    (lambda x: x.sigmoid() * x, "swish"),
    (lambda x: torch.clamp(x, 0, 6), "relu6"),
    (nn.Hardtanh(0.0, 6.0), "relu6"),
    (lambda x: x.clamp(min=0), "relu"),
]


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.mark.parametrize("act,name", ACTIVATION_STYLES, ids=[f"{n}-{i}" for i, (_, n) in enumerate(ACTIVATION_STYLES)])
def test_activations_written_as_arithmetic(act, name, tmp_path):
    model = ConvAct(act if isinstance(act, nn.Module) else Fn(act))
    want = [OpSpec("conv", 8, 16, 16, 8, 3, 1, act=name).key]
    assert keys(model) == want
    assert onnx_keys(model, tmp_path) == want


def test_arithmetic_that_is_no_activation_is_named():
    with pytest.raises(UnsupportedLayerError, match=r"add 1 \(arithmetic with a constant\)"):
        decompose_module(ConvAct(Fn(lambda x: torch.relu(x) + 1.0)).eval(), (1, 8, 16, 16))


class SE(nn.Module):
    def __init__(self, c: int, m: int, pool: str, inner: nn.Module, gate):
        super().__init__()
        self.pool = pool
        self.reduce, self.expand = nn.Conv2d(c, m, 1), nn.Conv2d(m, c, 1)
        self.inner, self.gate = inner, gate
        self.avg = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True) if self.pool == "mean" else self.avg(x)
        return x * self.gate(self.expand(self.inner(self.reduce(s))))


class MBConv(nn.Module):
    """An EfficientNet/MobileNetV3-style block written independently of this project."""

    def __init__(self, cin, cout, k, s, e, act, se=None, split_dw=False):
        super().__init__()
        mid = cin * e
        self.pw = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), act())
        self.split_dw = split_dw
        if split_dw:  # MixNet's mixed-kernel depthwise: split, one kernel per part, concat
            self.dws = nn.ModuleList([nn.Conv2d(mid // 2, mid // 2, kk, s, kk // 2, groups=mid // 2, bias=False)
                                      for kk in (3, 5)])
        else:
            self.dw = nn.Conv2d(mid, mid, k, s, k // 2, groups=mid, bias=False)
        self.bn = nn.BatchNorm2d(mid)
        self.act = act()
        self.se = se(mid) if se else nn.Identity()
        self.pwl = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.res = s == 1 and cin == cout

    def forward(self, x):
        y = self.pw(x)
        if self.split_dw:
            parts = torch.split(y, y.shape[1] // 2, dim=1)
            y = torch.cat([c(p) for c, p in zip(self.dws, parts)], 1)
        else:
            y = self.dw(y)
        y = self.pwl(self.se(self.act(self.bn(y))))
        return x + y if self.res else y


@pytest.mark.parametrize("pool", ["mean", "adaptive"])
def test_mbconv_with_se_swish_inside_and_hsigmoid_gate_is_one_unit(pool, tmp_path):
    def se(c):
        return SE(c, 8, pool, nn.SiLU(), lambda v: F.relu6(v + 3) / 6)

    model = nn.Sequential(MBConv(8, 8, 5, 1, 4, nn.Hardswish, se), nn.Dropout(0.2))
    want = ["ir-in16x16x8-out8-k5-e4-g1-s1-se8-gatehsigmoid_arith-seactswish-hswish"]
    assert keys(model) == want and onnx_keys(model, tmp_path) == want
    spec = OpSpec.from_key(want[0])
    # the unit's module is the block it recognized: same parameters as the foreign model, residual included
    assert spec.has_residual
    assert sum(p.numel() for p in spec.build_module().parameters()) == spec.params == \
        sum(p.numel() for p in model.parameters())


def test_mixed_kernel_depthwise_and_stride_2_without_residual(tmp_path):
    model = MBConv(8, 16, 0, 2, 4, nn.ReLU, split_dw=True)
    want = ["ir-in16x16x8-out16-k3_5-e4-g1-s2"]
    assert keys(model) == want and onnx_keys(model, tmp_path) == want
    assert OpSpec.from_key(want[0]).out_hw == (8, 8)


def test_mbconv_without_residual_is_marked():
    class NoSkip(MBConv):
        def forward(self, x):
            return self.pwl(self.act(self.bn(self.dw(self.pw(x)))))

    assert keys(NoSkip(8, 8, 3, 1, 3, nn.ReLU6)) == ["ir-in16x16x8-out8-k3-e3-g1-s1-nores-relu6"]


def test_fbnet_grouped_block_written_by_hand_has_the_space_key():
    """FBNet's _g2 block as someone else writes it (grouped 1x1s, a reshape-transpose shuffle) is the space's own
    ``ir`` unit: one kind, one pattern, one key, whoever wrote the block."""
    def cbr(cin, cout, k=1, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        return nn.Sequential(*layers, *([nn.ReLU()] if act else []))

    class G2(nn.Module):
        def __init__(self):
            super().__init__()
            self.pw, self.dw, self.pwl = cbr(8, 48, groups=2), cbr(48, 48, 3, groups=48), cbr(48, 8, groups=2,
                                                                                              act=False)

        def forward(self, x):
            y = self.pw(x)
            n, c, h, w = y.shape
            y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
            return x + self.pwl(self.dw(y))

    want = OpSpec("ir", 8, 16, 16, 8, 3, 1, 6, 2)
    assert keys(G2()) == [want.key] == ["ir-in16x16x8-out8-k3-e6-g2-s1"]


class TFSame(nn.Module):
    """A TF port: explicit F.pad (asymmetric "same" padding) before a stride-2 conv and a max pool."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, 2, 0, bias=False)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.dil = nn.Conv2d(16, 16, 3, 1, 2, dilation=2, bias=False)

    def forward(self, x):
        y = torch.relu(self.conv(F.pad(x, (0, 1, 0, 1))))
        y = F.relu6(self.dil(y))
        return self.pool(y)


def test_tf_same_pad_dilation_and_ceil_mode(tmp_path):
    want = ["conv-in16x16x8-out16-k3-s2-tf", "conv-in8x8x16-out16-k3-s1-d2-relu6", "maxpool-in8x8x16-k3-s2-p0-ceil"]
    assert keys(TFSame()) == want and onnx_keys(TFSame(), tmp_path) == want
    for k in want:
        spec = OpSpec.from_key(k)
        with torch.no_grad():
            assert tuple(spec.build_module()(torch.randn(*spec.input_shape)).shape) == spec.output_shape


def test_symmetric_pad_becomes_padding():
    class Padded(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, 1, 0)

        def forward(self, x):
            return self.conv(F.pad(x, (2, 2, 2, 2)))

    assert keys(Padded()) == ["conv-in16x16x8-out8-k3-s1-p2-linear"]


def test_hswish_classifier_and_dropout():
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 32), nn.Hardswish(), nn.Dropout(0.2),
                          nn.Linear(32, 10))
    assert keys(model) == ["gap-in16x16x8", "fc-in8-out32-hswish", "fc-in32-out10"]


def test_chunk_and_concat_are_priced_not_zero():
    class Chunk(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            a, b = x.chunk(2, dim=1)
            return torch.cat([a, self.conv(b)], dim=1)

    ops = decompose_module(Chunk(), (1, 8, 16, 16))
    assert [o.spec.key for o in ops] == ["slice-in16x16x8-out4", "slice-in16x16x8-out4",
                                        "conv-in16x16x4-out4-k1-s1-linear", "concat-in16x16x4-out8"]
    assert all(o.note == "fallback: primitive" for o in ops)


NEW_KEYS = ["ir-in56x56x24-out40-k3_5_7-e6-g1-xg2-pg2-s2-tf-se12-seactswish-swish",
            "ir-in28x28x40-out40-k5-e3-g1-s1-se32-gatehsigmoid_arith-hswish_arith",
            "ir-in8x8x16-out16-k3-e1-g1-s1-noexp-nores", "conv-in16x16x8-out16-k3-s2-tf",
            "conv-in14x14x32-out32-k3-s1-p1-d2", "conv-in28x28x120-out120-k3_5_7_9-s1-g120", "slice-in7x7x32-out16",
            "maxpool-in112x112x4-k3-s2-p0-ceil", "se-in7x7x4-m2-seactswish", "conv-in8x8x3-out8-k3-s1-hswish_arith",
            "shufflev2-in14x14x116-out116-k3-s1"]


def test_new_keys_parse_back_build_and_survive_a_lut_file(tmp_path):
    from latency_lut.lut import load
    from latency_lut.spaces import get_space
    from latency_lut.synthetic import synthetic_lut

    specs = [OpSpec.from_key(k) for k in NEW_KEYS]
    assert [s.key for s in specs] == NEW_KEYS
    for s in specs:
        with torch.no_grad():
            assert tuple(s.build_module()(torch.randn(*s.input_shape)).shape) == s.output_shape, s.key
        assert sum(p.numel() for p in s.build_module().parameters()) == s.params, s.key
    lut = synthetic_lut(get_space("fbnet", 32, 0.25), extra=specs)
    lut.save(tmp_path / "l.json")
    back = load(tmp_path / "l.json")
    assert all(back[k].spec == s for k, s in zip(NEW_KEYS, specs))
    for bad in ["ir-in8x8x16-out16-k3-e1-g1-s1-noexp-p1", "conv-in8x8x8-out8-k3_5-s1-g2", "maxpool-in8x8x4-k3-s2-d2",
                "ir-in8x8x16-out16-k3-e1-g1-xg2-s1-noexp", "se-in7x7x4-m2-seactsigmoid",
                "ir-in8x8x16-out16-k3-e6-g2-xg2-s1"]:
        with pytest.raises(ValueError, match="not an op key"):
            OpSpec.from_key(bad)


# ---- ShuffleNetV2 (the torchvision unit, written independently) ---------------------------------------------
def channel_shuffle_v2(x, groups):
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)
class ShuffleV2Block(nn.Module):  # torchvision's ShuffleNetV2 unit, written independently
    def __init__(self, inp, oup, stride):
        super().__init__()
        self.stride = stride
        bf = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, bf, 1, 1, 0, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else bf, bf, 1, 1, 0, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
            nn.Conv2d(bf, bf, 3, stride, 1, groups=bf, bias=False), nn.BatchNorm2d(bf),
            nn.Conv2d(bf, bf, 1, 1, 0, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))
    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle_v2(out, 2)
def shufflenet_v2():
    return nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                         ShuffleV2Block(24, 116, 2), ShuffleV2Block(116, 116, 1), ShuffleV2Block(116, 116, 1))


def test_shufflenet_v2_units(tmp_path):
    model = shufflenet_v2()
    want = ["conv-in64x64x3-out24-k3-s2", "maxpool-in32x32x24-k3-s2", "shufflev2-in16x16x24-out116-k3-s2",
            "shufflev2-in8x8x116-out116-k3-s1", "shufflev2-in8x8x116-out116-k3-s1"]
    assert keys(model, (1, 3, 64, 64)) == want and onnx_keys(model, tmp_path, (1, 3, 64, 64)) == want
    units = [m for m in model.modules() if isinstance(m, ShuffleV2Block)]
    for k, unit in zip(want[2:], units):
        assert OpSpec.from_key(k).params == sum(p.numel() for p in unit.parameters())
