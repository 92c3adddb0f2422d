"""Shared fixtures. Tests run the real runtimes against a real SQLite file; the CLI runs as a real subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def cli_env(tmp_path: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for a CLI subprocess that imports this checkout, with its own artifact cache when given."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if tmp_path is not None:
        env.setdefault("FBNET_LUT_CACHE", str(tmp_path / "cache"))
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600,
            check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``fbnet-lut ARGS`` as ``python -m latency_lut`` in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "latency_lut", *args], cwd=cwd, env=env or cli_env(), text=True,
        capture_output=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"fbnet-lut {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def accepted_ops(store: Path) -> int:
    """Ops committed to a store that another process is writing (0 before its tables exist)."""
    if not store.exists():
        return 0
    with sqlite3.connect(store) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM measurements WHERE accepted = 1").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


@pytest.fixture(scope="session")
def artifact_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact cache for the whole session, so each model is exported once per test run."""
    path = tmp_path_factory.mktemp("artifact-cache")
    os.environ["FBNET_LUT_CACHE"] = str(path)
    return path


@pytest.fixture
def cli(tmp_path: Path, artifact_cache: Path):
    """``cli("build", ...)`` runs the CLI in ``tmp_path`` sharing the session's artifact cache."""
    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(tmp_path / "store.sqlite"))

    def _run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=tmp_path, env=env, **kw)

    _run.env = env  # type: ignore[attr-defined]
    return _run


# A quick protocol for functional tests: measurement accuracy is the benchmarks' business, not the tests'. The
# drift guard and the calibration pass have their own tests (tests/test_build.py, tests/cli/test_cli_calibrate.py).
FAST = ["--warmup", "1", "--runs", "3", "--min-seconds", "0", "--retries", "0", "--no-drift-guard", "--no-calibrate",
        "--extra-rounds", "0"]


class SlowedBackend:
    """The real ONNX Runtime backend, every measurement ``slow`` times slower once ``slow`` is set (as under a
    neighbour's load that contends for the caches: thread CPU time grows too). Records what it measured."""

    def __init__(self) -> None:
        from latency_lut.backends import create_backend
        from latency_lut.devices import get_device

        self.inner = create_backend(get_device("local"), "onnxruntime")
        self.seen: list[str] = []
        self.slow = 1.0

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def measure(self, spec, artifact, protocol):
        from latency_lut.measure import RunResult

        self.seen.append(spec.key)
        res = self.inner.measure(spec, artifact, protocol)
        return RunResult([x * self.slow for x in res.samples_ms], None, dict(res.extra))


# A whole space of six ops that export to TFLite in seconds: a bundle of all of it makes a complete LUT, so an
# incomplete one tells of the op it lacks.
TINY_SPACE = """\
name: tiny
resolution: {default: 32}
num_classes: 10
stem:
  - {op: conv, out: 8, kernel: 3, stride: 2}
stages:
  - {out: 8, layers: 1, stride: 1, candidates: [k3_e1, k3_e3, skip]}
head:
  - {op: conv, out: 16, kernel: 1}
  - {op: gap}
  - {op: fc, out: classes}
"""
REJECTED = "ir-in16x16x8-out8-k3-e3-g1-s1"  # the block of TINY_SPACE that reject_int8_block fails


def reject_int8_block(monkeypatch: pytest.MonkeyPatch, key: str = REJECTED, reason: str = "unsupported op") -> None:
    """litert-torch's int8 quantizer fails on block ``key`` with ``reason`` (the other blocks are quantized for
    real), and the block's cached artifact goes, so that the converter is asked. In this process only: drive the
    CLI with ``main`` here, not in a subprocess."""
    from latency_lut import export as export_mod
    from latency_lut.ops import OpSpec

    real = export_mod.quantize_tflite

    def failing(module, sample, out, *args):
        if f"{key}-int8.tflite" in str(out):
            raise RuntimeError(reason)
        return real(module, sample, out, *args)

    monkeypatch.setattr(export_mod, "quantize_tflite", failing)
    export_mod.artifact_path(OpSpec.from_key(key), "tflite", dtype="int8").unlink(missing_ok=True)


def main_in(cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str,
            store: Path | None = None) -> tuple[int, str, str]:
    """``fbnet-lut ARGS`` in this process (exit status, stdout, stderr), in ``cwd`` with ``store``."""
    from latency_lut.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setenv("FBNET_LUT_STORE", str(store or cwd / "store.sqlite"))
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err
