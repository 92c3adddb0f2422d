"""The ProxylessNAS / Once-for-All YAML grammar, on small tables of our own in those formats (the published
han-cai/files tables state no license, so they are not copied here)."""

from __future__ import annotations

import math

import pytest

from latency_lut.interop.mobile_table import Row, parse_key, read_table, write_table
from latency_lut.interop.source import SourceFormatError

PROXYLESS = """\
Conv-input:224x224x3-output:112x112x32:
  count: 982
  mean: 4.08
  var: 0.25
expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0:
  count: 159
  mean: 7.5
  var: 0.09
expanded_conv-input:56x56x24-output:56x56x24-expand:6-kernel:7-stride:1-idskip:1:
  count: 161
  mean: 9.1
  var: 0.1
Logits-input:7x7x1280-output:1000:
  count: 982
  mean: 0.31
  var: 0.0558
"""

OFA = """\
AvgPool2D-input:7x7x1152-output:1x1x1152:
  count: 495
  mean: 0.0153
  std: 0.0009
expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:0:
  count: 54
  mean: 4.81
  std: 0.0896
expanded_conv-input:14x14x136-output:14x14x136-expand:408-kernel:5-stride:1-idskip:1-se:1-hs:1:
  count: 60
  mean: 1.2
  std: 0.05
Conv_2-input:1x1x1152-output:1x1x1536:
  count: 500
  mean: 0.762
  std: 0.101
"""


def write(tmp_path, text, name="t.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return f


def test_proxylessnas_rows_and_key_fields(tmp_path):
    rows = read_table(write(tmp_path, PROXYLESS), "ProxylessNAS", "var")
    assert len(rows) == 4
    r = rows["expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0"]
    assert (r.key.h, r.key.cin, r.key.out_h, r.key.cout, r.key.expand, r.key.kernel, r.key.stride) == \
        (112, 16, 56, 24, 3, 5, 2)
    assert r.key.idskip is False and r.key.se is None and r.count == 159 and r.mean == 7.5
    assert r.std == pytest.approx(math.sqrt(0.09))
    logits = rows["Logits-input:7x7x1280-output:1000"].key
    assert logits.out_h is None and logits.cout == 1000
    assert all(r.key.key == k for k, r in rows.items())  # every key formats back to itself


def test_ofa_rows_have_mid_channels_se_and_hs(tmp_path):
    rows = read_table(write(tmp_path, OFA), "Once-for-All", "std")
    k = rows["expanded_conv-input:14x14x136-output:14x14x136-expand:408-kernel:5-stride:1-idskip:1-se:1-hs:1"]
    assert k.key.expand == 408 and k.key.se is True and k.key.hs is True and k.key.idskip is True
    assert k.std == 0.05
    assert all(r.key.key == k for k, r in rows.items())


def test_write_then_read_is_identity(tmp_path):
    for text, spread in ((PROXYLESS, "var"), (OFA, "std")):
        rows = read_table(write(tmp_path, text), "X", spread)
        again = read_table(write(tmp_path, write_table(rows, spread), "again.yaml"), "X", spread)
        assert again.keys() == rows.keys()
        for k, r in rows.items():
            assert isinstance(again[k], Row) and again[k].count == r.count and again[k].mean == r.mean
            assert again[k].std == pytest.approx(r.std, rel=1e-12)


@pytest.mark.parametrize("key,match", [
    ("expanded_conv-input:56x56x24-output:28x28x40-kernel:3", "not in the grammar"),
    ("Dense-input:7x7x3-output:7x7x3", "unknown layer type 'Dense'"),
    ("Conv-input:224x224x3-output:112x112x32-expand:1-kernel:3-stride:2-idskip:0", "takes no expand"),
    ("expanded_conv-input:56x56x24-output:28x28x24-expand:3-kernel:3-stride:1-idskip:0", "does not follow"),
    ("expanded_conv-input:56x56x24-output:56x56x32-expand:3-kernel:3-stride:1-idskip:1", "needs stride 1 and equal"),
    ("Logits-input:7x7x1280-output:1x1x1000", "class count"),
])
def test_bad_keys_are_named(tmp_path, key, match):
    f = write(tmp_path, f"{key}:\n  count: 3\n  mean: 1.0\n  var: 0.1\n")
    with pytest.raises(SourceFormatError, match=match) as e:
        read_table(f, "ProxylessNAS", "var")
    assert "t.yaml" in str(e.value)


@pytest.mark.parametrize("entry,match", [
    ("count: 3\n  mean: -1.0\n  var: 0.1", "finite and non-negative"),
    ("count: 3\n  mean: .nan\n  var: 0.1", "finite and non-negative"),
    ("count: 0\n  mean: 1.0\n  var: 0.1", "positive whole number"),
    ("count: 3\n  mean: 1.0\n  std: 0.1", "has 'std' where a ProxylessNAS table has 'var'"),
    ("count: 3\n  mean_us: 1000\n  var: 0.1", "fields are count, mean_us, var"),
])
def test_bad_values_are_named(tmp_path, entry, match):
    key = "Conv-input:224x224x3-output:112x112x32"
    with pytest.raises(SourceFormatError, match=match) as e:
        read_table(write(tmp_path, f"{key}:\n  {entry}\n"), "ProxylessNAS", "var")
    assert "t.yaml" in str(e.value) and key in str(e.value)


def test_duplicate_keys_and_files_not_of_the_format(tmp_path):
    with pytest.raises(SourceFormatError, match="appears twice"):
        read_table(write(tmp_path, PROXYLESS + "".join(PROXYLESS.splitlines(keepends=True)[:4])), "P", "var")
    with pytest.raises(SourceFormatError, match="not a P table"):
        read_table(write(tmp_path, "- 1\n- 2\n"), "P", "var")
    with pytest.raises(SourceFormatError, match="not a P YAML file"):
        read_table(write(tmp_path, "a: [1\n"), "P", "var")


def test_fractional_expand_ratio_formats_back():
    key = "expanded_conv-input:28x28x40-output:28x28x40-expand:2.5-kernel:3-stride:1-idskip:1"
    assert parse_key(key).expand == 2.5 and parse_key(key).key == key
