"""The built-in spaces: published figures of their named architectures, and the public tables' keys."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from latency_lut.spaces import get_space, space_names
from latency_lut.spaces.public_keys import map_public_table, parse_key, public_key_spec

# The keys (not the measurements) of the authors' public tables; see the file's "source".
KEYS = json.loads((REPO / "tests" / "data" / "public_table_keys.json").read_text())


def test_builtin_spaces_are_listed():
    assert {"fbnet", "proxylessnas", "ofa_mbv3", "mobilenetv3"} <= set(space_names())


def test_mobilenetv3_large_matches_the_paper():
    # Howard et al. 2019, Table 3: MobileNetV3-Large 1.0 at 224, 219 M multiply-adds, 5.4 M parameters
    # (torchvision's mobilenet_v3_large has 5,483,032).
    s = get_space("mobilenetv3")
    assert s.flops("mobilenetv3_large") == pytest.approx(219e6, rel=0.03)
    assert s.params("mobilenetv3_large") == pytest.approx(5.4e6, rel=0.03)
    assert s.params("mobilenetv3_large") == 5_483_032
    import torch

    model = s.build_model("mobilenetv3_large")
    assert sum(p.numel() for p in model.parameters()) == s.params("mobilenetv3_large")
    assert tuple(model(torch.randn(1, 3, 224, 224)).shape) == (1, 1000)


def test_proxylessnas_mobile_matches_its_authors():
    # github.com/mit-han-lab/proxylessnas README ("Mobile settings"): ProxylessNAS (mobile) 320M FLOPs
    # (multiply-adds), 74.6% top-1, 78 ms on a Pixel 1; 4.1 M parameters is the figure quoted for the released model.
    released = get_space(REPO / "tests" / "data" / "proxylessnas_mobile_released.yaml")
    assert released.flops("proxylessnas_mobile") == pytest.approx(320e6, rel=0.01)
    assert released.params("proxylessnas_mobile") == pytest.approx(4.1e6, rel=0.02)
    # On the search space's own widths (stage 2 at 24 channels, as in the Pixel 1 table) it is 5% lighter.
    space = get_space("proxylessnas")
    assert space.flops("proxylessnas_mobile") == pytest.approx(304.3e6, rel=0.001)
    assert [l.candidates for l in space.layers()][0] == ("ds_k3",)


@pytest.mark.parametrize("width, stem, last", [(1.0, 16, 1280), (1.2, 24, 1536)])
def test_ofa_widths(width, stem, last):
    s = get_space("ofa_mbv3", 224, width)
    assert s.stem_spec().cout == stem and s.tail_specs()[2].cout == last
    assert s.flops("ofa_smallest") < s.flops("ofa_largest")
    assert [len(l.candidates) for l in s.layers()] == [1] + [9, 9, 10, 10] * 5  # depth 2-4: zero on layers 3, 4
    with pytest.raises(Exception, match="widths 1, 1.2"):
        get_space("ofa_mbv3", 224, 0.5)


def test_every_proxylessnas_key_maps_to_one_op():
    space = get_space("proxylessnas", 224)
    keys = KEYS["proxylessnas_mobile"]
    ops = map_public_table(space, keys)
    assert len({s.key for s in ops.values()}) == len(keys) == 72  # one op per key, no two keys on one op
    want = {s.key for s in space.unique_specs()}
    assert want <= {s.key for s in ops.values()}  # the table prices every op of the space
    # The table also measured the fixed first block at kernels 5 and 7; those map to that layer's block.
    extra = sorted({s.key for s in ops.values()} - want)
    assert extra == ["ir-in112x112x32-out16-k5-e1-g1-s1-noexp-relu6", "ir-in112x112x32-out16-k7-e1-g1-s1-noexp-relu6"]
    assert ops["Logits-input:7x7x1280-output:1000"].key == "logits-in7x7x1280-out1000"


@pytest.mark.parametrize("res", [160, 176, 192, 208, 224])
def test_every_ofa_note10_key_maps_to_one_op(res):
    space = get_space("ofa_mbv3", res, 1.2)
    keys = KEYS[f"ofa_note10_{res}"]
    ops = map_public_table(space, keys)
    assert {s.key for s in ops.values()} == {s.key for s in space.unique_specs()}
    assert len(keys) == len(space.unique_specs()) == 96


def test_public_key_grammar_and_errors():
    space = get_space("ofa_mbv3", 224, 1.2)
    k = "expanded_conv-input:14x14x136-output:7x7x192-expand:816-kernel:5-stride:2-idskip:0-se:1-hs:1"
    assert parse_key(k).expand == 816
    assert public_key_spec(space, k).key == \
        "ir-in14x14x136-out192-k5-e6-g1-s2-se208-gatehsigmoid-hswish"
    from latency_lut.errors import UnknownOpError

    with pytest.raises(UnknownOpError, match="no op of space ofa_mbv3-224-w1.2"):
        public_key_spec(space, k.replace("kernel:5", "kernel:9"))
    with pytest.raises(ValueError, match="is not in the grammar"):
        parse_key("conv-in224x224x3-out16-k3-s2")
    with pytest.raises(ValueError, match="does not follow from input"):  # the strict grammar checks the shapes
        parse_key(k.replace("output:7x7", "output:8x8"))
