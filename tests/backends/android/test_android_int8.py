"""int8 LUTs on a phone: full-integer models through benchmark_model with XNNPACK, via the loopback daemon."""
# ruff: noqa: F811  (pytest fixtures imported from android_fixtures are test arguments of the same name)

from __future__ import annotations

import json
import shutil

from android_fixtures import LOOPBACK, env_for_cli, phone, phone_home  # noqa: F401
from conftest import FAST, run_cli

from latency_lut.export import artifact_path, export_spec
from latency_lut.lut import load
from latency_lut.quantize import tflite_ops
from latency_lut.spaces import get_space


def test_int8_build_on_the_phone_runs_int8_models_with_xnnpack(tmp_path, phone, phone_home, artifact_cache):
    specs = get_space("fbnet", 32, 0.25).unique_specs()
    real = export_spec(specs[4], "tflite", artifact_cache, dtype="int8")  # one real full-integer micro-model
    assert {dt[0] for op, dt in tflite_ops(real) if op.endswith("CONV_2D")} == {"int8"}
    root = tmp_path / "cache"  # every key gets a copy of it: exporting all 109 takes minutes
    for spec in specs:
        dest = artifact_path(spec, "tflite", root, dtype="int8")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real, dest)
    commands: list[str] = []
    phone.shell_hook = lambda c: commands.append(c) if "--graph=" in c else None
    env = env_for_cli(phone, phone_home, FBNET_LUT_CACHE=str(root), FBNET_LUT_STORE=str(tmp_path / "s.sqlite"))
    res = run_cli("build", "--device", str(LOOPBACK), "--resolution", "32", "--width", "0.25", "--dtype", "int8",
                  *FAST, "--rounds", "1", "-o", str(tmp_path / "lut.json"), "--json", cwd=tmp_path, env=env,
                  timeout=900)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["complete"] is True
    h = load(tmp_path / "lut.json").header
    assert h["dtype"] == "int8" and h["exporter"]["quantizer"] == "litert-torch-pt2e"
    graphs = [c for c in commands if "--graph=" in c and ".no-such-model" not in c]
    assert len(graphs) == 109 and all("--use_xnnpack=true" in c for c in graphs)
    # the phone ran the int8 file (pushed under its checksum): one distinct model, the full-integer one
    assert len({c.split("--graph=")[1].split()[0] for c in graphs}) == 1
    assert [p for p in phone.sent if p.endswith(".tflite")] and not (phone.data_dir / "fbnet-lut").exists()
