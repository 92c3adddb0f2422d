import json

import pandas as pd
import pytest

from latency_lut import lut as lutmod
from latency_lut.errors import LUTFormatError, OutputPathError
from latency_lut.lut import LUT, Entry
from latency_lut.measure import compute_stats
from latency_lut.spaces import get_space


def make_lut(n=6) -> LUT:
    specs = get_space("fbnet", 64, 0.25).unique_specs()[:n]
    entries = {s.key: Entry(s, compute_stats([0.1 * (i + 1) + 0.01 * j for j in range(9)]), flagged=i == 2)
               for i, s in enumerate(specs)}
    header = {"device": "local", "device_info": {"cpu_model": "test"}, "runtime": "onnxruntime",
              "runtime_version": "1.31", "threads": 1, "dtype": "fp32", "unit": "ms", "protocol": {"runs": 9},
              "exporter": {"format": "onnx"}, "space": {"name": "fbnet", "resolution": 64, "width": 0.25},
              "tool_version": "0.1.0", "created": "2026-01-01T00:00:00+00:00", "complete": False,
              "calibration": None}
    return LUT(header, entries)


def test_round_trip_is_exact(tmp_path):
    lut = make_lut()
    path = lut.save(tmp_path / "sub" / "l.json")
    back = lutmod.load(path)
    assert back.header == lut.header
    assert back.to_dict() == lut.to_dict()
    assert [e.stats for e in back.entries.values()] == [lut.entries[k].stats for k in back.entries]
    assert back.entries[list(lut.entries)[2]].flagged


def test_file_is_plain_json_readable_without_the_package(tmp_path):
    path = make_lut().save(tmp_path / "l.json")
    doc = json.loads(path.read_text())
    key = next(iter(doc["entries"]))
    e = doc["entries"][key]
    assert {"median", "p10", "p90", "mean", "std", "cv", "flops", "params", "kind"} <= set(e)
    assert doc["schema_version"] == 1 and doc["header"]["unit"] == "ms"


def test_dataframe_and_csv(tmp_path):
    lut = make_lut()
    df = lut.to_dataframe()
    assert len(df) == 6 and df["median"].is_monotonic_increasing
    assert set(df["key"]) == set(lut.entries)
    csv = pd.read_csv(lut.to_csv(tmp_path / "l.csv"))
    assert list(csv["key"]) == list(df["key"])
    assert csv["flops"].tolist() == df["flops"].tolist()


def _write(tmp_path, mutate):
    doc = make_lut().to_dict()
    mutate(doc)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    return p


def _first(doc):
    return doc["entries"][next(iter(doc["entries"]))]


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.update(schema_version=2), "schema_version 2 is not supported"),
    (lambda d: d.update(format="other"), "not a fbnet-lut LUT"),
    (lambda d: d["header"].pop("runtime"), "header field 'runtime' is missing"),
    (lambda d: d["header"].update(threads="1"), "header field 'threads' has the wrong type"),
    (lambda d: _first(d).update(median=-1.0), "'median' is -1.0"),
    (lambda d: _first(d).update(p90=float("nan")), "'p90' is nan"),
    (lambda d: _first(d).pop("p10"), "'p10' is missing"),
    (lambda d: _first(d).update(cout=999), "inconsistent"),
    (lambda d: _first(d).update(kind="pool"), "unknown op kind"),
    (lambda d: _first(d).update(p10=100.0, p25=100.0), "out of order"),
])
def test_invalid_files_name_the_problem(tmp_path, mutate, match):
    with pytest.raises(LUTFormatError, match=match):
        lutmod.load(_write(tmp_path, mutate))


def test_truncated_and_corrupt_files(tmp_path):
    text = json.dumps(make_lut().to_dict(), indent=1)
    t = tmp_path / "t.json"
    t.write_text(text[: len(text) // 2])
    with pytest.raises(LUTFormatError, match="t.json is truncated"):
        lutmod.load(t)
    c = tmp_path / "c.json"
    c.write_text(text.replace('"entries"', '"entries" ]', 1))
    with pytest.raises(LUTFormatError, match="c.json is corrupt"):
        lutmod.load(c)
    with pytest.raises(LUTFormatError, match="does not exist"):
        lutmod.load(tmp_path / "missing.json")


def test_unwritable_outputs(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        make_lut().save(blocker / "l.json")
    with pytest.raises(OutputPathError, match="is a directory"):
        make_lut().save(tmp_path)
