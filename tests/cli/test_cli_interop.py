"""fbnet-lut import / export / compare as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli_errors import assert_one_line_error
from tests.conftest import run_cli

DATA = Path(__file__).resolve().parents[1] / "interop" / "data" / "hwnasbench_fbnet"


@pytest.fixture
def imported(tmp_path):
    """pixel3 and raspi4 at 224, imported by the CLI."""
    out = {}
    for dev in ("pixel3", "raspi4"):
        p = run_cli("import", "hwnasbench", str(DATA / f"{dev}_latency_224.json"), "-o", f"{dev}.json",
                    cwd=tmp_path, check=True)
        assert "INCOMPLETE" in p.stdout and "no raw samples" in p.stdout
        out[dev] = tmp_path / f"{dev}.json"
    return out


def test_import_predict_compare_export(tmp_path, imported):
    p = run_cli("predict", "--lut", "pixel3.json", "-a", "fbnet_c", "--json", cwd=tmp_path, check=True)
    assert json.loads(p.stdout)["predictions"][0]["total_ms"] > 0
    p = run_cli("predict", "--lut", "pixel3.json", "-a", "fbnet_a", cwd=tmp_path)
    assert_one_line_error(p, "conv-in7x7x352-out1504-k1-s1")  # FBNet-A's head is no part of HW-NAS-Bench
    p = run_cli("compare", "pixel3.json", "raspi4.json", "--n", "3000", "--plot", "c.png", "--top-k", "2",
                cwd=tmp_path, check=True)
    assert "Kendall tau" in p.stdout and "relative raspi4" in p.stdout and "rank differs most" in p.stdout
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    doc = json.loads(run_cli("compare", "pixel3.json", "raspi4.json", "--n", "3000", "--json",
                             cwd=tmp_path, check=True).stdout)
    assert doc["n"] == 3000 and len(doc["pairs"]) == 1 and len(doc["rank_shifts"]) == 10
    run_cli("export", "hwnasbench", "pixel3.json", "-o", "back.json", cwd=tmp_path, check=True)
    exported = json.loads((tmp_path / "back.json").read_text())["entries"]
    assert exported == json.loads((DATA / "pixel3_latency_224.json").read_text())["entries"]


def test_import_bad_input_is_one_line(tmp_path, imported):
    p = run_cli("import", "hwnasbench", str(DATA / "fpga_latency_224.json"), "-o", "f.json", cwd=tmp_path)
    assert_one_line_error(p, "fpga_latency_224.json", "--allow-estimates")
    p = run_cli("import", "hwnasbench", str(DATA / "pixel3_latency_32.json"), "--resolution", "224", "-o", "x.json",
                cwd=tmp_path)
    assert_one_line_error(p, "pixel3_latency_32.json", "not 224 as asked")
    p = run_cli("import", "hwnasbench", "pixel3.json", "-o", "pixel3.json", cwd=tmp_path)
    assert_one_line_error(p, "one of the input files")
    p = run_cli("compare", "pixel3.json", cwd=tmp_path)
    assert_one_line_error(p, "at least two")
    p = run_cli("compare", "pixel3.json", "raspi4.json", "--plot", "raspi4.json", cwd=tmp_path)
    assert_one_line_error(p, "one of the LUT files")


def test_import_proxylessnas_table_and_export_it_back(tmp_path):
    from tests.interop.test_mobile_formats import PROXYLESS

    (tmp_path / "mobile.yaml").write_text(PROXYLESS)
    p = run_cli("import", "proxylessnas", "mobile.yaml", "-o", "px.json", "--json", cwd=tmp_path, check=True)
    doc = json.loads(p.stdout)
    assert doc["space"] == "proxylessnas-224" and doc["entries"] == 6 and doc["complete"] is False
    assert len(doc["imported"]["missing"]) > 0
    p = run_cli("export", "proxylessnas", "px.json", "-o", "back.yaml", cwd=tmp_path)
    assert_one_line_error(p, "px.json lacks", "proxylessnas")  # an incomplete table cannot be exported whole
    p = run_cli("import", "proxylessnas", "mobile.yaml", "--metric", "pixel3_latency", "-o", "x.json", cwd=tmp_path)
    assert_one_line_error(p, "--metric applies to hwnasbench only")
