"""HW-NAS-Bench import and export, against the real tables (MIT, copied into tests/interop/data with LICENSE)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from latency_lut.interop import SourceFormatError, export_doc, export_lut, import_lut
from latency_lut.interop.hwnasbench import KNOWN_EXTRAS, METRICS, format_key, parse_key
from latency_lut.lut import load
from latency_lut.predict import arch_table, predict, predict_batch
from latency_lut.spaces import get_space
from latency_lut.synthetic import synthetic_lut

DATA = Path(__file__).parent / "data" / "hwnasbench_fbnet"
REFERENCE = json.loads((DATA / "api_reference_sums.json").read_text())["reference_sums"]


def table(metric: str, res: int) -> Path:
    return DATA / f"{metric}_{res}.json"


def test_reproduces_all_48_reference_totals_exactly():
    checked = 0
    for metric in METRICS:
        for res in (224, 32):
            lut = import_lut("hwnasbench", [table(metric, res)], allow_estimates=True)
            for ref in (r for r in REFERENCE if r["resolution"] == res):
                # Exact equality: the same entries summed in the API's network order.
                assert predict(lut, ref["choices"]).total_ms == ref["lut_sum"][metric], (metric, res)
                checked += 1
    assert checked == 48


@pytest.mark.parametrize("res,space,missing", [
    (224, "fbnet-224", ["conv-in7x7x352-out1504-k1-s1", "fc-in1504-out1000", "gap-in7x7x1504"]),
    (32, "fbnet_cifar100-32", []),
])
def test_header_says_imported_source_license_device_and_what_is_missing(res, space, missing):
    lut = import_lut("hwnasbench", [table("pixel3_latency", res)])
    h, info = lut.header, lut.header["imported"]
    assert h["space"]["id"] == space and h["device"] == "pixel3" and h["unit"] == "ms"
    assert info["format"] == "hwnasbench" and "GATECH-EIC/HW-NAS-Bench" in info["source"]
    assert info["license"].startswith("MIT") and info["device"] == "Google Pixel 3 (CPU)"
    assert info["raw_samples"] is False and "no raw samples" in info["note"] and info["estimate"] is False
    assert info["statistics"] == ["value"]
    # FBNet-A's 1504-wide head is no part of HW-NAS-Bench's 224 layout: listed, and the LUT is incomplete.
    assert sorted(info["missing"]) == missing and h["complete"] is (not missing)
    assert info["skipped"] == ([] if res == 224 else sorted(KNOWN_EXTRAS))
    src = json.loads(table("pixel3_latency", res).read_text())["entries"]
    assert len(lut) == len(src) - len(info["skipped"])
    for e in lut.entries.values():
        v = src[e.extra["source_key"]]
        assert e.median == e.stats.mean == e.stats.p10 == e.stats.max == v and e.stats.count == 1


def test_imported_lut_is_a_normal_lut_file(tmp_path):
    lut = import_lut("hwnasbench", [table("raspi4_latency", 224)])
    back = load(lut.save(tmp_path / "raspi4.json"))
    assert back.header == lut.header
    assert {k: e.to_dict() for k, e in back.entries.items()} == {k: e.to_dict() for k, e in lut.entries.items()}
    with pytest.raises(Exception, match="lacks 3 op"):
        predict(back, "fbnet_a")
    assert predict(back, "fbnet_c").total_ms > 0


def test_timed_identity_skips_are_priced_and_batch_agrees():
    lut = import_lut("hwnasbench", [table("pixel3_latency", 224)])
    space = get_space("fbnet", 224)
    ident = "skip-in56x56x24-out24-s1"
    assert lut[ident].median == pytest.approx(0.0278533)
    choices = ["k3_e1"] * 22
    with_skip = list(choices)
    with_skip[3] = "skip"  # layer 4: 56x56, 24 -> 24, stride 1: an identity
    assert space.candidate_spec(space.layers()[3], "skip").key == ident
    delta = predict(lut, with_skip).total_ms - predict(lut, choices).total_ms
    k3 = lut["ir-in56x56x24-out24-k3-e1-g1-s1"].median
    assert delta == pytest.approx(lut[ident].median - k3)
    import numpy as np

    idx = np.array([[space.candidates.index(c) for c in with_skip]])
    assert predict_batch(lut, idx)[0] == pytest.approx(predict(lut, with_skip).total_ms, rel=1e-12)
    # Jetson's identities are 0.0 in the source: the structural zero, not stored.
    tx2 = import_lut("hwnasbench", [table("edgegpu_latency", 224)])
    assert ident not in tx2 and predict(tx2, with_skip).ops[4].ms == 0.0


def test_dnas_runs_on_an_imported_lut():
    import torch

    from latency_lut.dnas import LatencyTable, fbnet_loss

    lut = import_lut("hwnasbench", [table("pixel3_latency", 224)])
    lat = LatencyTable.from_lut(lut)
    theta = torch.zeros(lat.shape, requires_grad=True)
    m = torch.softmax(theta, dim=-1)
    loss = fbnet_loss(torch.tensor(2.0), lat.expected(m))
    loss.backward()
    assert theta.grad is not None and bool(theta.grad.abs().sum() > 0)
    one = torch.tensor([0] * 22)
    assert float(lat.latency_of(one)) == pytest.approx(predict(lut, ["k3_e1"] * 22).total_ms)


def test_estimates_need_the_flag_and_stay_marked():
    with pytest.raises(SourceFormatError, match="--allow-estimates"):
        import_lut("hwnasbench", [table("fpga_latency", 224)])
    lut = import_lut("hwnasbench", [table("eyeriss_latency", 224)], allow_estimates=True)
    assert lut.header["imported"]["estimate"] is True and lut.header["device_kind"] == "estimate"


def test_energy_tables_import_in_mj():
    lut = import_lut("hwnasbench", [table("edgegpu_energy", 32)])
    assert lut.header["unit"] == "mJ" and lut.header["imported"]["unit"] == "mJ"


def test_every_key_parses_to_one_op_and_formats_back():
    for f in DATA.glob("*_*.json"):
        if f.name == "api_reference_sums.json":
            continue
        keys = json.loads(f.read_text())["entries"]
        specs = {parse_key(k).key for k in keys}
        assert len(specs) == len(keys)  # one op per key, no two keys on one op
        assert all(format_key(parse_key(k)) == k for k in keys)


def test_dump_of_all_metrics_needs_metric(tmp_path):
    dump = {m: json.loads(table(m, 224).read_text())["entries"] for m in ("pixel3_latency", "raspi4_latency")}
    f = tmp_path / "fbnet_metrics.json"
    f.write_text(json.dumps(dump))
    with pytest.raises(SourceFormatError, match="--metric"):
        import_lut("hwnasbench", [f])
    lut = import_lut("hwnasbench", [f], metric="raspi4_latency")
    assert lut.header["device"] == "raspi4" and len(lut) == 112


# ---- bad input: an error naming the file and the key -----------------------------------------------------------
def _doc(**changes):
    doc = json.loads(table("pixel3_latency", 224).read_text())
    doc.update(changes)
    return doc


def _write(tmp_path, doc_or_text, name="t.json") -> Path:
    f = tmp_path / name
    f.write_text(doc_or_text if isinstance(doc_or_text, str) else json.dumps(doc_or_text))
    return f


def test_duplicate_key_is_an_error(tmp_path):
    text = table("pixel3_latency", 224).read_text()
    key = "FC_Cin1984_Cout1000"
    text = text.replace(f'"{key}": 1.58781', f'"{key}": 1.58781, "{key}": 1.6')
    with pytest.raises(SourceFormatError, match=f"t.json: key '{key}' appears twice"):
        import_lut("hwnasbench", [_write(tmp_path, text)])


def test_key_in_two_files_is_an_error(tmp_path):
    a = _write(tmp_path, _doc(), "a.json")
    b = _write(tmp_path, _doc(entries={"FC_Cin1984_Cout1000": 1.0}), "b.json")
    with pytest.raises(SourceFormatError, match="b.json: key 'FC_Cin1984_Cout1000' is also in .*a.json"):
        import_lut("hwnasbench", [a, b])


@pytest.mark.parametrize("key,match", [
    ("ConvBlock_H56_W56_Cin24_Cout32_exp3_kernel5", "not in HW-NAS-Bench's grammar"),
    ("AvgP_H7_W7_Cin1984_Cout1984_kernel3_stride1", "not a global average pool"),
    ("ConvBlock_H56_W56_Cin24_Cout40_exp3_kernel5_stride2_group1", "no op of space fbnet-224"),
])
def test_bad_or_foreign_key_is_named(tmp_path, key, match):
    doc = _doc()
    doc["entries"][key] = 1.0
    with pytest.raises(SourceFormatError, match=match) as e:
        import_lut("hwnasbench", [_write(tmp_path, doc)])
    assert "t.json" in str(e.value) and key in str(e.value)


@pytest.mark.parametrize("value,match", [(-0.5, "finite and non-negative"), ("NaN", "not a number"),
                                          ("\"3 ms\"", "not a number")])
def test_negative_nan_or_text_values(tmp_path, value, match):
    text = table("pixel3_latency", 224).read_text().replace('"FC_Cin1984_Cout1000": 1.58781',
                                                             f'"FC_Cin1984_Cout1000": {value}')
    with pytest.raises(SourceFormatError, match=match) as e:
        import_lut("hwnasbench", [_write(tmp_path, text)])
    assert "t.json" in str(e.value)


def test_unit_the_format_does_not_use(tmp_path):
    with pytest.raises(SourceFormatError, match="unit 'us'"):
        import_lut("hwnasbench", [_write(tmp_path, _doc(unit="us"))])


def test_table_for_another_resolution_than_asked():
    with pytest.raises(SourceFormatError, match="resolution 32 .*not 224 as asked") as e:
        import_lut("hwnasbench", [table("pixel3_latency", 32)], resolution=224)
    assert "pixel3_latency_32.json" in str(e.value) and "ConvNorm_H32_W32_Cin3" in str(e.value)


def test_table_for_another_width(tmp_path):
    # FBNet at width 0.5 has 8 stem channels: its keys are no ops of the width-1 space.
    doc = _doc(entries={"ConvNorm_H224_W224_Cin3_Cout8_kernel3_stride2_group1": 1.0,
                        "ConvBlock_H112_W112_Cin8_Cout8_exp1_kernel3_stride1_group1": 1.0})
    with pytest.raises(SourceFormatError, match="another space, resolution or width"):
        import_lut("hwnasbench", [_write(tmp_path, doc)])


@pytest.mark.parametrize("content,match", [
    ("[1, 2]", "top level is not a JSON object"),
    ("stem: 1\n", "not a HW-NAS-Bench JSON file"),
    ('{"format": "fbnet-lut", "entries": {}}', "is a fbnet-lut LUT"),
])
def test_file_not_of_the_format(tmp_path, content, match):
    with pytest.raises(SourceFormatError, match=match):
        import_lut("hwnasbench", [_write(tmp_path, content)])


# ---- export ------------------------------------------------------------------------------------------------------
def test_roundtrip_of_an_imported_table(tmp_path):
    lut = import_lut("hwnasbench", [table("pixel3_latency", 224)])
    out = export_lut("hwnasbench", lut, tmp_path / "pixel3_latency_224.json")
    back = import_lut("hwnasbench", [out])
    assert {k: e.to_dict() for k, e in back.entries.items()} == {k: e.to_dict() for k, e in lut.entries.items()}
    assert back.header["device"] == "pixel3" and back.header["imported"]["missing"] == lut.header["imported"]["missing"]
    # The exported file is the source table again, value for value.
    assert json.loads(out.read_text())["entries"] == json.loads(table("pixel3_latency", 224).read_text())["entries"]


@pytest.mark.parametrize("space", [get_space("fbnet", 224), get_space("fbnet_cifar100", 32)])
def test_roundtrip_of_a_built_lut_on_the_fields_the_format_holds(tmp_path, space):
    lut = synthetic_lut(space, seed=3)
    out = export_lut("hwnasbench", lut, tmp_path / "x.json")
    doc = json.loads(out.read_text())
    assert len(doc["entries"]) == 112  # HW-NAS-Bench's layout: 12 shapes x 9 candidates + stem, head, pool, fc
    back = import_lut("hwnasbench", [out])
    held = {s.key for s in [space.stem_spec(), *space.tail_specs()]} | {
        space.candidate_spec(l, c).key for l in space.layers() for c in space.candidates}
    assert set(back.entries) == {k for k in held if k in lut}
    for k, e in back.entries.items():
        assert e.spec == lut[k].spec and e.median == lut[k].median
    tab_a, tab_b = arch_table(lut), arch_table(back)
    assert (tab_a.table == tab_b.table).all() and math.isclose(tab_a.fixed, tab_b.fixed)


def test_export_refuses_an_incomplete_lut_or_another_space(tmp_path):
    lut = synthetic_lut(get_space("fbnet", 224))
    del lut.entries["fc-in1984-out1000"]
    with pytest.raises(SourceFormatError, match="lacks 1 op.*fc-in1984-out1000"):
        export_doc("hwnasbench", lut)
    lut.path = tmp_path / "l.json"
    with pytest.raises(SourceFormatError, match="is the LUT being exported"):
        export_lut("hwnasbench", lut, lut.path)


def test_measuring_missing_ops_into_an_imported_lut_is_a_clear_error():
    from latency_lut.errors import DeviceError
    from latency_lut.extend import measure_into
    from latency_lut.ops import OpSpec

    lut = import_lut("hwnasbench", [table("pixel3_latency", 224)])
    with pytest.raises(DeviceError, match="imported from hwnasbench .pixel3.; there is no device"):
        measure_into(lut, [OpSpec("conv", 3, 32, 32, 8, 3, 1)])
