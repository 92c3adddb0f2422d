"""Packaging promises: a light import, and descriptors found after a non-editable install."""

import json
import os
import subprocess
import sys

from conftest import REPO


def test_import_is_light():
    code = ("import sys, latency_lut; heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'ai_edge_litert', "
            "'litert_torch', 'adb_shell', 'pandas', 'ray') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.stdout.strip() == "[]"


def test_non_editable_install_ships_the_descriptors(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO)], check=True, capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import latency_lut; print(latency_lut.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(target))
    # every subpackage ships (setup.cfg lists them by name), with the runner that is pushed to SSH boards
    packages = sorted(str(i.parent.relative_to(REPO)) for i in (REPO / "latency_lut").rglob("__init__.py"))
    assert len(packages) >= 12 and "latency_lut/decompose" in packages
    assert [pk for pk in packages if not (target / pk / "__init__.py").is_file()] == []
    assert (target / "latency_lut" / "backends" / "ssh" / "board_runner.py").is_file()
    out = subprocess.run([sys.executable, "-m", "latency_lut", "devices", "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout
    devices = json.loads(out)
    shipped = sorted(p.stem for p in (REPO / "devices").glob("*.yaml"))
    assert sorted(d["name"] for d in devices) == shipped and "local" in shipped
    assert all(d["source"].startswith(str(target)) for d in devices)
    # the built-in search spaces are package data too
    code = "from latency_lut.spaces import get_space, space_names; print(space_names(), get_space('ofa_mbv3').id)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout
    assert "mobilenetv3" in out and "proxylessnas" in out and "ofa_mbv3-224" in out
