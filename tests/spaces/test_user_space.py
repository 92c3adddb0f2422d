"""A user's space file: build its LUT, predict after the file is gone, DNAS over ragged candidate lists, and every
bad-input case named by file, line and field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import FAST

from latency_lut import load, predict
from latency_lut.errors import LUTFormatError
from latency_lut.spaces import SpaceFileError, get_space
from latency_lut.spaces.candidates import CandidateError, decode

USER = textwrap.dedent("""\
    # a small user space: per-stage candidate lists of different lengths, zero ops, a depth choice, SE and hswish
    name: tiny_user
    resolution: {default: 32, min: 16}
    num_classes: 10
    stem:
      - {op: conv, out: 8, kernel: 3, stride: 2, act: hswish}
    stages:
      - {out: 8, layers: 1, stride: 1, candidates: [ds_k3]}
      - {out: 16, layers: 2, stride: 2, candidates: [ir_k3_e3, ir_k5_e6_se0.25_hs, k3_e1_g2, skip], depth: [1, 2]}
      - {out: 24, layers: 2, stride: 1, candidates: [ir_k3_e4_hs, zero], se: 0.25, se_gate: hsigmoid}
    head_channels: 32
    head:
      - {op: conv, out: head, kernel: 1, act: hswish}
      - {op: logits, out: classes}
    archs:
      small: {choices: "ds_k3 | ir_k3_e3 zero | ir_k3_e4_hs zero"}
      big: "ds_k3 | ir_k5_e6_se0.25_hs ir_k5_e6_se0.25_hs | ir_k3_e4_hs ir_k3_e4_hs"
    """)


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(USER)
    return p


def test_user_space_geometry(user_file):
    s = get_space(user_file)
    assert s.id == "tiny_user-32" and s.num_layers == 5
    assert [len(l.candidates) for l in s.layers()] == [1, 4, 5, 1, 2]  # zero only where the shape is kept
    assert s.parse_arch("small").choices == (0, 0, 4, 0, 1)
    keys = {x.key for x in s.unique_specs()}
    assert "ir-in8x8x16-out16-k5-e6-g1-s1-se24-hswish" in keys  # se0.25 of 96 mid channels -> 24
    assert "ir-in8x8x16-out24-k3-e4-g1-s1-se16-gatehsigmoid-hswish" in keys  # the stage's SE and gate
    assert s.flops("small") < s.flops("big")


def test_build_predict_without_the_file_and_dnas(cli, user_file, tmp_path):
    out = tmp_path / "tiny.json"
    r = cli("build", "--space", str(user_file), "-o", str(out), "-q", "--json", *FAST)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["space"] == "tiny_user-32" and summary["complete"]
    space = get_space(user_file)
    user_file.unlink()  # the LUT embeds the definition: nothing else is needed from here on
    lut = load(out)
    assert lut.header["space"]["definition"]["name"] == "tiny_user"
    p = predict(lut, "big")
    assert p.total_ms > 0 and len(p.ops) == 1 + 5 + 2
    assert p.total_ms == pytest.approx(sum(o.ms for o in p.ops))
    r = cli("predict", "--lut", str(out), "-a", "small", "-a", "big", "--json")
    assert r.returncode == 0, r.stderr
    totals = [x["total_ms"] for x in json.loads(r.stdout)["predictions"]]
    assert totals[1] == pytest.approx(p.total_ms)

    import torch

    from latency_lut.dnas import LatencyTable

    t = LatencyTable.from_lut(lut)
    assert t.shape == (5, 5) and t.ragged
    assert t.mask.sum(1).tolist() == [1, 4, 5, 1, 2]
    # Masked entries never win: not in derive, not in sampling, and weight on them buys no latency.
    theta = torch.zeros(t.shape)
    theta[~t.mask] = 100.0
    assert t.derive(theta) == [0, 0, 0, 0, 0]
    w = t.sample(theta, tau=1.0)
    assert float(w[~t.mask].abs().sum()) == 0 and torch.allclose(w.sum(-1), torch.ones(5))
    one_hot = torch.nn.functional.one_hot(torch.tensor(space.parse_arch("big").choices), 5).double()
    assert float(t.expected(one_hot)) == pytest.approx(p.total_ms)
    leaked = one_hot.clone()
    leaked[0, 3] = 1.0  # mass on a masked entry of layer 1 (which offers one candidate)
    assert float(t.expected(leaked)) == pytest.approx(p.total_ms)
    assert float(t.latency_of(torch.tensor(space.parse_arch("small").choices))) == \
        pytest.approx(predict(lut, "small").total_ms)
    from latency_lut.errors import ArchitectureError

    with pytest.raises(ArchitectureError, match="layer 1 does not offer"):
        t.latency_of(torch.tensor([2, 0, 0, 0, 0]))


def test_space_mismatch_names_both(cli, user_file, tmp_path):
    out = tmp_path / "tiny.json"
    assert cli("build", "--space", str(user_file), "-o", str(out), "-q", *FAST).returncode == 0
    r = cli("predict", "--lut", str(out), "-a", "small", "--space", "fbnet")
    assert r.returncode == 2 and "tiny_user-32" in r.stderr and "fbnet-32" in r.stderr
    r = cli("validate", "--lut", str(out), "--space", "fbnet", "--n", "2")
    assert r.returncode == 2 and "tiny_user-32" in r.stderr and "fbnet-32" in r.stderr
    r = cli("build", "--space", "ofa_mbv3", "--width", "0.5")
    assert r.returncode == 2 and "widths 1, 1.2" in r.stderr
    other = tmp_path / "other.yaml"
    other.write_text(USER.replace("head_channels: 32", "head_channels: 40"))
    r = cli("predict", "--lut", str(out), "-a", "small", "--space", str(other))
    assert r.returncode == 2 and "differs from" in r.stderr and str(other) in r.stderr and "tiny.json" in r.stderr
    assert r.stderr.startswith("Error: ") and "Traceback" not in r.stderr
    with pytest.raises(LUTFormatError, match="differs from"):
        predict(load(out), "small", get_space(other))


@pytest.mark.parametrize("old, new, match", [
    ("ir_k3_e4_hs, zero]", "ir_k3_e4_hz, zero]", r"line 10, field stages\[2\]\.candidates\[0\]: candidate "
                                                 r"'ir_k3_e4_hz': unknown part 'hz'"),
    ("candidates: [ds_k3]}", "candidates: [conv3x3]}", r"line 8, field stages\[0\]\.candidates\[0\].*not a block"),
    ("ir_k3_e3, ir_k5", "ir_k3_e3_g3, ir_k5", r"field stages\[1\]\.candidates\[0\]: layer 2 \(8->16 channels.*"
                                               r"not divisible by groups 3"),
    ("ir_k3_e4_hs zero\"}", "ir_k3_e4_hs\"}", r"line 16, field archs\.small: does not fit the stages: .*4 choices"),
    ("ir_k3_e4_hs zero\"}", "ir_k3_e4_hs skip\"}", r"field archs\.small: .*layer 5: 'skip' is not a candidate"),
    ("{op: logits, out: classes}", "{op: logit, out: classes}", r"line 14, field head\[1\]\.op: unknown op kind"),
    ("stride: 2, act: hswish}", "stride: 2, act: hswish, padding: 0}\n  - {op: maxpool, kernel: 17, stride: 4, "
                                "padding: 0}", r"field stem: at resolution 32, width 1: .*zero-size map"),
    ("layers: 2, stride: 1,", "layers: 2, stride: 1, depth: [1, 3],", r"field stages\[2\]\.depth: must be a list"),
    ("name: tiny_user", "name: Tiny-User", r"line 2, field name"),
    ("num_classes: 10", "num_classes: 10\nlayers: 3", r"line 5, field layers: unknown field"),
])
def test_bad_space_files_name_file_line_and_field(tmp_path, old, new, match):
    assert old in USER
    p = tmp_path / "bad.yaml"
    p.write_text(USER.replace(old, new, 1))
    with pytest.raises(SpaceFileError, match=match) as ei:
        get_space(p)
    assert str(p) in str(ei.value)


def test_zero_size_map_at_a_requested_resolution(user_file):
    doc = USER.replace("stride: 2, act: hswish}", "stride: 2, act: hswish}\n  - {op: maxpool, kernel: 9, stride: 2, "
                                                  "padding: 0}")
    user_file.write_text(doc)
    assert get_space(user_file, 32).resolution == 32
    with pytest.raises(SpaceFileError, match=r"field stem: at resolution 16, width 1: .*zero-size map"):
        get_space(user_file, 16)


def test_bad_space_file_on_the_cli(cli, tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(USER.replace("ir_k3_e3,", "ir_k3_x3,"))
    r = cli("build", "--space", str(p), "-q", *FAST)
    assert r.returncode == 2 and r.stderr.startswith("Error: space file ") and "stages[1].candidates[0]" in r.stderr
    r = cli("build", "--space", str(tmp_path / "missing.yaml"), "-q")
    assert r.returncode == 2 and "does not exist" in r.stderr
    p.write_text("name: [unclosed\n")
    r = cli("build", "--space", str(p), "-q")
    assert r.returncode == 2 and "line 2" in r.stderr and "not valid YAML" in r.stderr
    # A space file goes through the shared YAML limits: an alias bomb is refused, not expanded.
    p.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + chr(ord(c) - 1)] * 10)}]\n" for c in "bcdefghij") + "name: *j\n")
    r = cli("build", "--space", str(p), "-q")
    assert r.returncode == 2 and r.stderr.startswith("Error: space file ") and "not accepted" in r.stderr
    p.write_text("!!python/object/apply:os.system ['echo hi']\n")
    r = cli("build", "--space", str(p), "-q")
    assert r.returncode == 2 and "not valid YAML" in r.stderr and "hi" not in r.stdout


@pytest.mark.parametrize("text, fields", [
    ("k3_e1_g2", dict(op="ir", kernel=3, expansion=1, groups=2, expand=True)),
    ("ir_k5_e6_se0.25_hs", dict(op="ir", kernel=5, expansion=6, se=0.25, act="hswish")),
    ("ds_k3_nre", dict(op="ir", kernel=3, expand=False, act="relu")),
    ("ir_k7_e4.5_r6_hsig_noskip", dict(kernel=7, expansion=4.5, act="relu6", gate="hsigmoid", residual=False)),
    ("skip", dict(op="skip")),
    ("zero", dict(op="zero")),
])
def test_candidate_grammar(text, fields):
    c = decode(text)
    for k, v in fields.items():
        assert getattr(c, k) == v, k


@pytest.mark.parametrize("bad, match", [("k4_e6", "must be odd"), ("ir_k3", "needs its expansion"),
                                        ("ds_k3_e6", "no _e or _g"), ("k3_e6_hs_hs", "repeats"),
                                        ("mb_k3_e6", "not a block"), ("k3_e6_se2", r"se ratio in \[0, 1\]")])
def test_candidate_grammar_errors(bad, match):
    with pytest.raises(CandidateError, match=match):
        decode(bad)


def test_open_registry(user_file, tmp_path):
    from latency_lut.spaces import register_space, space_names

    assert register_space(user_file) == "tiny_user"
    assert "tiny_user" in space_names() and get_space("tiny_user").source == str(user_file)
    clash = tmp_path / "clash.yaml"
    clash.write_text(USER.replace("name: tiny_user", "name: fbnet"))
    with pytest.raises(SpaceFileError, match="is a built-in space"):
        register_space(clash)
