"""Import every public table of ../shared/data/public_luts (or --dir): entries, completeness, a named
architecture's total, and the import time (target <= 1 s each). The HW-NAS-Bench tables are also checked against
the 48 totals of api_reference_sums.json (the same check runs in the tests, on the copy in tests/interop/data).

    python benchmarks/public_luts.py --dir /path/to/public_luts
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from latency_lut.interop import export_doc, import_lut
from latency_lut.predict import predict, space_of
from latency_lut.synthetic import synthetic_lut

HWNAS_METRICS = ("pixel3_latency", "raspi4_latency", "edgegpu_latency", "eyeriss_latency", "fpga_latency",
                 "edgegpu_energy", "eyeriss_energy", "fpga_energy")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("../shared/data/public_luts"),
                    help="folder of the public tables [default: ../shared/data/public_luts]")
    args = ap.parse_args()
    d = args.dir
    if not d.is_dir():
        raise SystemExit(f"no folder {d}; give the public tables' folder with --dir")
    rows = []
    ok = total = 0
    hw = d / "hwnasbench_fbnet"
    if hw.is_dir():
        ref = json.loads((hw / "api_reference_sums.json").read_text())["reference_sums"]
        for m in HWNAS_METRICS:
            for res in (224, 32):
                f = hw / f"{m}_{res}.json"
                f = f if f.exists() else hw / "energy" / f.name
                lut, dt = timed(lambda f=f: import_lut("hwnasbench", [f], allow_estimates=True))
                for r in (r for r in ref if r["resolution"] == res):
                    total += 1
                    ok += predict(lut, r["choices"]).total_ms == r["lut_sum"][m]
                rows.append((f.name, lut, dt, None))
    px = d / "proxylessnas_mobile" / "mobile_trim.yaml"
    tables = [("proxylessnas", px, "proxylessnas_mobile")] if px.exists() else []
    tables += [("ofa", f, "ofa_largest") for f in sorted((d / "ofa_note10").glob("*_lookup_table.yaml"))]
    keys = []
    for fmt, f, arch in tables:
        lut, dt = timed(lambda fmt=fmt, f=f: import_lut(fmt, [f]))
        rows.append((f"{fmt} {f.name}", lut, dt, arch))
        # The keys an export of a LUT of the same space writes, built from the ops alone (no source keys).
        built = synthetic_lut(space_of(lut))
        ours, src = set(yaml.safe_load(export_doc(fmt, built))), set(yaml.safe_load(f.read_text()))
        keys.append(f"  {fmt} {f.name}: {len(ours & src)} of {len(src)} source keys written back by an export "
                    f"of a built LUT; not: {', '.join(sorted(src - ours)) or 'none'}")
    print("| file | space | entries | complete | missing | named arch total | import ms |")
    print("|---|---|---|---|---|---|---|")
    for name, lut, dt, arch in rows:
        info = lut.header["imported"]
        tot = f"{arch}: {predict(lut, arch).total_ms:.2f} ms" if arch else ""
        print(f"| {name} | {lut.header['space']['id']} | {len(lut)} | {lut.header['complete']} | "
              f"{len(info['missing'])} | {tot} | {dt * 1e3:.1f} |")
    if total:
        print(f"\nHW-NAS-Bench reference totals reproduced exactly: {ok}/{total}")
    if keys:
        print("\n" + "\n".join(keys))
    print(f"slowest import: {max(r[2] for r in rows) * 1e3:.1f} ms (target <= 1000 ms)")
    print(f"\nreproduce: python benchmarks/public_luts.py --dir {d}")


if __name__ == "__main__":
    main()
