"""The one benchmark_model parser: every variant in FACTS §6 and issue 18, one test each, plus whole logs per era.

The texts are the project's own (tests/backends/outputs/ and the strings below), written to reproduce each variant
that published outputs show; ``benchmarks/parse_real_outputs.py`` checks the parser against the published ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from latency_lut.backends.tflite_benchmark import (
    NoTimedRunsError,
    OutputFormatError,
    TruncatedOutputError,
    UnitMismatchError,
    clean_line,
    parse,
    parse_one,
    parse_stat_line,
)

OUTPUTS = Path(__file__).parent / "outputs"


def _read(name: str) -> str:
    return (OUTPUTS / name).read_text()

# A current build: log tags, warmup then timed runs, the "Inference timings" summary.
MODERN = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/fbnet-lut/models/m.tflite]
INFO: #threads used for CPU inference: [4]
INFO: Loaded model /data/local/tmp/fbnet-lut/models/m.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 0.0213
INFO: Initialized session in 18.777ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=9 first=64791 curr=57111 min=55878 max=64791 avg=57758.2 std=2665

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=58154 curr=53809 min=53077 max=60727 avg=55043.2 std=1562

INFO: Inference timings in us: Init: 18777, First inference: 64791, Warmup (avg): 57758.2, Inference (avg): 55043.2
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE.
INFO: Memory footprint delta from the start of the tool (MB): init=3.02734 overall=9.64844
"""

# An older build: no log tags, the "Average inference timings" line.
OLD = """\
STARTING!
Num runs: [50]
Graph: [/data/local/tmp/m.tflite]
Loaded model /data/local/tmp/m.tflite
Initialized session in 20.1ms
Running benchmark for at least 1 iterations and at least 0.5 seconds
count=8 first=70111 curr=61000 min=60020 max=70111 avg=62000 std=3000
Running benchmark for at least 50 iterations and at least 1 seconds
count=50 first=61234 curr=59000 min=58000 max=66000 avg=60000.5 std=1500
Average inference timings in us: Warmup: 62000, Init: 20100, Inference: 60000.5
"""

PERCENTILES = MODERN.replace(
    "count=50 first=58154 curr=53809 min=53077 max=60727 avg=55043.2 std=1562",
    "count=50 first=58154 curr=53809 min=53077 max=60727 avg=55043.2 std=1562 p5=53300 median=54800 p95=58900",
)

ALL_SAME = """\
INFO: Running benchmark for at least 1 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=3 curr=12(all same)
INFO: Running benchmark for at least 20 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=20 curr=11(all same)
INFO: Inference timings in us: Init: 900, First inference: 14, Warmup (avg): 12, Inference (avg): 11
"""

def _row(*cells: str) -> str:
    """A table row as the tool prints it: tab-separated, each cell right-aligned in its column."""
    return "\t" + "\t".join(c.rjust(16) for c in cells[:-1]) + "\t" + cells[-1] + "\n"


_COLS = ("[node type]", "[first]", "[avg ms]", "[%]", "[cdf%]", "[mem KB]", "[times called]", "[Name]")
_DELEGATE = ("TfLiteXNNPackDelegate", "0.421", "0.395", "81.443%", "81.443%", "0.000", "1", "[XNNPACK/conv;add]:3")
_MEAN = ("MEAN", "0.101", "0.090", "18.557%", "100.000%", "0.000", "1", "[output]:2")

