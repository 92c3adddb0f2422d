"""The second board Python for the SSH tests: a venv with only numpy and ``tflite-runtime`` (the Pi users' runtime).

``python tests/backends/ssh/board_venv.py`` creates it (``make setup-test`` does); the fixtures reuse it. It has neither
onnxruntime nor ai_edge_litert, so it is also the board that lacks a runtime.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# tflite-runtime's last release (2023); built against numpy 1.x.
PACKAGES = ("tflite-runtime==2.14.0", "numpy>=1.23,<2")


def venv_dir() -> Path:
    default = Path.home() / ".cache" / "fbnet-lut" / f"test-board-tflite-py{sys.version_info[0]}{sys.version_info[1]}"
    return Path(os.environ.get("FBNET_LUT_TEST_BOARD_VENV") or default)


def ensure() -> Path:
    """The venv's python, created on first use (pip from the configured index)."""
    d = venv_dir()
    python = d / "bin" / "python"
    ok = d / ".fbnet-lut-ready"
    if ok.exists() and python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(d)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PACKAGES],
                   check=True)
    subprocess.run([str(python), "-c", "import numpy, tflite_runtime.interpreter"], check=True)
    ok.write_text(" ".join(PACKAGES) + "\n")
    return python


if __name__ == "__main__":
    print(ensure())
