"""benchmark_model output parser: every variant listed in FACTS §6."""

from __future__ import annotations

import pytest

from latency_lut.android.benchmark_output import BenchmarkOutputError, parse_benchmark_output, parse_run_stats

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


def test_modern_output_gives_the_timed_runs_not_the_warmup():
    out = parse_benchmark_output(MODERN)
    assert out.runs.count == 50 and out.runs.avg == pytest.approx(55043.2)
    assert out.warmup.count == 9
    assert out.timings_us["Init"] == 18777 and out.inference_avg_us == pytest.approx(55043.2)
    stats, source = out.to_stats()
    assert stats.count == 50
    assert stats.mean == pytest.approx(55.0432) and stats.std == pytest.approx(1.562)
    assert stats.min == pytest.approx(53.077) and stats.max == pytest.approx(60.727)
    # No printed median: the median is the average and the quantiles come from a normal fit, clipped to min/max.
    assert stats.median == pytest.approx(55.0432)
    assert stats.p25 == pytest.approx(55.0432 - 0.67449 * 1.562, rel=1e-4)
    assert stats.p10 == pytest.approx(max(53.077, 55.0432 - 1.28155 * 1.562), rel=1e-4)
    assert stats.min <= stats.p10 <= stats.p25 <= stats.median <= stats.p75 <= stats.p90 <= stats.max
    assert "mean/std" in source
    assert out.nodes == [] and out.errors == []


def test_old_output_with_average_inference_timings_line():
    out = parse_benchmark_output(OLD)
    assert out.runs.count == 50 and out.runs.avg == pytest.approx(60000.5)
    assert out.timings_us == {"Warmup": 62000, "Init": 20100, "Inference": 60000.5}
    assert out.inference_avg_us == pytest.approx(60000.5)
    assert out.to_stats()[0].mean == pytest.approx(60.0005)


def test_printed_percentiles_give_the_median_and_skewed_quantiles():
    stats, source = parse_benchmark_output(PERCENTILES).to_stats()
    assert stats.median == pytest.approx(54.8)
    # Right-skewed: the upper side is wider than the lower side, as p5/p95 say.
    assert stats.p90 - stats.median > stats.median - stats.p10
    assert stats.p10 == pytest.approx(54.8 - 1.28155 * (54.8 - 53.3) / 1.64485, rel=1e-4)
    assert stats.p90 == pytest.approx(54.8 + 1.28155 * (58.9 - 54.8) / 1.64485, rel=1e-4)
    assert "p5/median/p95" in source


def test_all_same_runs():
    out = parse_benchmark_output(ALL_SAME)
    assert out.runs.all_same and out.runs.count == 20 and out.runs.curr == 11
    stats, source = out.to_stats()
    assert stats.median == stats.p10 == stats.p90 == stats.min == stats.max == pytest.approx(0.011)
    assert stats.std == 0 and stats.noise == 0
    assert "same" in source


@pytest.mark.parametrize("line, expect", [
    ("count=1 curr=4136", dict(count=1, curr=4136, avg=None)),
    ("count=0", dict(count=0, curr=None)),
    ("count=5 first=1.5e+06 curr=1.2e+06 min=1.1e+06 max=1.5e+06 avg=1.23457e+06 std=150000",
     dict(count=5, avg=1234570.0, first=1.5e6)),
])
def test_stat_line_variants(line, expect):
    rs = parse_run_stats(line)
    for k, v in expect.items():
        assert getattr(rs, k) == v


def test_single_run_and_zero_runs():
    stats, source = parse_benchmark_output("count=1 curr=4136\n").to_stats()
    assert stats.count == 1 and stats.median == pytest.approx(4.136) and source == "a single run"
    with pytest.raises(BenchmarkOutputError):
        parse_benchmark_output("INFO: count=0\n").to_stats()


def test_op_profile_of_the_regular_runs_not_the_initialization():
    out = parse_benchmark_output(PROFILE)
    # The profile's own "Timings (microseconds): count=..." lines are not the benchmark's statistics.
    assert out.runs.count == 50 and out.runs.avg == pytest.approx(55043.2)
    assert [(n.node_type, n.name) for n in out.nodes] == [
        ("TfLiteXNNPackDelegate", "[XNNPACK/conv;add]:3"), ("MEAN", "[output]:2")]
    first = out.nodes[0]
    assert first.avg_ms == pytest.approx(0.395) and first.first_ms == pytest.approx(0.421)
    assert first.percent == pytest.approx(81.443) and first.times_called == 1 and first.start_ms is None


@pytest.mark.parametrize("text", [PROFILE_OLD, PROFILE_SPACES])
def test_op_profile_with_start_column(text):
    out = parse_benchmark_output(text)
    assert out.nodes[0].node_type == "CONV_2D"
    assert out.nodes[0].start_ms == 0.0 and out.nodes[0].avg_ms == pytest.approx(4.269)
    assert out.nodes[0].name.endswith("conv1/Relu6]") or out.nodes[0].name == "conv1/Relu6"
    if text is PROFILE_OLD:
        assert out.nodes[1].start_ms == pytest.approx(4.27) and out.nodes[1].times_called == 1


def test_windows_line_endings_and_failures_are_reported():
    failed = ("INFO: STARTING!\r\nINFO: Loaded model x.tflite\r\n"
              "ERROR: Didn't find op for builtin opcode 'CONV_3D' version '1'\r\n"
              "ERROR: Failed to initialize the interpreter\r\nBenchmarking failed.\r\n")
    out = parse_benchmark_output(failed)
    assert out.runs is None
    assert "Didn't find op for builtin opcode 'CONV_3D'" in out.error_text()
    assert "Benchmarking failed." in out.errors
    with pytest.raises(BenchmarkOutputError):
        out.to_stats()
