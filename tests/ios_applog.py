"""Test helper: run a bundle's models with LiteRT here and print their results as the iOS benchmark app does.

The numbers are real timings of the bundle's own .tflite files under its own benchmark_params.json (threads,
warmup and timed runs); only the phone is replaced by this machine. The text follows what the app's benchmark
library logs (``INFO:``-tagged parameter lines, two tensorflow ``Stat`` lines, the ``Inference timings in us``
summary) and the app's results-view text, optionally under a syslog header.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from latency_lut.backends.base import sample_input

APP_DIR = "/private/var/containers/Bundle/Application/5F0C2E1A-7B7D-4C51-9A34-0D1E2F3A4B5C/TFLiteBenchmark.app"
SYSLOG_HEADER = "Nov 22 10:14:03 Johns-iPhone TFLiteBenchmark(TensorFlowLiteBenchmarkC)[812] <Notice>: "


@dataclass
class Timing:
    key: str
    params: dict[str, str]
    graph: Path
    init_us: int
    warmup_us: list[int]
    runs_us: list[int]


def time_model(folder: Path) -> Timing:
    """Run one bundle folder's model as its benchmark_params.json asks (min_secs is ignored: tests use 0)."""
    from ai_edge_litert import interpreter

    params = json.loads((folder / "benchmark_params.json").read_text())
    graph = folder / params["graph"]
    t0 = time.perf_counter_ns()
    it = interpreter.Interpreter(model_path=str(graph), num_threads=int(params["num_threads"]))
    it.allocate_tensors()
    init_us = (time.perf_counter_ns() - t0) // 1000
    d = it.get_input_details()[0]
    # like the app's benchmark: random input of the model's input type (int8 for a full-integer model)
    it.set_tensor(d["index"], sample_input(d["shape"], d["dtype"]))

    def timed(n: int) -> list[int]:
        out = []
        for _ in range(n):
            a = time.perf_counter_ns()
            it.invoke()
            out.append(max(1, (time.perf_counter_ns() - a) // 1000))
        return out

    warm = timed(max(1, int(params["warmup_runs"])))
    runs = timed(int(params["num_runs"]))
    return Timing(folder.name, params, graph, init_us, warm, runs)


def time_bundle(bundle: Path, keys: list[str] | None = None) -> list[Timing]:
    order = [line.strip() for line in (bundle / "run_list.txt").read_text().splitlines() if line.strip()]
    folders = [bundle / f for f in order if keys is None or Path(f).name in keys]
    return [time_model(f) for f in folders]


def g(x: float) -> str:
    """C++ ostream's default formatting of a double (6 significant digits, %g)."""
    return f"{x:g}"


def stat_line(xs: list[int]) -> str:
    """A tensorflow Stat<int64_t> as OutputToStream prints it (avg a double, std an int64)."""
    n = len(xs)
    if all(x == xs[0] for x in xs):
        return f"count={n} curr={xs[-1]}" + ("(all same)" if n > 1 else "")
    avg = sum(xs) / n
    std = int(math.sqrt(max(sum(x * x for x in xs) / n - avg * avg, 0.0)))
    return f"count={n} first={xs[0]} curr={xs[-1]} min={min(xs)} max={max(xs)} avg={g(avg)} std={std}"


def block_lines(t: Timing, *, app_view: bool = True) -> list[str]:
    p = t.params
    graph = f"{APP_DIR}/{p['graph']}"
    info = [
        "Log parameter values verbosely: [0]",
        f"Min num runs: [{p['num_runs']}]",
        f"Min runs duration (seconds): [{p['min_secs']}]",
        f"Max runs duration (seconds): [{p['max_secs']}]",
        f"Inter-run delay (seconds): [{p['run_delay']}]",
        f"Num threads: [{p['num_threads']}]",
        f"Benchmark name: [{p['benchmark_name']}]",
        f"Min warmup runs: [{p['warmup_runs']}]",
        f"Min warmup runs duration (seconds): [{p['warmup_min_secs']}]",
        f"Graph: [{graph}]",
        f"Use xnnpack: [{1 if p.get('use_xnnpack') == 'true' else 0}]",
        f"Loaded model {graph}",
        "Initialized TensorFlow Lite runtime.",
        "Created TensorFlow Lite XNNPACK delegate for CPU.",
        f"The input model file size (MB): {g(t.graph.stat().st_size / 1e6)}",
        f"Initialized session in {g(t.init_us / 1e3)}ms.",
        f"Running benchmark for at least {p['warmup_runs']} iterations and at least {p['warmup_min_secs']} seconds "
        f"but terminate if exceeding {p['max_secs']} seconds.",
        stat_line(t.warmup_us),
        f"Running benchmark for at least {p['num_runs']} iterations and at least {p['min_secs']} seconds but "
        f"terminate if exceeding {p['max_secs']} seconds.",
        stat_line(t.runs_us),
        f"Inference timings in us: Init: {t.init_us}, First inference: {t.warmup_us[0]}, Warmup (avg): "
        f"{g(sum(t.warmup_us) / len(t.warmup_us))}, Inference (avg): {g(sum(t.runs_us) / len(t.runs_us))}",
    ]
    lines: list[str] = []
    for msg in info:
        lines.append(f"INFO: {msg}")
        if msg.startswith("count="):
            lines.append("")  # the Stat line ends with its own endl before the logger's
    if app_view:
        lines += _app_view(t)
    return lines


def _app_view(t: Timing) -> list[str]:
    """The app's results text (ResultsListener::OnBenchmarkEnd), in milliseconds."""
    def section(xs: list[int]) -> list[str]:
        n, avg = len(xs), sum(xs) / len(xs)
        std = int(math.sqrt(max(sum(x * x for x in xs) / n - avg * avg, 0.0)))
        return [f" - Num runs: {n}", f" - Average: {g(avg / 1e3)} ms", f" - Min: {g(min(xs) / 1e3)} ms ",
                f" - Max: {g(max(xs) / 1e3)} ms ", f" - Std deviation: {g(std / 1e3)} ms"]

    return [f"Startup latency: {g(t.init_us / 1e3)} ms", "", "Inference:", *section(t.runs_us), "", "Warmup:",
            *section(t.warmup_us)]


def console_log(timings: list[Timing], *, device: dict | None = None, syslog: bool = False,
                app_view: bool = True, noise: bool = True) -> str:
    """The console text of a run over ``timings``; ``noise`` adds unrelated app output between blocks."""
    lines: list[str] = []
    if device:
        lines.append("fbnet-lut device: " + json.dumps(device))
    for i, t in enumerate(timings):
        if noise and i == 1:
            lines.append("UIKit: scene did become active")
        lines += block_lines(t, app_view=app_view)
    if syslog:
        lines = [SYSLOG_HEADER + line for line in lines]
    return "\n".join(lines) + "\n"


def mean_ms(t: Timing) -> float:
    return sum(t.runs_us) / len(t.runs_us) / 1e3
