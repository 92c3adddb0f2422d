"""Bad results for the iPhone flow: each is one clear error (exit 2) and loses nothing already ingested.

Also the parser's handling of every output variant of benchmark_model (library level, no CLI).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from conftest import cli_env, run_cli
from ios_applog import console_log, time_bundle

from latency_lut.backends.ios.errors import ResultsFormatError, TruncatedLogError, UnitMismatchError
from latency_lut.backends.tflite_benchmark import parse as parse_log
from latency_lut.measure import stats_from_aggregates as stats_from_aggregate

SPACE = ["--resolution", "32", "--width", "0.25"]
FAST = ["--warmup", "1", "--runs", "4", "--min-seconds", "0"]
KEYS = ["ir-in16x16x8-out8-k3-e1-g1-s1", "ir-in16x16x8-out8-k3-e3-g1-s1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, artifact_cache: Path):
    """Two bundles of the same ops (1 and 2 threads), one good log of the first one already ingested."""
    root = tmp_path_factory.mktemp("ios-bad")
    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(root / "store.sqlite"))

    def cli(*args: str, **kw):
        return run_cli(*args, cwd=root, env=env, **kw)

    only = [a for k in KEYS for a in ("--only", k)]
    cli("build", "--device", "iphonex", *SPACE, *FAST, *only, "--bundle", "b1", "-q", check=True)
    cli("build", "--device", "iphonex", *SPACE, *FAST, *only, "--bundle", "b2", "--threads", "2", "-q", check=True)
    good = console_log(time_bundle(root / "b1"))
    (root / "good.log").write_text(good)
    cli("ingest", "--device", "iphonex", "--bundle", "b1", "good.log", check=True)
    other = console_log(time_bundle(root / "b2", KEYS[:1]))
    return root, cli, good, other


def _state(root: Path) -> tuple[int, str]:
    with sqlite3.connect(root / "store.sqlite") as db:
        n = db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]
    return n, (root / "profiles" / "iphonex-litert-32-w0.25.json").read_text()


def _fails(setup, text: str, pattern: str, name: str = "bad.log", bundle: str = "b1") -> str:
    root, cli, _, _ = setup
    before = _state(root)
    (root / name).write_text(text)
    p = cli("ingest", "--device", "iphonex", "--bundle", bundle, name)
    assert p.returncode == 2, p.stdout + p.stderr
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: ") and "Traceback" not in err
    assert re.search(pattern, err), err
    assert _state(root) == before  # nothing lost, nothing half-written
    return err


def test_log_of_another_bundle(setup):
    root, _, _, other = setup
    b1 = json.loads((root / "b1" / "manifest.json").read_text())["bundle_id"]
    b2 = json.loads((root / "b2" / "manifest.json").read_text())["bundle_id"]
    assert b1 != b2
    err = _fails(setup, other, rf"from bundle {b2}, not from bundle {b1}")
    assert "line " in err


def test_log_of_another_bundle_among_good_results(setup):
    _, _, good, other = setup
    _fails(setup, good + other, "from bundle")


def test_truncated_stat_line(setup):
    good = setup[2]
    lines = good.splitlines()
    i = max(i for i, line in enumerate(lines) if "count=" in line)
    # Cut before the last fields; a run of identical times prints "curr=X(all same)" instead.
    cut = lines[i].find(" max=") + 3 if " max=" in lines[i] else lines[i].index("(all same)")
    lines[i] = lines[i][:cut]
    _fails(setup, "\n".join(lines), r"line \d+: statistics line is cut off")


def test_truncated_timings_and_name_lines(setup):
    good = setup[2]
    cut = re.sub(r"(Inference timings in us: Init: \d+, First inference: \d+), Warmup.*", r"\1", good, count=1)
    _fails(setup, cut, "timings line is cut off")
    cut = re.sub(r"(Benchmark name: \[fbnet-lut/\w+/ir-in16x16)[^\n]*", r"\1", good, count=1)
    _fails(setup, cut, "parameter line is cut off")


def test_units_that_do_not_match(setup):
    good = setup[2]
    _fails(setup, good.replace("Inference timings in us:", "Inference timings in ms:", 1), "timings are in 'ms'")
    _fails(setup, re.sub(r"- Average: (\S+) ms", r"- Average: \1 us", good, count=1), "reports milliseconds")

    def scale(m: re.Match[str]) -> str:  # the summary printed in ms while the Stat line is in us
        return f"Inference (avg): {float(m[1]) / 1000:g}"

    _fails(setup, re.sub(r"Inference \(avg\): (\S+)", scale, good, count=1), "units do not match")


def test_bad_json_and_csv(setup):
    root = setup[0]
    bid = json.loads((root / "b1" / "manifest.json").read_text())["bundle_id"]
    doc = {"format": "fbnet-lut-ios-results", "bundle_id": bid, "unit": "s",
           "results": [{"key": KEYS[0], "count": 4, "avg": 1, "std": 0, "min": 1, "max": 1}]}
    _fails(setup, json.dumps(doc), "unit 's' is not one of", "bad.json")
    doc["unit"] = "us"
    doc["results"][0]["unit"] = "ms"
    _fails(setup, json.dumps(doc), "declares 'us'", "bad.json")
    _fails(setup, json.dumps(doc)[:60], "cut off", "bad.json")
    del doc["results"][0]["unit"]
    doc["bundle_id"] = "0123456789abcdef"
    _fails(setup, json.dumps(doc), "from bundle 0123456789abcdef", "bad.json")
    head = "bundle_id,key,unit,count,avg,std,min,max\n"
    _fails(setup, head + f"{bid},{KEYS[0]},us,4,10,1,9,12\n{bid},{KEYS[1]},ms,4,0.01,0,0.01,0.01\n",
           "different units", "bad.csv")
    _fails(setup, head + f"{bid},{KEYS[0]},us,4,10,1\n", "too few fields", "bad.csv")


def test_results_for_unknown_keys_are_reported_not_stored(setup):
    root, cli, good, _ = setup
    bid = json.loads((root / "b1" / "manifest.json").read_text())["bundle_id"]
    alien = good.replace(f"fbnet-lut/{bid}/{KEYS[1]}", f"fbnet-lut/{bid}/ir-in16x16x8-out8-k7-e6-g1-s1")
    alien = alien.replace(f"{KEYS[1]}.tflite", "ir-in16x16x8-out8-k7-e6-g1-s1.tflite")
    (root / "alien.log").write_text(alien)
    before = _state(root)[0]
    p = cli("ingest", "--device", "iphonex", "--bundle", "b1", "alien.log", "--json", check=True)
    rep = json.loads(p.stdout)
    assert rep["unknown"] == ["ir-in16x16x8-out8-k7-e6-g1-s1"] and rep["already_ingested"] == [KEYS[0]]
    assert _state(root)[0] == before


def test_wrong_device_or_settings(setup):
    root, cli, good, _ = setup
    _fails(setup, good.replace("Num threads: [1]", "Num threads: [4]", 1), "ran with 4 thread")
    (root / "x.log").write_text('fbnet-lut device: {"product_type": "iPhone12,1"}\n' + good)
    p = cli("ingest", "--device", "iphonex", "--bundle", "b1", "x.log")
    assert p.returncode == 2 and "iPhone12,1" in p.stderr
    p = cli("ingest", "--device", "local", "--bundle", "b1", "good.log")
    assert p.returncode == 2 and "local device" in p.stderr


# ---- the parser alone ---------------------------------------------------------------------------------------
def _block(stat: str, name: str = "fbnet-lut/abc/ir-in8x8x8-out8-k3-e1-g1-s1", extra: str = "") -> str:
    return (f"INFO: Log parameter values verbosely: [0]\nINFO: Num threads: [1]\nINFO: Benchmark name: [{name}]\n"
            f"INFO: count=2 first=900 curr=800 min=800 max=900 avg=850 std=50\n\nINFO: {stat}\n{extra}")


def test_parser_variants():
    log = parse_log(_block("count=50 curr=1200(all same)"))
    inf = log.runs[0].timed
    assert inf is not None and inf.avg == inf.min == inf.max == 1200 and inf.std == 0
    log = parse_log(_block("count=50 first=1.5e+06 curr=1.2e+06 min=1.1e+06 max=1.6e+06 avg=1.23457e+06 std=20000 "
                           "p5=1.15e+06 median=1.2e+06 p95=1.5e+06"))
    inf = log.runs[0].timed
    assert inf is not None and inf.avg == 1234570 and inf.median == 1.2e6 and inf.p95 == 1.5e6
    old = _block("count=3 first=10 curr=11 min=10 max=12 avg=11 std=1",
                 extra="Average inference timings in us: Warmup: 850, Init: 3000, Inference: 11\n")
    assert parse_log(old).runs[0].timings == {"warmup_avg": 850, "init": 3000, "inference_avg": 11}
    with pytest.raises(TruncatedLogError):
        parse_log(_block("count=50 curr=1200"))  # lost its "(all same)" or its other fields
    with pytest.raises(TruncatedLogError):
        parse_log(old.replace("Inference: 11", "Inference: "))


def test_parser_splits_models_without_the_verbose_line():
    one = _block("count=3 first=10 curr=11 min=10 max=12 avg=11 std=1").replace(
        "INFO: Log parameter values verbosely: [0]\n", "")
    two = one.replace("k3-e1", "k5-e1")
    log = parse_log(one + two)
    assert [b.name.rsplit("/", 1)[1] for b in log.runs] == ["ir-in8x8x8-out8-k3-e1-g1-s1",
                                                              "ir-in8x8x8-out8-k5-e1-g1-s1"]


def test_aggregate_stats_are_ordered_and_flag_noise():
    s, how = stats_from_aggregate(50, mean=1.0, std=0.5, lo=0.8, hi=3.0)
    assert s.min <= s.p10 <= s.p25 <= s.median <= s.p75 <= s.p90 <= s.max and "normal" in how
    assert s.noise > 0.1
    quiet, _ = stats_from_aggregate(50, mean=1.0, std=0.01, lo=0.97, hi=1.05, median=0.99)
    assert quiet.median == 0.99 and quiet.noise < 0.1


def test_errors_are_latency_lut_errors():
    from latency_lut.errors import LatencyLutError

    assert issubclass(UnitMismatchError, ResultsFormatError) and issubclass(ResultsFormatError, LatencyLutError)