# Op profiling, current layout: a block per phase, each with Run Order and Top-by-time tables.
PROFILE = MODERN + (
    "INFO: Profiling Info for Benchmark Initialization:\n"
    "============================== Run Order ==============================\n"
    + _row(*_COLS)
    + _row("ModifyGraphWithDelegate", "4.036", "4.036", "97.578%", "97.578%", "1008.000", "1",
           "ModifyGraphWithDelegate/0")
    + _row("AllocateTensors", "0.099", "0.052", "1.257%", "98.835%", "0.000", "2", "AllocateTensors/0")
    + "\nTimings (microseconds): count=1 curr=4136\nMemory (bytes): count=0\n2 nodes observed\n\n"
    "Operator-wise Profiling Info for Regular Benchmark Runs:\n"
    "============================== Run Order ==============================\n"
    + _row(*_COLS) + _row(*_DELEGATE) + _row(*_MEAN)
    + "\n============================== Top by Computation Time ==============================\n"
    + _row(*_COLS) + _row(*_DELEGATE) + _row(*_MEAN)
    + "\nNumber of nodes executed: 2\n"
    "============================== Summary by node type ==============================\n"
    + _row("[Node type]", "[count]", "[avg ms]", "[avg %]", "[cdf %]", "[mem KB]", "[times called]")
    + _row("TfLiteXNNPackDelegate", "1", "0.395", "81.443%", "81.443%", "0.000", "1")
    + "\nTimings (microseconds): count=50 first=522 curr=480 min=470 max=530 avg=485 std=12\n"
    "Memory (bytes): count=0\n2 nodes observed\n"
)

# Op profiling, older layout: a [start] column after the node type, no phase titles.
_OLD_COLS = ("[node type]", "[start]", "[first]", "[avg ms]", "[%]", "[cdf%]", "[mem KB]", "[times called]", "[Name]")
PROFILE_OLD = OLD + (
    "============================== Run Order ==============================\n"
    + _row(*_OLD_COLS)
    + _row("CONV_2D", "0.000", "4.269", "4.269", "14.999%", "14.999%", "0.000", "1", "[conv1/Relu6]")
    + _row("DEPTHWISE_CONV_2D", "4.270", "2.150", "2.150", "7.554%", "22.553%", "0.000", "1", "[dw1/Relu6]")
)

# The same, after something turned the tabs into spaces.
PROFILE_SPACES = OLD + """\
============================== Run Order ==============================
 [node type]  [start]  [first]  [avg ms]  [%]  [cdf%]  [mem KB]  [times called]  [Name]
 CONV_2D  0.000  4.269  4.269  14.999%  14.999%  0.000  1  conv1/Relu6
"""



# ---- the FACTS §6 basics ------------------------------------------------------------------------------------
def test_modern_output_gives_the_timed_runs_not_the_warmup():
    run = parse_one(MODERN)
    assert run.timed.count == 50 and run.timed.avg == pytest.approx(55043.2) and run.timed.line == 14
    assert run.warmup.count == 9
    assert run.timings["init"] == 18777 and run.timings["inference_avg"] == pytest.approx(55043.2)
    assert run.model == "/data/local/tmp/fbnet-lut/models/m.tflite" and run.threads == 4
    stats, source = run.to_stats()
    assert stats.count == 50
    assert stats.mean == pytest.approx(55.0432) and stats.std == pytest.approx(1.562)
    assert stats.min == pytest.approx(53.077) and stats.max == pytest.approx(60.727)
    # No printed median: the median is the average and the quantiles come from a normal fit, clipped to min/max.
    assert stats.median == pytest.approx(55.0432)
    assert stats.p25 == pytest.approx(55.0432 - 0.67449 * 1.562, rel=1e-4)
    assert stats.p10 == pytest.approx(max(53.077, 55.0432 - 1.28155 * 1.562), rel=1e-4)
    assert stats.min <= stats.p10 <= stats.p25 <= stats.median <= stats.p75 <= stats.p90 <= stats.max
    assert "mean/std" in source
    assert run.timed.printed == ("first", "curr", "min", "max", "avg", "std")
    assert run.nodes == [] and run.errors == [] and run.no_timed_reason is None


def test_old_output_with_average_inference_timings_line():
    run = parse_one(OLD)
    assert run.timed.count == 50 and run.timed.avg == pytest.approx(60000.5)
    assert run.timings == {"warmup_avg": 62000, "init": 20100, "inference_avg": 60000.5}
    assert run.to_stats()[0].mean == pytest.approx(60.0005)


