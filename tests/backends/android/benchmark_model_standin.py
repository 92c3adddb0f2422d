"""A host stand-in for TFLite's benchmark_model: it really runs the .tflite with LiteRT and prints the tool's format.

Pushed to the loopback phone in place of the Android binary (with a ``#!`` line naming this Python). It accepts the
real tool's ``--flag=value`` options, honours warmup/run counts and seconds as the tool does, and prints its output
lines (current builds' layout, with ``INFO:`` tags). Failures print the tool's ``ERROR:`` lines and exit 1.

With ``--enable_op_profiling=true`` it prints the regular-runs Run Order table the way the tool shows a model that
XNNPACK took whole: one delegate node, timed by the same invokes. It cannot time single ops without a delegate
(LiteRT's Python API has no profiler), so that combination is refused rather than invented.
"""

import os
import sys
import time


def flags(argv):
    out = {}
    for a in argv:
        if not a.startswith("--") or "=" not in a:
            print(f"ERROR: Unconsumed cmdline flags: {a}")
            sys.exit(1)
        k, v = a[2:].split("=", 1)
        out[k] = v
    return out


def truth(v):
    return str(v).lower() in ("1", "true")


def stat_line(xs):
    xs = [int(round(x)) for x in xs]
    n = len(xs)
    if n == 0:
        return "count=0"
    if all(x == xs[0] for x in xs):
        return f"count={n} curr={xs[-1]}" + ("(all same)" if n > 1 else "")
    avg = sum(xs) / n
    std = int((sum((x - avg) ** 2 for x in xs) / n) ** 0.5)  # the tool's Stat<int64_t> prints an integer std
    return f"count={n} first={xs[0]} curr={xs[-1]} min={min(xs)} max={max(xs)} avg={avg:g} std={std}"


def timed(invoke, min_runs, min_secs, max_secs):
    xs = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter_ns()
        invoke()
        xs.append((time.perf_counter_ns() - t0) / 1000.0)
        elapsed = time.perf_counter() - start
        if (len(xs) >= min_runs and elapsed >= min_secs) or elapsed >= max_secs:
            return xs


class Fp16:
    """XNNPACK with its FORCE_FP16 flag, as the tool's --xnnpack_force_fp16 sets it: LiteRT's Python Interpreter has
    no delegate flags, its CompiledModel takes them. Quacks like the Interpreter for what main() asks of it."""

    def __init__(self, graph, threads, it):
        from ai_edge_litert import options
        from ai_edge_litert.compiled_model import CompiledModel

        self.details = it.get_input_details()
        cpu = options.CpuOptions(num_threads=threads, xnnpack_flags=1 | 2 | 4)  # QS8 | QU8 | FORCE_FP16
        self.model = CompiledModel.from_file(graph, options=options.Options(cpu_options=cpu))
        self.ins, self.outs = self.model.create_input_buffers(0), self.model.create_output_buffers(0)
        print("INFO: XNNPACK FP16 inference forced.")

    def get_input_details(self):
        return self.details

    def set_tensor(self, index, x):
        self.ins[0].write(x)

    def invoke(self):
        self.model.run_by_index(0, self.ins, self.outs)


