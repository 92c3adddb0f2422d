"""fbnet-lut search: the closed loop (search, train, export, measure) end to end at a tiny size, and bad inputs.

Functional only: a few steps and one training epoch. Whether the loop reaches 90% test accuracy within 6 minutes
is the business of the run recorded in the README, not of a test.
"""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
from pathlib import Path

import pytest
import torch
from conftest import FAST, cli_env, run_cli

from latency_lut.measure import compute_stats
from latency_lut.search import SearchConfig, SearchError

TINY = ["--resolution", "32", "--width", "0.25"]
QUICK = ["--weights", "0,8", "--warmup-epochs", "1", "--search-epochs", "1", "--steps", "2", "--batch", "8",
         "--train-epochs", "1", "--rounds", "2", "-q"]


def _strict(text: str):
    def reject(token: str):
        raise AssertionError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=reject)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, artifact_cache: Path) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("search")
    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(d / "store.sqlite"))
    run_cli("build", *TINY, "-o", "tiny.json", "-q", *FAST, cwd=d, env=env, check=True)
    return d, env


def _stored(d: Path, key: str) -> list[list[float]]:
    with sqlite3.connect(d / "store.sqlite") as db:
        return [json.loads(s) for (s,) in db.execute("SELECT samples FROM measurements WHERE key = ?", (key,))]


def test_closed_loop_json_store_and_plot(tiny):
    d, env = tiny
    proc = run_cli("search", "--lut", "tiny.json", *TINY, *QUICK, "--plot", "acc.png", "--json", cwd=d, env=env,
                   check=True)
    out = _strict(proc.stdout)
    rows, s = out["rows"], out["summary"]
    assert [r["weight"] for r in rows] == [0.0, 8.0]
    for r in rows:
        assert r["status"] == "ok" and r["key"].startswith("net-fbnet-32-w0.25-")
        assert len(r["choices"]) == 22 and r["arch"] == f"searched-w{r['weight']:g}"
        assert 0 < r["predicted_ms"] < 100 and 0 < r["measured_ms"] < 100 and r["rounds"] == 2
        assert r["error"] == pytest.approx((r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"])
        assert 0 <= r["test_acc"] <= 1 and 0 <= r["supernet_acc"] <= 1 and r["flops"] > 0
        # The search history: the shared warm-up epoch, then this weight's search epoch.
        assert [h["phase"] for h in r["history"]] == ["warm-up", "search"]
        assert all(h["derived_ms"] > 0 and h["expected_ms"] > 0 for h in r["history"])
        # What the table reports was measured: every round is in the store, as positive raw samples.
        rounds = _stored(d, r["key"])
        assert len(rounds) == 2 and all(x > 0 and math.isfinite(x) for samples in rounds for x in samples)
        medians = [compute_stats(samples).median for samples in rounds]
        assert r["measured_ms"] == pytest.approx(statistics.median(medians), rel=1e-9)
    assert s["space"] == "fbnet-32-w0.25" and s["device"] == "local" and s["runtime"] == "onnxruntime"
    assert s["config"]["weights"] == [0.0, 8.0] and s["cpu_count"] >= 1
    secs = s["seconds"]
    assert secs["total"] >= secs["search"] + secs["train"] + secs["measure"] > 0 and secs["lut_build"] >= 0
    assert (d / "acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_closed_loop_table(tiny):
    d, env = tiny
    proc = run_cli("search", "--lut", "tiny.json", *TINY, *QUICK, "--weights", "0", "--loss", "additive",
                   cwd=d, env=env, check=True)
    lines = proc.stdout.splitlines()
    header = lines[0].split()
    assert header[:9] == ["latency", "weight", "predicted", "ms", "measured", "ms", "error", "noise", "test"]
    row = lines[2].split()
    assert float(row[0]) == 0 and float(row[1]) > 0 and float(row[2]) > 0 and row[3].endswith("%")
    assert 0 <= float(row[5]) <= 1 and len(row) == 7 + 22  # weight .. MMACs, then one choice per layer
    assert "fbnet-32-w0.25 on local / onnxruntime" in proc.stdout and "total" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--weights", "0,abc"], "comma-separated list"),
    (["--weights", "-1"], "latency weights must be finite and >= 0"),
    (["--weights", "1,1"], "latency weights repeat"),
    (["--train-epochs", "0"], "Invalid value for '--train-epochs': 0 is not in the range"),
    (["--resolution", "64"], "was built for fbnet-32-w0.25, not fbnet-64-w0.25"),
])
def test_bad_inputs_are_one_line_errors(tiny, args, message):
    d, env = tiny
    proc = run_cli("search", "--lut", "tiny.json", *TINY, *args, "-q", cwd=d, env=env)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_config_rejects_unknown_loss():
    with pytest.raises(SearchError, match="unknown loss 'ce'"):
        SearchConfig(loss="ce")


def test_closed_loop_on_a_space_with_ragged_candidate_lists(tmp_path, artifact_cache):
    """ProxylessNAS offers 'zero' only where a layer keeps its shape: the search never derives a masked entry, and
    every derived model is trained and measured like FBNet's."""
    from latency_lut.backends import create_backend
    from latency_lut.build import build_lut
    from latency_lut.devices import get_device
    from latency_lut.measure import Protocol
    from latency_lut.search import closed_loop
    from latency_lut.spaces import get_space
    from latency_lut.store import Store

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the CLI does: small models train many times slower on threads that contend
    space = get_space("proxylessnas", 32, 0.25)
    lists = {len(layer.candidates) for layer in space.layers()}
    assert len(lists) > 1  # ragged: the table is masked
    device = get_device("local")
    backend = create_backend(device, "onnxruntime", threads=1)
    cfg = SearchConfig(weights=(0.0, 8.0), warmup_epochs=1, search_epochs=1, steps=2, batch=8, train_epochs=1,
                       rounds=2)
    try:
        with Store(tmp_path / "store.sqlite") as store:
            lut = build_lut(space, device, backend, store, Protocol(warmup=1, runs=3, min_seconds=0, retries=0)).lut
            report = closed_loop(lut, space, device, backend, cfg, store=store)
    finally:
        backend.close()
        torch.set_num_threads(threads)
    assert [r.weight for r in report.rows] == [0.0, 8.0]
    for row in report.rows:
        for layer, name in zip(space.layers(), row.choices, strict=True):
            assert name in layer.candidates
        assert row.status == "ok" and row.measured_ms > 0 and row.predicted_ms > 0 and 0 <= row.test_acc <= 1
        assert row.key.startswith("net-proxylessnas-32-w0.25-")
        rounds = _stored(tmp_path, row.key)
        assert len(rounds) == 2 and all(x > 0 for samples in rounds for x in samples)
    assert list(report.to_dataframe().columns[:4]) == ["weight", "arch", "choices", "key"]