def test_printed_percentiles_give_the_median_and_skewed_quantiles():
    run = parse_one(PERCENTILES)
    stats, source = run.to_stats()
    assert stats.median == pytest.approx(54.8)
    # Right-skewed: the upper side is wider than the lower side, as p5/p95 say.
    assert stats.p90 - stats.median > stats.median - stats.p10
    assert stats.p10 == pytest.approx(54.8 - 1.28155 * (54.8 - 53.3) / 1.64485, rel=1e-4)
    assert stats.p90 == pytest.approx(54.8 + 1.28155 * (58.9 - 54.8) / 1.64485, rel=1e-4)
    assert "p5/median/p95" in source
    # Recorded as measured: the printed fields are listed.
    assert {"p5", "median", "p95"} <= set(run.timed.printed) and run.timed.percentiles_printed


def test_all_same_runs():
    run = parse_one(ALL_SAME)
    assert run.timed.all_same and run.timed.count == 20 and run.timed.curr == 11
    stats, source = run.to_stats()
    assert stats.median == stats.p10 == stats.p90 == stats.min == stats.max == pytest.approx(0.011)
    assert stats.std == 0 and stats.noise == 0
    assert "same" in source
    assert run.timed.printed == ("curr",)  # min/max/avg/std were derived, not printed


@pytest.mark.parametrize("line, expect", [
    ("count=1 curr=4136", dict(count=1, curr=4136, avg=4136, std=0)),
    ("count=0", dict(count=0)),
    ("count=5 first=1.5e+06 curr=1.2e+06 min=1.1e+06 max=1.5e+06 avg=1.23457e+06 std=150000",
     dict(count=5, avg=1234570.0, first=1.5e6)),
    ("count=1 curr=1357602 p5=1357602 median=1357602 p95=1357602", dict(count=1, avg=1357602, median=1357602)),
])
def test_stat_line_variants(line, expect):
    rs = parse_stat_line(line)
    for k, v in expect.items():
        assert getattr(rs, k) == v


@pytest.mark.parametrize("line, why", [
    ("count=50 curr=1200", "lacks first"),
    ("count=50 first=1 curr=2 min=1 max=", "cut off or malformed at 'max='"),
    ("count=50 first=1 curr=2 min=1 max=3 avg=2 std=1 p5=1 median=2", "tail is incomplete"),
    ("count=50 first=1 curr=2 min=1 max=3 avg=2 std=1 p99=3", "does not know (p99)"),
])
def test_malformed_stat_lines_say_why(line, why):
    assert why in parse_stat_line(line)


def test_zero_runs_and_a_lone_line():
    with pytest.raises(NoTimedRunsError, match="zero timed runs"):
        parse_one("INFO: Running benchmark for at least 1 iterations\nINFO: count=4 curr=9(all same)\n"
                  "INFO: Running benchmark for at least 50 iterations\nINFO: count=0\n").to_stats()
    # Without any header, a lone line is the timed runs only in lenient mode (a backend that ran the tool itself).
    assert parse_one("count=1 curr=4136\n").to_stats()[1] == "a single run"
    strict = parse("count=1 curr=4136\n", strict=True)
    assert strict.timed_runs() == [] and "no 'Running benchmark' header" in strict.rejected[0].why


def test_op_profile_of_the_regular_runs_not_the_initialization():
    run = parse_one(PROFILE)
    # The profile's own "Timings (microseconds): count=..." lines are not the benchmark's statistics.
    assert run.timed.count == 50 and run.timed.avg == pytest.approx(55043.2)
    assert [(n.node_type, n.name) for n in run.nodes] == [
        ("TfLiteXNNPackDelegate", "[XNNPACK/conv;add]:3"), ("MEAN", "[output]:2")]
    first = run.nodes[0]
    assert first.avg_ms == pytest.approx(0.395) and first.first_ms == pytest.approx(0.421)
    assert first.percent == pytest.approx(81.443) and first.times_called == 1 and first.start_ms is None
    assert first.index == 3 and first.node_name == "XNNPACK/conv;add"
    assert [(t.phase, t.title) for t in run.profile] == [
        ("init", "run order"), ("regular", "run order"), ("regular", "top by computation time")]
    assert run.profile_timings["init"].count == 1 and run.profile_timings["regular"].avg == 485