def main(argv):
    f = flags(argv)
    graph = f.get("graph", "")
    threads = int(f.get("num_threads", "-1"))
    warmup_runs = int(f.get("warmup_runs", "1"))
    warmup_min = float(f.get("warmup_min_secs", "0.5"))
    runs = int(f.get("num_runs", "50"))
    min_secs = float(f.get("min_secs", "1"))
    max_secs = float(f.get("max_secs", "150"))
    xnnpack = truth(f.get("use_xnnpack", "true"))
    profile = truth(f.get("enable_op_profiling", "false"))
    print("INFO: STARTING!")
    print("INFO: Log parameter values verbosely: [0]")
    print(f"INFO: Num threads: [{threads}]")
    if f.get("benchmark_name"):  # the tool logs the parameters that differ from their defaults
        print(f"INFO: Benchmark name: [{f['benchmark_name']}]")
    print(f"INFO: Graph: [{graph}]")
    if truth(f.get("use_gpu", "false")):
        print("ERROR: GPU acceleration is unsupported on this platform.")
        print("Benchmarking failed.")
        return 1
    if profile and not xnnpack:
        print("ERROR: the stand-in can only profile a model that XNNPACK takes whole")
        print("Benchmarking failed.")
        return 1
    print(f"INFO: #threads used for CPU inference: [{threads}]")
    if not os.path.isfile(graph):
        print(f"ERROR: Could not open '{graph}'.")
        print(f"ERROR: Failed to mmap model {graph}")
        print("Benchmarking failed.")
        return 1
    t_init = time.perf_counter()
    try:
        import numpy as np
        from ai_edge_litert import interpreter as lt

        resolver = lt.OpResolverType.AUTO if xnnpack else lt.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        it = lt.Interpreter(model_path=graph, num_threads=max(threads, 1), experimental_op_resolver_type=resolver)
        it.allocate_tensors()
        if xnnpack and truth(f.get("xnnpack_force_fp16", "false")):
            it = Fp16(graph, max(threads, 1), it)
    except Exception as e:  # the tool reports whatever the runtime says and gives up
        print(f"ERROR: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}")
        print(f"ERROR: Failed to load model {graph}")
        print("Benchmarking failed.")
        return 1
    print(f"INFO: Loaded model {graph}")
    if xnnpack:
        print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    print(f"INFO: The input model file size (MB): {os.path.getsize(graph) / 1e6:g}")
    d = it.get_input_details()[0]
    # like the real binary, random input of the model's input type (int8 for a full-integer model)
    rng = np.random.default_rng(0)
    if np.dtype(d["dtype"]).kind in "iu":
        info = np.iinfo(d["dtype"])
        x = rng.integers(info.min, info.max, size=tuple(d["shape"]), endpoint=True).astype(d["dtype"])
    else:
        x = rng.standard_normal(d["shape"]).astype(np.float32)
    it.set_tensor(d["index"], x)
    init_us = (time.perf_counter() - t_init) * 1e6
    print(f"INFO: Initialized session in {init_us / 1000:g}ms.")
    print(f"INFO: Running benchmark for at least {warmup_runs} iterations and at least {warmup_min:g} seconds "
          f"but terminate if exceeding {max_secs:g} seconds.")
    warm = timed(it.invoke, warmup_runs, warmup_min, max_secs) if warmup_runs > 0 else []
    print("INFO: " + stat_line(warm) + "\n")
    print(f"INFO: Running benchmark for at least {runs} iterations and at least {min_secs:g} seconds "
          f"but terminate if exceeding {max_secs:g} seconds.")
    xs = timed(it.invoke, runs, min_secs, max_secs)
    print("INFO: " + stat_line(xs) + "\n")
    avg = sum(int(round(x)) for x in xs) / len(xs)
    warm_avg = sum(warm) / len(warm) if warm else 0
    first = warm[0] if warm else xs[0]
    print(f"INFO: Inference timings in us: Init: {int(init_us)}, First inference: {int(first)}, "
          f"Warmup (avg): {warm_avg:g}, Inference (avg): {avg:g}")
    if profile:
        mean_ms = avg / 1000
        print("INFO: Operator-wise Profiling Info for Regular Benchmark Runs:")
        print("============================== Run Order ==============================")
        cols = ["[node type]", "[first]", "[avg ms]", "[%]", "[cdf%]", "[mem KB]", "[times called]"]
        print("\t" + "\t".join(c.rjust(16) for c in cols) + "\t[Name]")
        cells = ["TfLiteXNNPackDelegate", f"{xs[0] / 1000:.3f}", f"{mean_ms:.3f}", "100.000%", "100.000%",
                 "0.000", "1"]
        print("\t" + "\t".join(c.rjust(16) for c in cells) + "\t[XNNPACK]:0")
        print()
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    sys.exit(main(sys.argv[1:]))
