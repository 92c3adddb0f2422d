"""The block registry: every kind's keys parse back, its module matches its spec, its costs are right."""

from __future__ import annotations

import pytest

from latency_lut.blocks import REGISTRY, Kind, Token, build_op, get_kind, register
from latency_lut.decompose import describe
from latency_lut.decompose.units import fallback_note
from latency_lut.ops import OpSpec

# One or more specs of every registered kind (the test below fails when a kind has none here).
SAMPLES = [
    OpSpec("conv", 3, 33, 33, 8, 3, 2),
    OpSpec("conv", 8, 9, 9, 8, 3, 1, groups=8, act="hswish", padding=0),
    OpSpec("ir", 16, 20, 20, 24, 5, 2, 3, 2),
    OpSpec("ir", 16, 10, 10, 16, 3, 1, 1, 1, expand=False, act="relu6"),
    OpSpec("ir", 16, 10, 10, 16, 5, 1, 4, hidden=16, gate="hsigmoid", act="hswish"),
    OpSpec("ir", 24, 8, 8, 24, 7, 1, mid_channels=100, hidden=24, se_act="swish", act="swish", skip_add=False),
    OpSpec("skip", 8, 9, 9, 16, stride=2),
    OpSpec("gap", 32, 5, 5),
    OpSpec("fc", 32, cout=10, act="hswish"),
    OpSpec("logits", 32, 5, 5, 10),
    OpSpec("se", 16, 6, 6, hidden=8, act="hsigmoid"),
    OpSpec("add", 8, 6, 6, act="relu"),
    OpSpec("shuffle", 8, 6, 6, groups=2),
    OpSpec("maxpool", 8, 9, 9, kernel=3, stride=2),
    OpSpec("avgpool", 8, 9, 9, kernel=2, stride=2, padding=0),
    OpSpec("bn", 8, 6, 6, act="relu6"),
    OpSpec("act", 8, 6, 6, act="swish"),
    OpSpec("concat", 8, 6, 6, 12),
    # the layers and blocks of foreign models (issue 10)
    OpSpec("conv", 12, 9, 9, 12, stride=2, groups=12, mix=(3, 5, 7)),
    OpSpec("conv", 10, 9, 9, 6, mix=(1, 3)),
    OpSpec("conv", 8, 10, 10, 8, 3, 1, groups=8, dilation=2, act="hswish_arith"),
    OpSpec("conv", 3, 10, 10, 8, 3, 2, tf=True),
    OpSpec("ir", 12, 10, 10, 20, stride=2, mid_channels=36, mix=(3, 5), expand_groups=2, proj_groups=2,
           hidden=6, se_act="swish", tf=True, act="swish"),
    OpSpec("ir", 8, 9, 9, 8, 3, 1, 3, dilation=2, act="hswish_arith", hidden=4, gate="hsigmoid_arith"),
    OpSpec("se", 16, 6, 6, hidden=8, se_act="swish"),
    OpSpec("maxpool", 8, 10, 10, kernel=3, stride=2, padding=0, ceil=True),
    OpSpec("avgpool", 8, 10, 10, kernel=3, stride=2, tf=True),
    OpSpec("slice", 8, 6, 6, 4),
    OpSpec("shufflev2", 16, 6, 6, 16, 3, 1),
    OpSpec("shufflev2", 8, 6, 6, 16, 5, 2),
]


def test_every_kind_has_a_sample():
    assert {s.kind for s in SAMPLES} == set(REGISTRY)


@pytest.mark.parametrize("spec", SAMPLES, ids=lambda s: s.key)
def test_keys_parse_back(spec):
    assert OpSpec.from_key(spec.key) == spec
    assert spec.key.startswith(spec.kind + "-")


@pytest.mark.parametrize("spec", SAMPLES, ids=lambda s: s.key)
def test_module_matches_spec(spec):
    import torch

    m = spec.build_module()
    with torch.no_grad():
        y = m(torch.randn(*spec.input_shape))
    assert tuple(y.shape) == spec.output_shape
    assert sum(p.numel() for p in m.parameters()) == spec.params


def test_mbconv_options_by_hand():
    # 1x1 16->64 hswish, 5x5 depthwise, SE 64->16->64 (hsigmoid), 1x1 64->16, residual
    s = OpSpec("ir", 16, 10, 10, 16, 5, 1, 4, hidden=16, gate="hsigmoid", act="hswish")
    assert s.key == "ir-in10x10x16-out16-k5-e4-g1-s1-se16-gatehsigmoid-hswish"
    assert s.mid == 64 and s.has_residual
    assert s.flops == 100 * 16 * 64 + 100 * 64 * 25 + (100 * 64 + 2 * 64 * 16) + 100 * 64 * 16
    assert s.params == (16 * 64 + 128) + (64 * 25 + 128) + (2 * 64 * 16 + 64 + 16) + (64 * 16 + 32)
    # MBConv1 without its expansion conv (MobileNetV2/V3, ProxylessNAS)
    d = OpSpec("ir", 32, 112, 112, 16, 3, 1, expand=False, act="relu6")
    assert d.key == "ir-in112x112x32-out16-k3-e1-g1-s1-noexp-relu6"
    assert d.flops == 112 * 112 * 32 * 9 + 112 * 112 * 32 * 16 and not d.has_residual


