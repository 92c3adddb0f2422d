"""Fixtures for the Android tests: a loopback phone, the benchmark_model stand-in, backends and tiny models.

Imported by the test modules (``from android_fixtures import ...``) rather than living in a conftest, so the
Android tests add no second ``conftest.py`` to the tree.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from adb_daemon import AdbDaemon

from latency_lut.backends import create_backend
from latency_lut.devices import parse_descriptor
from latency_lut.measure import Protocol

HERE = Path(__file__).resolve().parent
LOOPBACK = HERE / "loopback.yaml"
QUICK = Protocol(warmup=1, runs=3, min_seconds=0, retries=0)


def install_standin(folder: Path) -> Path:
    """The benchmark_model stand-in as an executable script naming this Python, ready to push."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "benchmark_model"
    path.write_text(f"#!{sys.executable}\n" + (HERE / "benchmark_model_standin.py").read_text())
    path.chmod(0o755)
    return path


@pytest.fixture
def phone_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host side of the loopback descriptor: the stand-in binary and (once created) the ADB key."""
    home = tmp_path / "host"
    install_standin(home)
    monkeypatch.setenv("FBNET_LUT_TEST_HOME", str(home))
    return home


@pytest.fixture
def phone(tmp_path: Path, phone_home: Path, monkeypatch: pytest.MonkeyPatch):
    with AdbDaemon(tmp_path / "phone") as daemon:
        monkeypatch.setenv("FBNET_LUT_TEST_ADB_PORT", str(daemon.port))
        yield daemon


def loopback_doc(**overrides) -> dict:
    doc = yaml.safe_load(LOOPBACK.read_text())
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


@pytest.fixture
def make_backend():
    """``make_backend(**descriptor_overrides)``: an AndroidBackend for the loopback phone; closed at teardown."""
    made = []

    def _make(**overrides):
        backend = create_backend(parse_descriptor(loopback_doc(**overrides), "loopback.yaml"))
        made.append(backend)
        return backend

    yield _make
    for b in made:
        b.close()


@pytest.fixture(scope="session")
def tiny_models(artifact_cache: Path) -> dict:
    """Three real micro-models of the FBNet space at 32x32, width 0.25 (spec -> .tflite path), exported once."""
    from latency_lut.export import export_many
    from latency_lut.spaces import get_space

    specs = get_space("fbnet", 32, 0.25).unique_specs()
    chosen = [specs[0], specs[1], specs[4]]  # the stem, k3_e1 and k3_e6 at 16x16
    paths = export_many(chosen, "tflite", root=artifact_cache)
    return {s: paths[s.key] for s in chosen}


def env_for_cli(phone: AdbDaemon, home: Path, **extra: str) -> dict:
    from conftest import cli_env

    return cli_env(FBNET_LUT_TEST_ADB_PORT=str(phone.port), FBNET_LUT_TEST_HOME=str(home), **extra)


__all__ = ["LOOPBACK", "QUICK", "env_for_cli", "install_standin", "loopback_doc", "make_backend", "phone",
           "phone_home", "tiny_models"]
