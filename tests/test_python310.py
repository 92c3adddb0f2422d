"""The Python 3.10 promise of setup.cfg (python_requires >= 3.10): no syntax or standard-library name newer than
3.10 anywhere in the package, and the pure-Python core runs on a real 3.10 interpreter when this machine has one."""

from __future__ import annotations

import ast
import glob
import os
import subprocess
from pathlib import Path

from conftest import REPO

# Names that appeared in 3.11+ (each was once used here or is a common slip).
NEWER = {("datetime", "UTC"), ("typing", "Self"), ("typing", "LiteralString"), ("typing", "Never"),
         ("typing", "assert_never"), ("typing", "reveal_type"), ("enum", "StrEnum"), ("hashlib", "file_digest"),
         ("asyncio", "TaskGroup"), ("itertools", "batched"), ("typing", "override")}
NEWER_MODULES = {"tomllib"}


def _sources() -> list[Path]:
    return sorted(p for d in ("latency_lut", "benchmarks", "examples") for p in (REPO / d).rglob("*.py"))


def test_no_syntax_or_stdlib_name_newer_than_3_10():
    bad = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path), feature_version=(3, 10))  # SyntaxError for except* etc.
        aliases = {"datetime": "datetime", "_dt": "datetime"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    aliases[a.asname or a.name] = a.name
                    if a.name in NEWER_MODULES:
                        bad.append(f"{path}:{node.lineno} import {a.name}")
            elif isinstance(node, ast.ImportFrom) and node.module:
                bad += [f"{path}:{node.lineno} from {node.module} import {a.name}" for a in node.names
                        if (node.module, a.name) in NEWER or node.module in NEWER_MODULES]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if (aliases.get(node.value.id, node.value.id), node.attr) in NEWER:
                    bad.append(f"{path}:{node.lineno} {node.value.id}.{node.attr}")
    assert not bad, "needs Python > 3.10: " + "; ".join(bad)


def _python310() -> str | None:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10")))
    return found[-1] if found else None


def test_the_core_runs_on_python_3_10(tmp_path):
    """ops, spaces, measure, the LUT file and the output guard (stdlib only) on a real 3.10."""
    assert _python310(), "no Python 3.10 under ~/.pyenv/versions: this project's machines ship one (pyenv 3.10.13)"
    code = (
        "import sys; assert sys.version_info[:2] == (3, 10)\n"
        "import latency_lut\n"
        "from latency_lut.spaces import get_space\n"
        "from latency_lut.synthetic import synthetic_lut\n"
        "from latency_lut import lut\n"
        "sp = get_space('fbnet', 64, 0.25)\n"
        "t = synthetic_lut(sp); t.header.pop('created'); t = lut.LUT.from_records(t.header, [], {})\n"
        f"p = t.save({str(tmp_path / 'l.json')!r})\n"
        "back = lut.load(p); assert back.header['created'].endswith('+00:00')\n"
        "print(len(sp.unique_specs()))\n"
    )
    proc = subprocess.run([_python310(), "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 100
