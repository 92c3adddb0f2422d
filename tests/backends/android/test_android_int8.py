"""int8 LUTs on a phone: full-integer models through benchmark_model with XNNPACK, via the loopback daemon."""
# ruff: noqa: F811  (pytest fixtures imported from android_fixtures are test arguments of the same name)

from __future__ import annotations

import json
import shutil

from android_fixtures import LOOPBACK, env_for_cli, loopback_doc, make_backend, phone, phone_home, tiny_models  # noqa: F401
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


def _bench_words(phone) -> list[list[str]]:
    import shlex

    return [shlex.split(c.split("\n")[0].removeprefix("( ")) for c in phone.commands
            if "--graph=" in c and ".no-such-model" not in c]


def test_descriptor_delegate_reaches_benchmark_model(phone, make_backend, tiny_models):
    """``delegate`` (xnnpack / none / gpu / nnapi) picks benchmark_model's delegate flags; the loopback phone's
    stand-in runs the model as told (XNNPACK or the built-in kernels) and, like a phone without one, refuses GPU."""
    import pytest

    from latency_lut.devices import parse_descriptor
    from latency_lut.errors import DeviceError
    from latency_lut.measure import Protocol

    quick = Protocol(warmup=1, runs=3, min_seconds=0, retries=0)
    spec, path = next(iter(tiny_models.items()))
    for delegate, want in (("xnnpack", "--use_xnnpack=true"), ("none", "--use_xnnpack=false")):
        phone.commands.clear()
        backend = make_backend(delegate=delegate, xnnpack=None)
        assert backend.config.delegate == delegate and backend.measure(spec, path, quick).summary().median > 0
        (words,) = _bench_words(phone)
        assert want in words and "--use_gpu=false" in words and "--use_nnapi=true" not in words
    gpu = make_backend(delegate="gpu", xnnpack=None)
    with pytest.raises(DeviceError, match="GPU acceleration is unsupported"):
        gpu.measure(spec, path, quick)
    assert "--use_gpu=true" in _bench_words(phone)[-1]
    with pytest.raises(DeviceError, match=r"field 'xnnpack' \(True\) contradicts delegate 'none'"):
        make_backend(delegate="none", xnnpack=True)
    with pytest.raises(DeviceError, match="field 'delegate' must be one of xnnpack, none, gpu, nnapi"):
        make_backend(delegate="coreml", xnnpack=None)
    with pytest.raises(DeviceError, match=r"field 'delegate' has the wrong type"):
        parse_descriptor(loopback_doc(delegate=1, xnnpack=None), "loopback.yaml")


def test_fp16_on_the_phone_forces_xnnpack_fp16(phone, tiny_models, artifact_cache):
    """--dtype fp16 on a phone: the fp16-weight model, run with benchmark_model's --xnnpack_force_fp16 (which the
    stand-in honours with XNNPACK's FORCE_FP16 flag); a phone with delegate none cannot, and says so."""
    import pytest

    from latency_lut.backends import create_backend
    from latency_lut.devices import parse_descriptor
    from latency_lut.measure import Protocol
    from latency_lut.quantize import DtypeError

    spec = next(iter(tiny_models))
    path = export_spec(spec, "tflite", artifact_cache, dtype="fp16")
    backend = create_backend(parse_descriptor(loopback_doc(), "loopback.yaml"), dtype="fp16")
    try:
        r = backend.measure(spec, path, Protocol(warmup=1, runs=3, min_seconds=0, retries=0))
    finally:
        backend.close()
    assert r.summary().median > 0 and "--xnnpack_force_fp16=true" in _bench_words(phone)[-1]
    with pytest.raises(DtypeError, match=r"device 'loopback' \(delegate 'none'\) cannot run dtype 'fp16'"):
        create_backend(parse_descriptor(loopback_doc(delegate="none", xnnpack=None), "loopback.yaml"), dtype="fp16")