@pytest.mark.parametrize("text", [PROFILE_OLD, PROFILE_SPACES])
def test_op_profile_with_start_column(text):
    run = parse_one(text)
    assert run.nodes[0].node_type == "CONV_2D"
    assert run.nodes[0].start_ms == 0.0 and run.nodes[0].avg_ms == pytest.approx(4.269)
    assert run.nodes[0].node_name == "conv1/Relu6" and run.nodes[0].index is None
    if text is PROFILE_OLD:
        assert run.nodes[1].start_ms == pytest.approx(4.27) and run.nodes[1].times_called == 1


def test_windows_line_endings_and_failures_are_reported():
    failed = ("INFO: STARTING!\r\nINFO: Loaded model x.tflite\r\n"
              "ERROR: Didn't find op for builtin opcode 'CONV_3D' version '1'\r\n"
              "ERROR: Failed to initialize the interpreter\r\nBenchmarking failed.\r\n")
    run = parse_one(failed)
    assert run.timed is None
    assert "Didn't find op for builtin opcode 'CONV_3D' version '1'" in run.errors
    assert "Benchmarking failed." in run.errors
    assert "no statistics" in run.no_timed_reason and "Benchmarking failed." in run.no_timed_reason
    with pytest.raises(NoTimedRunsError):
        run.to_stats()


# ---- issue 18: each real variant ----------------------------------------------------------------------------
def test_variant_old_summary_no_stats_label_is_the_inference_average():
    run = parse(_read("tf1.13_android_old_summary.txt")).runs[0]
    assert run.timings == {"warmup_avg": 12004.7, "init": 4211, "inference_avg": 11866.2}
    assert run.timed.count == 84 and run.warmup.count == 41
    # The cross-check runs against it: a summary that disagrees is an error in strict mode.
    bad = _read("tf1.13_android_old_summary.txt").replace("no stats: 11866.2", "no stats: 13000")
    with pytest.raises(OutputFormatError, match="contradicts itself"):
        parse(bad, "bad.log")
    with pytest.raises(UnitMismatchError, match="bad.log, line 21: units do not match"):
        parse(bad.replace("no stats: 13000", "no stats: 11.8662"), "bad.log")


def test_variant_single_run_warmup_with_percentile_tail():
    run = parse(_read("litert2.20_board_p5_median_exponent.txt")).runs[0]
    assert run.warmup.count == 1 and run.warmup.avg == 2104455 and run.warmup.median == 2104455
    assert run.timed.count == 50 and run.timed.avg == pytest.approx(1.99312e6) and run.timed.median == 1991877
    assert run.notes == []  # the summary's %g averages agree with the statistics lines


@pytest.mark.parametrize("prefix", [
    "11-02 09:41:11.530  8812  8812 I tflite  : ",  # logcat -v threadtime
    "11-02 09:41:11.530 I/tflite  ( 8812): ",  # logcat -v time
    "I/tflite  ( 8812): ",  # logcat -v brief
])
def test_variant_logcat_prefixes(prefix):
    body = _read("logcat_threadtime_apk.txt").splitlines()
    text = "\n".join(prefix + line.split(" : ", 1)[1] if " : " in line else line for line in body)
    log = parse(text)
    run = log.last_complete()
    assert run.timed.count == 4702 and run.timed.median == 211 and run.warmup.count == 2311
    assert run.model == "/data/local/tmp/ir_k3_e1.tflite" and "logcat" in log.prefixes
    assert clean_line("05-31 10:38:42.607 22206 22206 E tflite  : UNPACK: Operation is not supported.") == (
        "UNPACK: Operation is not supported.", {"logcat"}, True)


def test_variant_output_that_ends_after_the_warmup_block():
    text = _read("tf2.17_linux_info_tags.txt")
    cut = text[: text.index("INFO: Running benchmark for at least 50")]
    run = parse(cut).runs[0]
    assert run.timed is None and run.warmup.count == 2920
    assert run.no_timed_reason.startswith("warmup only") and "line 13" in run.no_timed_reason
    # Cut after the timed header: the timed block started but has no statistics.
    cut = text[: text.index("INFO: count=5881")]
    assert parse(cut).runs[0].no_timed_reason.startswith("cut off: the timed runs started at line 15")
    # A paste that starts at the timed block: the parameters say which block it is.
    paste = "Min num runs: [50]\nMin warmup runs: [1]\n" + text[text.index("INFO: count=2920"):]
    run = parse(paste).runs[0]
    assert run.timed.count == 5881 and run.warmup.count == 2920


