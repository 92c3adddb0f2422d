import pytest

from latency_lut.errors import ArchitectureError
from latency_lut.spaces import get_space
from latency_lut.spaces.fbnet import ARCHS, CANDIDATES


@pytest.fixture(scope="module")
def space():
    return get_space("fbnet", 224)


def test_table1_geometry(space):
    layers = space.layers()
    assert len(layers) == 22
    assert [l.cout for l in layers] == [16] + [24] * 4 + [32] * 4 + [64] * 4 + [112] * 4 + [184] * 4 + [352]
    assert [l.stride for l in layers if l.stride == 2] == [2] * 4
    assert [l.index for l in layers if l.stride == 2] == [2, 6, 10, 18]
    assert (layers[0].h, layers[0].cin) == (112, 16)
    assert (layers[-1].h, layers[-1].cin) == (7, 184)
    assert len({(l.cin, l.h, l.cout, l.stride) for l in layers}) == 12


def test_unique_specs_cover_every_nontrivial_op_once(space):
    specs = space.unique_specs()
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys)) == 109
    assert not any(s.is_identity for s in specs)
    assert "conv-in7x7x352-out1504-k1-s1" in keys and "conv-in7x7x352-out1984-k1-s1" in keys
    for name in ARCHS:
        assert {s.key for s in space.arch_specs(name) if not s.is_identity} <= set(keys)


@pytest.mark.parametrize("name, lo, hi", [("fbnet_a", 249e6, 252e6), ("fbnet_b", 295e6, 310e6),
                                          ("fbnet_c", 375e6, 390e6)])
def test_flops_of_named_architectures(space, name, lo, hi):
    assert lo <= space.flops(name) <= hi


def test_fbnet_c_params_match_model_zoos(space):
    assert abs(space.params("fbnet_c") - 5.57e6) < 0.01e6


def test_full_model_is_built_from_the_same_specs(space):
    import torch

    model = space.build_model("fbnet_a")
    assert len(model) == 22 + 4
    assert sum(p.numel() for p in model.parameters()) == space.params("fbnet_a")
    assert tuple(model(torch.randn(1, 3, 224, 224)).shape) == (1, 1000)


def test_parse_arch_by_name_names_and_indices(space):
    a = space.parse_arch("FBNet-A")
    assert a.head == 1504 and a.choices[0] == CANDIDATES.index("skip")
    names = " ".join(space.choice_names(a))
    assert space.parse_arch(names).choices == a.choices
    assert space.parse_arch(",".join(str(c) for c in a.choices)).choices == a.choices
    assert space.parse_arch(list(a.choices)).choices == a.choices


@pytest.mark.parametrize("arch, match", [
    ("fbnet_z", "unknown architecture"),
    (" ".join(["k3_e1"] * 21), "21 choices"),
    (" ".join(["k3_e1"] * 21 + ["k7_e6"]), "layer 22: 'k7_e6' is not a candidate"),
    (" ".join(["9"] * 22), "out of range"),
])
def test_parse_arch_errors(space, arch, match):
    with pytest.raises(ArchitectureError, match=match):
        space.parse_arch(arch)


def test_other_resolutions_and_widths():
    s = get_space("fbnet", 96, 0.35)
    assert s.id == "fbnet-96-w0.35"
    assert all(l.cout % 8 == 0 for l in s.layers())
    assert s.layers()[0].h == 48
    assert s.flops("fbnet_a") < get_space("fbnet", 224).flops("fbnet_a") / 10
    import torch

    assert tuple(s.build_model("fbnet_c")(torch.randn(1, 3, 96, 96)).shape) == (1, 1000)
    odd = get_space("fbnet", 100)
    assert odd.tail_specs()[0].h == 4  # 100 -> 50 -> 25 -> 13 -> 7 -> 4


def test_space_argument_errors():
    with pytest.raises(ArchitectureError):
        get_space("mobilenet")
    with pytest.raises(ArchitectureError):
        get_space("fbnet", 8)
    with pytest.raises(ArchitectureError):
        get_space("fbnet", 224, 0)