def test_mid_channels_are_canonical():
    # OFA's absolute mid channels: an integer expansion prints as e, anything else as mid.
    assert OpSpec("ir", 24, 56, 56, 32, 3, 2, mid_channels=144) == OpSpec("ir", 24, 56, 56, 32, 3, 2, 6)
    assert OpSpec("ir", 24, 56, 56, 32, 3, 2, mid_channels=100).key == "ir-in56x56x24-out32-k3-mid100-g1-s2"
    # nores where no residual is possible says nothing, so it is dropped
    assert OpSpec("ir", 24, 56, 56, 32, 3, 2, 6, skip_add=False) == OpSpec("ir", 24, 56, 56, 32, 3, 2, 6)
    assert OpSpec("ir", 16, 8, 8, 16, 3, 1, 6, hidden=8, gate="sigmoid", se_act="relu").key == \
        "ir-in8x8x16-out16-k3-e6-g1-s1-se8"


@pytest.mark.parametrize("fields, match", [
    (dict(kind="ir", cin=16, h=8, w=8, cout=16, kernel=3, expansion=6, expand=False), "noexp"),
    (dict(kind="ir", cin=16, h=8, w=8, cout=16, kernel=3, gate="hsigmoid"), "needs squeeze-excite"),
    (dict(kind="ir", cin=16, h=8, w=8, cout=16, kernel=3, act="sigmoid"), "takes one of"),
    (dict(kind="ir", cin=16, h=8, w=8, cout=16, kernel=3, expansion=6, mid_channels=96), "not both"),
    (dict(kind="ir", cin=16, h=8, w=8, cout=16, kernel=3, mid_channels=10, groups=4), "divisible by groups"),
    (dict(kind="conv", cin=16, h=8, w=8, cout=16, kernel=3, hidden=4), "takes no field hidden"),
    (dict(kind="gap", cin=16, h=8, w=8, cout=8), "keeps its channels"),
    (dict(kind="skip", cin=16, h=8, w=8, cout=24, act="relu6"), "takes one of relu"),
    (dict(kind="pool", cin=3), "unknown op kind"),
])
def test_bad_fields_are_rejected(fields, match):
    with pytest.raises(ValueError, match=match):
        OpSpec(**fields)


@pytest.mark.parametrize("bad", ["ir-in8x8x16-out16-k3-e6-g1-s1-noexp", "ir-in8x8x16-out16-k3-e6-g1-s1-se0",
                                 "ir-in8x8x16-out16-k3-mid96-g1-s1", "fc-in8x8x16-out10", "ir-in8x8x16-out16-k3-e6-g1"
                                 "-s1-relu-gatehsigmoid", "logits-in16-out10"])
def test_malformed_or_non_canonical_keys(bad):
    with pytest.raises(ValueError):
        OpSpec.from_key(bad)


def test_a_new_kind_is_one_registration():
    """What a new module of latency_lut/blocks does: register the kind; keys, costs and modules follow."""
    def build(s):
        from torch import nn

        return nn.Conv2d(s.cin, s.cout, s.kernel, s.stride, padding=2 * (s.kernel // 2), dilation=2, bias=False)

    kind = register(Kind(
        "dilconv", (Token("cout", "out", required=True), Token("kernel", "k", required=True),
                    Token("stride", "s", required=True)), build,
        flops=lambda s: s.out_hw[0] * s.out_hw[1] * s.cin * s.cout * s.kernel**2,
        params=lambda s: s.cin * s.cout * s.kernel**2,
        label=lambda s: f"dilated {s.kernel}x{s.kernel}", fusible=lambda s: s.stride == 1,
    ))
    try:
        spec = OpSpec("dilconv", 8, 10, 10, 16, 3, 1)
        assert spec.key == "dilconv-in10x10x8-out16-k3-s1" and OpSpec.from_key(spec.key) == spec
        assert get_kind("dilconv") is kind and spec.params == 8 * 16 * 9
        m = build_op(spec)
        assert sum(p.numel() for p in m.parameters()) == spec.params
        # the breakdown of a decomposed model asks the kind for its description and its fallback note
        assert describe(spec) == "dilated 3x3" and fallback_note(spec) == "fallback: primitive"
        assert fallback_note(OpSpec("dilconv", 8, 10, 10, 16, 3, 2)) == ""
        with pytest.raises(ValueError, match="registered twice"):
            register(kind)
    finally:
        REGISTRY.pop("dilconv")


@pytest.mark.parametrize("spec, text, note", [
    (SAMPLES[1], "dwconv3x3/1 hswish", ""),  # padding given: not the auto-padded depthwise of a block
    (OpSpec("conv", 8, 9, 9, 8, 3, 1, groups=8), "dwconv3x3/1 relu", "fallback: primitive"),
    (SAMPLES[0], "conv3x3/2 relu", ""),
    (SAMPLES[18], "dwconv3x3+5x5+7x7/2 relu", "fallback: primitive"),
    (SAMPLES[2], "ir k5/2 x3 g2 relu", ""),
    (SAMPLES[3], "ir k3/1 dw-sep relu6", ""),
    (SAMPLES[20], "dwconv3x3/1 d2 hswish_arith", "fallback: primitive"),
    (SAMPLES[9], "logits", ""),
    (SAMPLES[11], "add relu", "fallback: primitive"),
    (SAMPLES[15], "bn relu6", "fallback: primitive"),
    (SAMPLES[13], "maxpool3x3/2", ""),
    (SAMPLES[10], "se hsigmoid", "fallback: primitive"),
    (SAMPLES[8], "linear hswish", ""),
])
def test_descriptions_and_fallback_notes_come_from_the_kind(spec, text, note):
    assert (describe(spec), fallback_note(spec)) == (text, note)


def test_registry_imports_no_torch():
    import subprocess
    import sys

    from conftest import cli_env

    code = "import sys, latency_lut.blocks, latency_lut.ops; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=cli_env())
    assert out.stdout.strip() == "False"