def test_variant_litert_compiled_model_in_ms():
    run = parse(_read("litert_compiledmodel_ms.txt")).runs[0]
    assert run.format == "litert-compiledmodel" and run.model == "/data/local/tmp/fbnet_a.tflite"
    assert run.timed.count == 40 and run.timed.avg == pytest.approx(12410) and run.timed.min == pytest.approx(12050)
    assert run.timed.max == pytest.approx(13900) and run.timed.std == pytest.approx(310)  # std's unit: the avg's
    assert run.warmup.count == 5 and run.timings["init"] == pytest.approx(41800)
    assert run.params["Signature name"] == "serving_default"
    assert run.to_stats()[0].mean == pytest.approx(12.41)
    with pytest.raises(UnitMismatchError, match=r"x.log, line 7: unit 'ns' is not one this parser knows"):
        parse(_read("litert_compiledmodel_ms.txt").replace("12.41 ms (40", "12.41 ns (40"), "x.log")


def test_variant_profiler_lines_are_not_run_statistics():
    log = parse(_read("tf2.0_board_opprof_tabs.txt"))
    run = log.runs[0]
    assert run.timed.count == 226 and run.timed.avg == pytest.approx(4431.9)  # not the profiler's 4430.1
    assert [r.text.split(":")[0] for r in log.rejected] == ["Timings (microseconds)", "Memory (bytes)"]
    assert all("op profiler" in r.why for r in log.rejected)
    assert [n.node_type for n in run.nodes] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD"]
    assert run.nodes[1].start_ms == pytest.approx(1.791) and run.nodes[0].index is None


def test_variant_exponent_averages_and_index_suffixed_names():
    run = parse(_read("tf2.3_desktop_opprof_phases.txt")).runs[0]
    assert run.timed.count == 2398 and run.warmup.count == 1201
    assert [(n.node_name, n.index) for n in run.nodes] == [("stem/conv/Relu", 0), ("output", 1)]
    assert run.profile[0].phase == "init" and run.profile[0].nodes[0].node_type == "AllocateTensors"
    assert run.profile_timings["init"].count == 1 and run.profile_timings["regular"].count == 2398


def test_variant_markdown_quoting_and_xcode_nslog_headers():
    log = parse(_read("ios_app_xcode_quoted.txt"))
    run = log.runs[0]
    assert run.name == "fbnet_c_benchmark" and run.threads == 2
    assert run.timed.count == 66 and run.warmup.count == 33
    assert {"quote", "nslog"} <= set(log.prefixes)
    assert [r.why for r in log.rejected] == ["the same statistics line printed twice (an echo)"] * 2


def test_space_aligned_table_with_spaces_in_names():
    text = (OLD + "============================== Run Order ==============================\n"
            "   [node type]   [start]   [first]   [avg ms]   [%]   [cdf%]   [mem KB]   [times called]  [Name]\n"
            "   DELEGATE   0.000   2.1   2.2   91.3%   91.3%   0.000   1   [lstm/cell_0/BiasAdd]\n"
            "   SPLIT   2.2   0.015   0.013   0.5%   91.8%   0.000   1   [lstm/split, lstm/split:1, lstm/split:2]\n")
    nodes = parse_one(text).nodes
    assert [n.node_type for n in nodes] == ["DELEGATE", "SPLIT"]
    assert nodes[1].name == "[lstm/split, lstm/split:1, lstm/split:2]" and nodes[1].avg_ms == pytest.approx(0.013)


def test_cut_off_lines_name_the_source_and_line():
    text = _read("tf2.17_linux_info_tags.txt")
    with pytest.raises(TruncatedOutputError, match=r"run.log, line 16: statistics line is cut off"):
        parse(text.replace(" avg=168.9 std=7", ""), "run.log")
    with pytest.raises(TruncatedOutputError, match=r"run.log, line 18: timings line is cut off"):
        parse(text.replace(", Inference (avg): 168.9", ""), "run.log")
    with pytest.raises(UnitMismatchError, match="timings are in 'ms'"):
        parse(text.replace("timings in us", "timings in ms"), "run.log")
    # Lenient: the same lines are rejected with the reason, and the rest is read.
    log = parse(text.replace(" avg=168.9 std=7", ""), "run.log", strict=False)
    assert log.runs[0].timed is None and "cut off" in log.rejected[0].why and log.rejected[0].line == 16


