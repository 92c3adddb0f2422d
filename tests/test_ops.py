import pytest

from latency_lut.ops import OpSpec


@pytest.mark.parametrize(
    "spec, key",
    [
        (OpSpec("conv", 3, 224, 224, 16, 3, 2), "conv-in224x224x3-out16-k3-s2"),
        (OpSpec("ir", 16, 112, 112, 24, 5, 2, 6, 1), "ir-in112x112x16-out24-k5-e6-g1-s2"),
        (OpSpec("ir", 64, 14, 14, 64, 3, 1, 1, 2), "ir-in14x14x64-out64-k3-e1-g2-s1"),
        (OpSpec("skip", 16, 112, 112, 24, stride=2), "skip-in112x112x16-out24-s2"),
        (OpSpec("gap", 1984, 7, 7), "gap-in7x7x1984"),
        (OpSpec("fc", 1984, cout=1000), "fc-in1984-out1000"),
        (OpSpec("fc", 1984, cout=1000, dtype="int8"), "fc-in1984-out1000-int8"),
    ],
)
def test_keys_are_stable_and_parse_back(spec, key):
    assert spec.key == key
    assert OpSpec.from_key(key) == spec


@pytest.mark.parametrize("bad", ["", "ir-in112x112x16", "conv-in3-out16-k3-s2", "ir-in1x1x16-out16-k3-e06-g1-s1",
                                 "relu-in1x1x1"])
def test_from_key_rejects_malformed_or_non_canonical_keys(bad):
    with pytest.raises(ValueError):
        OpSpec.from_key(bad)


def test_block_flops_and_params_by_hand():
    # 1x1 16->96 at 112^2, 3x3 depthwise stride 2 at 56^2, 1x1 96->24 at 56^2
    s = OpSpec("ir", 16, 112, 112, 24, 3, 2, 6, 1)
    assert s.mid == 96
    assert s.flops == 112 * 112 * 16 * 96 + 56 * 56 * 96 * 9 + 56 * 56 * 96 * 24
    assert s.params == (16 * 96 + 2 * 96) + (96 * 9 + 2 * 96) + (96 * 24 + 2 * 24)
    g2 = OpSpec("ir", 16, 112, 112, 16, 5, 1, 1, 2)
    assert g2.flops == 112 * 112 * (16 * 16 // 2 + 16 * 25 + 16 * 16 // 2)
    assert g2.has_residual and not s.has_residual


def test_identity_skip_is_free_and_projection_is_not():
    ident = OpSpec("skip", 112, 14, 14, 112)
    proj = OpSpec("skip", 16, 112, 112, 24, stride=2)
    assert ident.is_identity and ident.flops == 0 and ident.params == 0
    assert not proj.is_identity and proj.flops == 56 * 56 * 16 * 24


def test_module_matches_spec_shapes_and_params():
    import torch

    for spec in [OpSpec("ir", 16, 20, 20, 24, 5, 2, 3, 2), OpSpec("skip", 8, 9, 9, 16, stride=2),
                 OpSpec("conv", 3, 33, 33, 8, 3, 2), OpSpec("gap", 32, 5, 5), OpSpec("fc", 32, cout=10)]:
        m = spec.build_module()
        y = m(torch.randn(*spec.input_shape))
        assert tuple(y.shape) == spec.output_shape, spec.key
        assert sum(p.numel() for p in m.parameters()) == spec.params, spec.key


def test_invalid_fields_are_rejected():
    with pytest.raises(ValueError):
        OpSpec("pool", 3)
    with pytest.raises(ValueError):
        OpSpec("conv", 3, 0, 224, 16)
