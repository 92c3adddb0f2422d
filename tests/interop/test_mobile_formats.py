"""ProxylessNAS and OFA tables imported onto the proxylessnas and ofa_mbv3 spaces, on tables of our own in those
formats (the published ones state no license, so they are not copied here)."""

from __future__ import annotations

import pytest
import yaml

from latency_lut.interop import SourceFormatError, export_lut, import_lut
from latency_lut.predict import predict
from latency_lut.spaces import get_space
from latency_lut.synthetic import synthetic_lut

PROXYLESS = """\
Conv-input:224x224x3-output:112x112x32:
  count: 982
  mean: 4.08
  var: 0.25
expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0:
  count: 900
  mean: 3.1
  var: 0.04
expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0:
  count: 159
  mean: 7.5
  var: 0.09
expanded_conv-input:56x56x24-output:56x56x24-expand:6-kernel:7-stride:1-idskip:1:
  count: 161
  mean: 9.1
  var: 0.1
Conv_1-input:7x7x320-output:7x7x1280:
  count: 982
  mean: 3.09
  var: 0.19
Logits-input:7x7x1280-output:1000:
  count: 982
  mean: 0.31
  var: 0.0558
"""


def write(tmp_path, text, name="t.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return f


def test_proxylessnas_keys_map_to_one_op_each_and_missing_ops_are_listed(tmp_path):
    lut = import_lut("proxylessnas", [write(tmp_path, PROXYLESS)])
    info = lut.header["imported"]
    assert lut.header["space"]["id"] == "proxylessnas-224" and len(lut) == 6
    assert info["statistics"] == ["count", "mean", "var"] and info["raw_samples"] is False
    assert lut.header["complete"] is False and len(info["missing"]) == len(get_space("proxylessnas").unique_specs()) - 6
    e = next(e for e in lut.entries.values() if e.extra["source_key"].startswith("expanded_conv-input:56x56x24"))
    assert e.stats.count == 161 and e.median == e.stats.mean == 9.1 and e.stats.std == pytest.approx(0.1 ** 0.5)
    assert e.spec.kernel == 7 and e.spec.has_residual


@pytest.mark.parametrize("fmt,space", [("proxylessnas", get_space("proxylessnas", 224)),
                                       ("ofa", get_space("ofa_mbv3", 160, 1.2))])
def test_full_table_roundtrip_and_predict(tmp_path, fmt, space):
    built = synthetic_lut(space, seed=5)
    out = export_lut(fmt, built, tmp_path / "table.yaml")
    doc = yaml.safe_load(out.read_text())
    assert len(doc) == len([s for s in space.unique_specs() if not s.is_identity])
    back = import_lut(fmt, [out])
    assert back.header["complete"] is True and set(back.entries) == set(built.entries)
    for k, e in back.entries.items():
        assert e.spec == built[k].spec and e.stats.mean == built[k].stats.mean
        assert e.stats.count == built[k].stats.count and e.stats.std == pytest.approx(built[k].stats.std)
    arch = next(iter(space.archs))
    assert predict(back, arch).total_ms > 0
    again = export_lut(fmt, back, tmp_path / "again.yaml")
    assert yaml.safe_load(again.read_text()) == doc


def test_ofa_table_for_another_width_or_resolution(tmp_path):
    space = get_space("ofa_mbv3", 160, 1.2)
    text = export_lut("ofa", synthetic_lut(space), tmp_path / "160.yaml").read_text()
    with pytest.raises(SourceFormatError, match="resolution 160 .*not 224 as asked"):
        import_lut("ofa", [write(tmp_path, text)], resolution=224)
    narrow = text.replace("x24-", "x16-").replace("x24:", "x16:")  # width 1.0's stem channels
    with pytest.raises(SourceFormatError, match="another space, resolution or width"):
        import_lut("ofa", [write(tmp_path, narrow, "n.yaml")])


def test_proxylessnas_file_given_as_ofa(tmp_path):
    with pytest.raises(SourceFormatError, match="has 'var' where a Once-for-All table has 'std'"):
        import_lut("ofa", [write(tmp_path, PROXYLESS)])


@pytest.mark.parametrize("fmt,space,keys", [
    ("proxylessnas", get_space("proxylessnas", 224), [
        "Conv-input:224x224x3-output:112x112x32", "Conv_1-input:7x7x320-output:7x7x1280",
        "Logits-input:7x7x1280-output:1000",
        "expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0",
        "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:5-stride:2-idskip:0"]),
    ("ofa", get_space("ofa_mbv3", 160, 1.2), [
        "Conv-input:160x160x3-output:80x80x24", "Conv_1-input:5x5x192-output:5x5x1152",
        "AvgPool2D-input:5x5x1152-output:1x1x1152", "Conv_2-input:1x1x1152-output:1x1x1536",
        "Logits-input:1x1x1536-output:1000",
        "expanded_conv-input:10x10x136-output:5x5x192-expand:816-kernel:7-stride:2-idskip:0-se:1-hs:1",
        "expanded_conv-input:40x40x32-output:40x40x32-expand:96-kernel:3-stride:1-idskip:1-se:0-hs:0"]),
])
def test_export_of_a_built_lut_writes_the_published_keys(tmp_path, fmt, space, keys):
    # Keys as they appear in the published tables (han-cai/files), for the layer types of each role.
    doc = yaml.safe_load(export_lut(fmt, synthetic_lut(space), tmp_path / "t.yaml").read_text())
    assert set(keys) <= set(doc)