def test_several_runs_of_one_model_the_last_complete_one_counts():
    one = _read("tf2.17_linux_info_tags.txt")
    two = one.replace("count=5881 first=167 curr=165 min=160 max=311 avg=168.9 std=7",
                      "count=5000 first=170 curr=171 min=165 max=301 avg=172 std=6").replace(
        "Inference (avg): 168.9", "Inference (avg): 172")
    crashed = one[: one.index("INFO: count=5881")]
    log = parse(one + two + crashed)
    assert len(log.runs) == 3 and [r.timed.count if r.timed else None for r in log.runs] == [5881, 5000, None]
    assert log.last_complete() is log.runs[1]
    assert log.runs[2].no_timed_reason.startswith("cut off")


def test_ios_app_results_view_is_checked_against_the_log():
    view = "Inference:\n - Num runs: 50\n - Average: 55.0432 ms\n"
    assert parse(MODERN + view).runs[0].app_view["inference"] == {"count": 50, "avg": 55.0432}
    with pytest.raises(UnitMismatchError, match="units do not match"):
        parse(MODERN + view.replace("55.0432 ms", "55043.2 ms"))


# ---- whole logs, one per era ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, model, count, avg, median, warmup, nodes", [
    ("tf1.13_android_old_summary.txt", "/data/local/tmp/fbnet/ir_k3_e6.tflite", 84, 11866.2, None, 41, 0),
    ("tf2.0_board_opprof_tabs.txt", "models/ir_k5_e3.tflite", 226, 4431.9, None, 112, 4),
    ("tf2.3_desktop_opprof_phases.txt", "/work/models/stem_conv.tflite", 2398, 409.871, None, 1201, 2),
    ("tf2.17_linux_info_tags.txt", "ir_k5_e6.tflite", 5881, 168.9, None, 2920, 0),
    ("litert2.20_board_p5_median_exponent.txt", "/opt/models/fbnet_c.tflite", 50, 1.99312e6, 1991877, 1, 0),
    ("logcat_threadtime_apk.txt", "/data/local/tmp/ir_k3_e1.tflite", 4702, 212.7, 211, 2311, 0),
    ("ios_app_xcode_quoted.txt", "/private/var/containers/Bundle/Application/0A1B2C3D-0000-4000-8000-0123456789AB/"
     "TFLiteBenchmark.app/fbnet_c.tflite", 66, 15144.8, None, 33, 0),
    ("litert_compiledmodel_ms.txt", "/data/local/tmp/fbnet_a.tflite", 40, 12410, None, 5, 0),
])
def test_whole_log_of_each_era(name, model, count, avg, median, warmup, nodes):
    for strict in (True, False):
        log = parse(_read(name), name, strict=strict)
        assert len(log.runs) == 1
        run = log.runs[0]
        assert run.model == model and run.timed.count == count and run.timed.avg == pytest.approx(avg)
        assert run.timed.median == median and run.warmup.count == warmup and len(run.nodes) == nodes
        assert run.no_timed_reason is None
        s = run.summary()
        assert s["count"] == count and s["median_us"] == median and s["stats_line"] == run.timed.line


def test_a_run_that_stopped_before_the_next_one_says_so():
    one = _read("tf2.17_linux_info_tags.txt")
    crashed = one[: one.index("INFO: count=5881")]
    log = parse(crashed + one)
    assert "but the next run starts before their statistics" in log.runs[0].no_timed_reason
    assert log.last_complete() is log.runs[1]
    # A summary label of a newer build is kept, not taken for a cut-off line.
    newer = one.replace("Inference (avg): 168.9", "Inference (avg): 168.9, Inference (std): 7")
    assert parse(newer).runs[0].timings["Inference (std)"] == 7
