"""The benchmark_model parser against outputs that people published (GitHub issues, vendor docs, raw logs).

For each file: which variant it shows, what the parser read (timed runs, warmup, percentiles, op-profile rows, or
why there are no timed runs), and whether that is what the file says. The expected values were read off the files
by hand; they are not the parser's output. Files are not part of the project (see their README/SOURCES); point
the script at their folder:

    python benchmarks/parse_real_outputs.py [DIR]       # default: $FBNET_LUT_REAL_OUTPUTS or
                                                        # /work/shared/data/real_outputs
    python benchmarks/parse_real_outputs.py DIR --json  # the same as JSON
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from latency_lut.backends.tflite_benchmark import BenchmarkLog, OutputFormatError, parse

DEFAULT_DIR = Path(os.environ.get("FBNET_LUT_REAL_OUTPUTS", "/work/shared/data/real_outputs"))

# file -> (variant, expected): count/avg/median (us) of the timed runs, warmup count, op-profile rows of the regular
# runs; or "none": the start of the reason there are no timed runs.
EXPECTED: dict[str, tuple[str, dict[str, Any]]] = {
    "android_gpu_tf2.3format_issue43541.txt": (
        "GPU delegate, bare + INFO: lines", dict(count=50, avg=119375, median=None, warmup=4, nodes=0)),
    "android_tf1.13_issue77_yuenshome.txt": (
        "TF 1.13 'no stats:' summary, old headers", dict(count=15, avg=66767.6, median=None, warmup=7, nodes=0,
                                                         summary=66767.6)),
    "android_tf1.14_delegate_opprof_spaces_deepspeech_issue2270.txt": (
        "summary only + space table, names with ', '", dict(none="no statistics: only the summary", nodes=3,
                                                            summary=23313.5)),
    "android_tf2.3_opprof_issue42507.txt": (
        "TF 2.3, profile cut at init header", dict(count=50, avg=33209.4, median=None, warmup=15, nodes=0)),
    "android_tf2.7_flex_kws_google-research_issue802.txt": (
        "TF 2.7 flex, 1000 runs", dict(count=1000, avg=1039.66, median=None, warmup=478, nodes=0)),
    "desktop_tf2.17_xnnpack_issue73862.txt": (
        "INFO: tags (TF 2.17)", dict(count=74, avg=13520.2, median=None, warmup=37, nodes=0)),
    "desktop_x86_tf2.3_opprof_tflite-soc_avx2_4t.txt": (
        "op profile, init + regular phases, ':N' names", dict(count=90, avg=11040.4, median=None, warmup=43,
                                                              nodes=31)),
    "embedded_litert2.20_cpu_p5median_ti-processor-sdk-doc.txt": (
        "count=1 warmup with p5 tail, %g avg", dict(count=50, avg=1.24027e6, median=1239807, warmup=1, nodes=0)),
    "embedded_litert2.20_xnnpack_p5median_ti-processor-sdk-doc.txt": (
        "p5/median/p95, no blank lines", dict(count=50, avg=899641, median=899281, warmup=1, nodes=0)),
    "ios_app_2022_metal_xcode_nslog_quoted_issue44369_2022.txt": (
        "iOS: '> ' + NSLog, no results", dict(none="no statistics")),
    "ios_app_tf2.1x_xnnpack_issue66025.txt": (
        "iOS app, ends after warmup", dict(none="warmup only", warmup=3)),
    "ios_app_tf2.3_metal_opprof_quoted_issue44369_2020.txt": (
        "iOS: '> ' + NSLog, ends before runs", dict(none="no statistics")),
    "litert_next_compiledmodel_benchmark_mlcommons_issue1134.txt": (
        "LiteRT CompiledModel tool, ms", dict(count=10, avg=7430200, median=None, warmup=1, nodes=0, min=7416400,
                                              max=7448860)),
    "logcat_litert_apk_xnnpack_p5median_UNRESOLVED-SOURCE.txt": (
        "logcat threadtime + p5 tails", dict(count=25, avg=257131, median=252767, warmup=3, nodes=0)),
    "logcat_tf2.9_apk_gpu_issue56301.txt": (
        "logcat, ends before runs", dict(none="no statistics")),
    "riscv_qemu_tf2.8_opprof_meta-tensorflow-lite.txt": (
        "count=1 curr= warmup, %g avg, profile", dict(count=50, avg=2.95034e6, median=None, warmup=1, nodes=31)),
    "tf1.13_opprof_start_column_issue27948.txt": (
        "TF 1.13 [start] table, no summary", dict(count=50, avg=947350, median=None, warmup=1, nodes=6)),
    "zedboard_tf2.0_opprof_tflite-soc_2019-11-11.txt": (
        "TF 2.0 'no stats:', tab table, no phases", dict(count=50, avg=394183, median=None, warmup=2, nodes=31)),
}


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-6)


def check(log: BenchmarkLog, want: dict[str, Any]) -> tuple[str, list[str]]:
    """What was read (one line) and the list of differences from what the file says."""
    bad: list[str] = []
    run = log.last_complete()
    last = run or (log.runs[-1] if log.runs else None)
    nodes = len(last.nodes) if last else 0
    if last is not None and not last.nodes:
        nodes = max((len(t.nodes) for t in last.profile if t.phase == "regular"), default=0)
    if "none" in want:
        why = last.no_timed_reason if last else log.why_no_timed_runs()
        read = f"no timed runs: {why}"
        if run is not None:
            bad.append(f"read timed runs (count={run.timed.count}) the file does not have")
        elif not (why or "").startswith(want["none"]):
            bad.append(f"reason should start {want['none']!r}")
        if "warmup" in want and (last is None or last.warmup is None or last.warmup.count != want["warmup"]):
            bad.append(f"warmup count should be {want['warmup']}")
    elif run is None:
        read = f"no timed runs: {last.no_timed_reason if last else log.why_no_timed_runs()}"
        bad.append(f"missed the timed runs (count={want['count']})")
    else:
        t = run.timed
        read = (f"count={t.count} avg={t.avg:g} std={t.std:g} min={t.min:g} max={t.max:g} median="
                f"{'-' if t.median is None else f'{t.median:g}'} warmup={run.warmup.count if run.warmup else '-'}")
        for k, got in (("count", t.count), ("avg", t.avg), ("median", t.median), ("min", t.min), ("max", t.max),
                       ("warmup", run.warmup.count if run.warmup else None)):
            if k in want and not _close(got, want[k]):
                bad.append(f"{k}={got} should be {want[k]}")
    if "summary" in want and (last is None or not _close(last.timings.get("inference_avg"), want["summary"])):
        bad.append(f"summary 'Inference (avg)' should be {want['summary']:g}")
    if "nodes" in want:
        read += f", {nodes} profile rows"
        if nodes != want["nodes"]:
            bad.append(f"profile rows {nodes} should be {want['nodes']}")
    return read, bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    files = sorted(args.dir.glob("*.txt"))
    if not files:
        print(f"Error: no .txt files in {args.dir}", file=sys.stderr)
        return 2
    rows = []
    for f in files:
        variant, want = EXPECTED.get(f.name, ("(not described)", {}))
        text = f.read_text(errors="replace")
        reads = {}
        for mode, strict in (("strict", True), ("lenient", False)):
            try:
                log = parse(text, f.name, strict=strict)
                reads[mode] = check(log, want) if want else ("(no expectation)", [])
                reads[mode] += (log.rejected,)
            except OutputFormatError as e:
                reads[mode] = (f"error: {e}", ["raised"], [])
        read, bad, rejected = reads["strict"]
        if reads["lenient"][:2] != (read, bad):
            bad = [*bad, f"lenient mode reads otherwise: {reads['lenient'][0]}"]
        rows.append({"file": f.name, "variant": variant, "read": read, "rejected": len(rejected),
                     "correct": bool(want) and not bad, "problems": bad})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        w = max(len(r["file"]) for r in rows)
        print(f"{'file':<{w}}  {'variant':<46}  {'correct':<7}  rejected  read")
        for r in rows:
            mark = "yes" if r["correct"] else "NO"
            print(f"{r['file']:<{w}}  {r['variant']:<46}  {mark:<7}  {r['rejected']:>8}  {r['read']}")
            for p in r["problems"]:
                print(f"{'':<{w}}    ! {p}")
        ok = sum(r["correct"] for r in rows)
        print(f"\n{ok}/{len(rows)} read correctly (strict and lenient modes agree on each). 'rejected': lines that "
              "look like results but are not (the op profiler's own Timings/Memory lines, echoes).")
        print(f"Reproduce: python benchmarks/parse_real_outputs.py {args.dir}")
    return 0 if all(r["correct"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
