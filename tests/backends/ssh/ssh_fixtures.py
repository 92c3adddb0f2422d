"""Fixtures for the SSH tests: the loopback sshd as the board, its folders, backends and tiny models.

Imported by the test modules (``from ssh_fixtures import ...``), as tests/android does, so no second conftest.py.
The board's Python is a real interpreter run by the real sshd with a clean login environment: this test process's
interpreter (which has onnxruntime and ai_edge_litert), or the tflite-runtime venv of ``board_venv.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import board_venv
import pytest
import yaml
from sshd import LoopbackSshd

from latency_lut.backends import create_backend
from latency_lut.devices import parse_descriptor
from latency_lut.measure import Protocol

HERE = Path(__file__).resolve().parent
BOARD = HERE / "board.yaml"
QUICK = Protocol(warmup=1, runs=3, min_seconds=0, retries=0)


def make_sysfs(root: Path, governor: str = "schedutil", celsius: float = 38.0) -> Path:
    """A board's /sys as the runner reads it: two CPUs with cpufreq, a CPU and a GPU thermal zone."""
    for cpu in ("cpu0", "cpu1"):
        f = root / "devices/system/cpu" / cpu / "cpufreq"
        f.mkdir(parents=True, exist_ok=True)
        (f / "scaling_governor").write_text(governor + "\n")
        (f / "scaling_available_governors").write_text("ondemand performance powersave schedutil\n")
        (f / "cpuinfo_max_freq").write_text("1800000\n")
        (f / "scaling_cur_freq").write_text("600000\n")
    for i, (kind, temp) in enumerate((("cpu-thermal", celsius), ("gpu-thermal", 30.0))):
        z = root / f"class/thermal/thermal_zone{i}"
        z.mkdir(parents=True, exist_ok=True)
        (z / "type").write_text(kind + "\n")
        (z / "temp").write_text(f"{int(temp * 1000)}\n")
    return root


@pytest.fixture
def board_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The runner's folder on the board; its name has a space, as real home folders sometimes do."""
    d = tmp_path / "board home" / "fbnet-lut"
    monkeypatch.setenv("FBNET_LUT_TEST_BOARD_DIR", str(d))
    monkeypatch.setenv("FBNET_LUT_TEST_PYTHON", sys.executable)
    return d


@pytest.fixture
def sshd(tmp_path: Path, board_dir: Path, monkeypatch: pytest.MonkeyPatch):
    server = LoopbackSshd(tmp_path / "sshd")
    monkeypatch.setenv("FBNET_LUT_TEST_SSH", str(server.dir))
    with server:
        yield server


@pytest.fixture(scope="session")
def tflite_python() -> Path:
    """A board Python with numpy and tflite-runtime 2.14 only (created by make setup-test, else here)."""
    return board_venv.ensure()


def board_doc(**overrides) -> dict:
    doc = yaml.safe_load(BOARD.read_text())
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.fixture
def make_backend():
    """``make_backend(runtime, **descriptor_overrides)``: an SSH backend for the loopback board; closed after."""
    made = []

    def _make(runtime: str = "onnxruntime", **overrides):
        backend = create_backend(parse_descriptor(board_doc(**overrides), "board.yaml"), runtime)
        made.append(backend)
        return backend

    yield _make
    for b in made:
        b.close()


@pytest.fixture(scope="session")
def tiny_models(artifact_cache: Path) -> dict:
    """Three real micro-models of the FBNet space at 32x32, width 0.25: format -> {spec: path}, exported once."""
    from latency_lut.export import export_many
    from latency_lut.spaces import get_space

    specs = get_space("fbnet", 32, 0.25).unique_specs()
    chosen = [specs[0], specs[1], specs[4]]  # the stem, k3_e1 and k3_e6 at 16x16
    out = {}
    for fmt in ("onnx", "tflite"):
        paths = export_many(chosen, fmt, root=artifact_cache)
        out[fmt] = {s: paths[s.key] for s in chosen}
    return out


def env_for_cli(sshd: LoopbackSshd, board_dir: Path, **extra: str) -> dict:
    from conftest import cli_env

    return cli_env(**{"FBNET_LUT_TEST_SSH": str(sshd.dir), "FBNET_LUT_TEST_BOARD_DIR": str(board_dir),
                      "FBNET_LUT_TEST_PYTHON": sys.executable, **extra})


__all__ = ["BOARD", "QUICK", "board_dir", "board_doc", "env_for_cli", "make_backend", "make_sysfs", "sshd",
           "tflite_python", "tiny_models"]
