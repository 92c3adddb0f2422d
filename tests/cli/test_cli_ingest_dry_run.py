"""`fbnet-lut ingest --dry-run`: what a file holds, nothing written, exit 2 (and why) when it has no timed runs."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

OUTPUTS = Path(__file__).parent.parent / "backends" / "outputs"


def test_dry_run_json_lists_each_timed_block_and_writes_nothing(tmp_path: Path):
    logcat, compiled = OUTPUTS / "logcat_threadtime_apk.txt", OUTPUTS / "litert_compiledmodel_ms.txt"
    twice = tmp_path / "twice.log"
    twice.write_text((OUTPUTS / "tf2.17_linux_info_tags.txt").read_text() * 2)
    p = run_cli("ingest", "--dry-run", "--json", str(logcat), str(compiled), str(twice), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    files = json.loads(p.stdout)
    assert [f["file"] for f in files] == [str(logcat), str(compiled), str(twice)]
    (run,), (ms,), runs = (f["timed_runs"] for f in files)
    assert run == {**run, "model": "/data/local/tmp/ir_k3_e1.tflite", "count": 4702, "avg_us": 212.7,
                   "std_us": 8.0, "min_us": 199.0, "max_us": 301.0, "median_us": 211.0, "line": 12}
    assert run["text"].startswith("count=4702 first=210")
    assert ms["count"] == 40 and ms["avg_us"] == 12410.0 and ms["median_us"] is None
    assert [r["line"] for r in runs] == [16, 36] and all(f["no_timed_runs"] is None for f in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twice.log"]  # no store, no LUT, no profiles/


def test_dry_run_says_why_a_file_has_no_timed_runs(tmp_path: Path):
    text = (OUTPUTS / "tf2.17_linux_info_tags.txt").read_text()
    (tmp_path / "warmup.log").write_text(text[: text.index("INFO: Running benchmark for at least 50")])
    (tmp_path / "profile.log").write_text("Timings (microseconds): count=1 curr=29\nMemory (bytes): count=0\n")
    p = run_cli("ingest", "--dry-run", "warmup.log", str(OUTPUTS / "tf2.17_linux_info_tags.txt"), "profile.log",
                cwd=tmp_path)
    assert p.returncode == 2
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: no timed runs in warmup.log: line 2: warmup only")
    assert "profile.log: no statistics" in err and "op profiler" in err
    assert "ir_k5_e6.tflite" in p.stdout and "5881" in p.stdout  # the good file is still reported
    # A cut-off line is an error naming the file and line.
    (tmp_path / "cut.log").write_text(text.replace(" avg=168.9 std=7", ""))
    p = run_cli("ingest", "--dry-run", "cut.log", cwd=tmp_path)
    assert p.returncode == 2 and "cut.log, line 16: statistics line is cut off" in p.stderr
