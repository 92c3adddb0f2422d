"""fbnet-lut devices, fbnet-lut show"""

from __future__ import annotations

from pathlib import Path

import click

from latency_lut.cli._common import echo_json, json_option, table


@click.command()
@json_option
def devices(as_json: bool) -> None:
    """List the device descriptors this tool knows.

    Built-in descriptors ship with the package; folders in $FBNET_LUT_DEVICES (separated by ':') add to or
    shadow them. Any command taking --device also accepts a path to a descriptor file.
    """
    from latency_lut.devices import list_devices

    devs = list_devices()
    if as_json:
        echo_json([{**d.to_dict(), "source": d.source} for d in devs])
        return
    rows = [[d.name, d.kind, d.runtime, ",".join(d.runtimes), d.threads, d.description] for d in devs]
    click.echo(table(rows, ["name", "kind", "runtime", "runtimes", "threads", "description"]))


@click.command()
@click.argument("lut_path", metavar="LUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sort", "sort_by", type=click.Choice(["key", "median", "noise", "flops"]), default="key",
              show_default=True, help="Order of the entry table.")
@click.option("--top", type=click.IntRange(1), default=None, help="Show only the first N entries.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the entries as CSV.")
@json_option
def show(lut_path: Path, sort_by: str, top: int | None, csv_path: Path | None, as_json: bool) -> None:
    """Summarize a LUT file: its header and a table of its entries (ms)."""
    from latency_lut.calibration import describe
    from latency_lut.lut import load
    from latency_lut.outputs import check_outputs

    check_outputs({"--csv": csv_path}, inputs={"LUT": lut_path})
    lut = load(lut_path)
    if csv_path:
        lut.to_csv(csv_path)
    df = lut.to_dataframe()
    if sort_by != "key":
        df = df.sort_values(sort_by, ascending=False)
    if top:
        df = df.head(top)
    h_cal, cal_line = lut.header.get("calibration"), describe(lut.header, str(lut_path))
    if as_json:
        echo_json({"header": lut.header, "calibrated": h_cal is not None, "calibration_status": cal_line,
                   "entries": df.to_dict(orient="records")})
        return
    h = lut.header
    info = h.get("device_info", {})
    rows = [
        ["device", f"{h['device']} ({info.get('cpu_model') or info.get('model') or info.get('name') or ''})"],
        ["runtime", f"{h['runtime']} {h['runtime_version']}, {h['threads']} thread(s), {h['dtype']}"],
        ["space", h["space"].get("id", h["space"])],
        ["entries", f"{len(lut)} ({'complete' if h['complete'] else 'INCOMPLETE'}), "
                    f"{int(df['flagged'].sum())} flagged noisy"],
        ["sum of medians", f"{lut.to_dataframe()['median'].sum():.3f} ms"],
        ["protocol", ", ".join(f"{k}={v}" for k, v in h["protocol"].items())],
        ["rounds", _rounds_line(h)],
        ["drift guard", _drift_line(h)],
        ["calibration", cal_line],
        ["created", f"{h['created']} by fbnet-lut {h['tool_version']}"],
    ]
    imp = h.get("imported")
    if isinstance(imp, dict):  # a public table (fbnet-lut import): where it came from, and what it lacks
        rows.insert(1, ["imported", f"{imp.get('format')}: {imp.get('source')}; license {imp.get('license')}; "
                                    f"{'ESTIMATE, ' if imp.get('estimate') else ''}no raw samples"])
        if imp.get("missing"):
            rows.insert(5, ["missing", ", ".join(imp["missing"])])
    click.echo(table(rows, ["LUT", str(lut_path)], right=[False, False]))
    click.echo()
    body = [[r["key"], r["median"], r["p10"], r["p90"], r["noise"], int(r["count"]), int(r["flops"]),
             bool(r["flagged"])] for r in df.to_dict(orient="records")]
    click.echo(table(body, ["key", "median ms", "p10 ms", "p90 ms", "noise", "runs", "MACs", "flagged"]))


def _rounds_line(h: dict) -> str:
    rel = h.get("reliability")
    r = h.get("rounds", 1)
    if not rel:
        return f"{r} (no split-half reliability: it needs 2 rounds or more)"
    tau = rel.get("kendall_tau")
    tau_s = f"{tau:.3f}" if isinstance(tau, (int, float)) else "none (every sampled total of a half is equal)"
    return (f"{r} interleaved; split-half reliability (even vs odd rounds, {rel['archs']} sampled archs): Kendall "
            f"tau {tau_s}, RMS difference {100 * rel['rms_diff']:.2f}%")


def _drift_line(h: dict) -> str:
    d = h.get("drift_guard")
    if not d:
        return "off"
    return f"{d['checks']} checks, {d['drifts']} drifted, {d['remeasured']} measurement(s) re-taken"
