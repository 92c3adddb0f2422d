"""fbnet-lut ingest"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import click

from latency_lut.cli._common import default_store, echo_json, failed_note, failed_rows, store_option, table

MAX_RESULTS_BYTES = 256 << 20  # a console log of a whole space's bundle is a few MB


def _short(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


@click.command()
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--device", "-d", default=None,
              help="The iOS device (or offline Android phone) the bundle was built for.")
@click.option("--bundle", "bundle_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Bundle folder [default: found by the bundle id in the results, under profiles/bundles].")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="LUT file to write [default: profiles/DEVICE-litert-RESOLUTION.json].")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the LUT as CSV.")
@store_option
@click.option("--product-type", default=None, help="The phone's model identifier, e.g. iPhone10,3.")
@click.option("--ios-version", default=None, help="The phone's iOS version, e.g. 16.7.10.")
@click.option("--device-name", default=None, help="The phone's name.")
@click.option("--from-phone", is_flag=True,
              help="Run the bundle on an attached phone first (pymobiledevice3: copy, launch, read the log).")
@click.option("--udid", default=None, help="With --from-phone: which phone [default: the only one attached].")
@click.option("--dry-run", is_flag=True,
              help="Only parse RESULTS (any benchmark_model or iOS-app output, or a logcat dump) and print the timed "
                   "runs found; write nothing. Exit 2 when a file has none.")
@click.option("--json", "as_json", is_flag=True, help="Print the ingest summary as JSON.")
def ingest(results: tuple[Path, ...], device: str | None, bundle_path: Path | None, output: Path | None,
           csv_path: Path | None, store: Path | None, product_type: str | None, ios_version: str | None,
           device_name: str | None, from_phone: bool, udid: str | None, dry_run: bool, as_json: bool) -> None:
    """Read what the iOS benchmark app printed (or a JSON/CSV results file) into the store and the LUT.

    RESULTS are console logs of the app (Xcode console, syslog), JSON files or CSV files, in any mix ('-' reads
    stdin). Every model's output is named by the bundle, so logs may hold other output, be partial, or come in
    any order. Missing models are listed and the LUT stays marked incomplete until they arrive; a result that is
    already stored is not stored again. A log from another bundle, a cut-off line or numbers in the wrong units
    is an error, and nothing is stored from that call.

    \b
    Examples:
      fbnet-lut ingest --device iphonex --bundle profiles/bundles/iphonex-fbnet-224-1a2b3c4d5e6f console.log
      fbnet-lut ingest --device iphonex results.json --product-type iPhone10,3 --ios-version 16.7.10
      fbnet-lut ingest --device iphonex --bundle DIR --from-phone
      fbnet-lut ingest --device pixel --bundle DIR phone.log   # an offline Android bundle's log
      fbnet-lut ingest --dry-run --json phone.log              # what would be read, nothing written
    """
    if dry_run:
        return _dry_run(results, as_json)
    if device is None:
        raise click.UsageError("Missing option '--device' / '-d'.")
    from latency_lut.devices import get_device
    from latency_lut.errors import DeviceError
    from latency_lut.offline.ingest import ingest as run_ingest
    from latency_lut.offline.ingest import manifest_space, resolve_manifest, space_missing, write_lut
    from latency_lut.outputs import check_outputs
    from latency_lut.paths import default_lut_path
    from latency_lut.store import Store

    dev = get_device(device)
    if dev.kind == "android":  # logs of an offline bundle (fbnet-lut build --device ANDROID --bundle DIR)
        from latency_lut.cli._android_offline import ingest_logs

        return ingest_logs(dev, results, bundle_path, output, csv_path, store, as_json, _read)
    if dev.kind != "ios":
        raise DeviceError(f"device {dev.name!r} is a {dev.kind} device; 'ingest' reads iOS app results and offline "
                          f"Android logs ('fbnet-lut build --device {dev.name}' measures it directly)")
    sources = [_read(p) for p in results]
    if from_phone:
        if bundle_path is None:
            raise click.UsageError("--from-phone needs --bundle DIR (the bundle to run)")
        from latency_lut.backends.ios.automation import run_bundle_on_phone

        log = run_bundle_on_phone(bundle_path, dev, udid=udid, echo=None if as_json else
                                  (lambda s: click.echo(s, err=True)))
        sources.append(_read(log))
    if not sources:
        raise click.UsageError("give at least one RESULTS file (or --from-phone)")
    given = {"product_type": product_type, "ios_version": ios_version, "device_name": device_name, "udid": udid}
    manifest = resolve_manifest(sources, bundle_path)

    store = store or default_store()
    inputs = {f"RESULTS #{i + 1}": p for i, p in enumerate(results)}
    out = check_outputs({"-o": output or default_lut_path(dev.name, dev.runtime, manifest_space(manifest).id,
                                                          str(manifest.settings.get("dtype", "fp32"))),
                         "--csv": csv_path}, inputs=inputs, store=store)["-o"]
    with Store(store) as st:
        rep = run_ingest(sources, manifest, dev, st, device_info=given)
    write_lut(rep, out, csv_path)
    assert rep.lut is not None
    complete = rep.lut.header["complete"]
    summary = {
        "bundle": str(manifest.path), "bundle_id": manifest.bundle_id, "sources": rep.sources,
        "results": rep.parsed, "added": rep.added, "already_ingested": rep.duplicates, "replaced": rep.replaced,
        "unknown": rep.unknown, "failed": rep.failed, "flagged": rep.flagged, "missing": rep.missing,
        "lut": str(out), "lut_entries": len(rep.lut), "complete": complete, "device_info": rep.device_info,
        "calibration": rep.calibration, "export_failed": manifest.failed,
    }
    if as_json:
        echo_json(summary)
        return
    n = len(manifest.models)
    rows = [
        ["bundle", f"{manifest.path} ({manifest.bundle_id})"],
        ["results read", f"{rep.parsed} from {len(rep.sources)} source(s)"],
        ["added", len(rep.added)],
        ["already ingested", len(rep.duplicates)],
    ]
    if rep.replaced:
        rows.append(["re-measured", f"{len(rep.replaced)}: {_short(rep.replaced)}"])
    if rep.unknown:
        rows.append(["unknown (ignored)", f"{len(rep.unknown)}: {_short(rep.unknown)}"])
    if rep.failed:
        rows.append(["no result", f"{len(rep.failed)}: {_short(sorted(rep.failed))}"])
    if rep.flagged:
        rows.append(["flagged noisy", f"{len(rep.flagged)}: {_short(rep.flagged)}"])
    rows.append(["missing", f"{len(rep.missing)} of {n}" + (f": {_short(rep.missing)}" if rep.missing else "")])
    rows.append(["lut", f"{out} ({len(rep.lut)} entries, {'complete' if complete else 'INCOMPLETE'})"])
    rows.append(["calibration", rep.calibration])
    rows += failed_rows(manifest.failed, "not bundled")
    click.echo(table(rows, ["ingest", "value"], right=[False, False]))
    for key, why in list(rep.failed.items())[:5]:
        click.echo(f"no result for {key}: {why}", err=True)
    if rep.missing:
        click.echo(f"\n{len(rep.missing)} model(s) of the bundle still have no result; run them on the phone and "
                   "ingest their log (the LUT is marked incomplete until then).")
    elif not complete and not manifest.failed:
        click.echo(f"\nThis bundle is complete; {space_missing(rep)} op(s) of the space are in no ingested bundle "
                   "yet (it was built with --only).")
    if manifest.failed:
        click.echo(f"\n{failed_note(manifest.failed)}")


def _dry_run(results: tuple[Path, ...], as_json: bool) -> None:
    """Parse each file strictly and print its timed-run blocks; exit 2 if a file has none (saying why)."""
    from latency_lut.backends.tflite_benchmark import parse

    if not results:
        raise click.UsageError("give at least one RESULTS file to --dry-run")
    report, empty = [], []
    for p in results:
        src = _read(p)
        log = parse(src.text, src.name, strict=True)
        runs = []
        for r in log.timed_runs():
            s = r.summary()
            runs.append({"model": s["model"], "count": s["count"], "avg_us": s["avg_us"], "std_us": s["std_us"],
                         "min_us": s["min_us"], "max_us": s["max_us"], "median_us": s["median_us"],
                         "line": s["stats_line"], "text": s["stats_text"], "run_line": r.line,
                         "warmup_count": s["warmup_count"], "format": s["format"], "notes": s["notes"]})
        entry = {"file": src.name, "timed_runs": runs, "no_timed_runs": None if runs else log.why_no_timed_runs(),
                 "rejected": [{"line": x.line, "text": x.text, "why": x.why} for x in log.rejected]}
        report.append(entry)
        if not runs:
            empty.append(f"{src.name}: {entry['no_timed_runs']}")
    if as_json:
        echo_json(report)
    else:
        for e in report:
            click.echo(f"{e['file']}: {len(e['timed_runs'])} timed-run block(s)"
                       + (f", {len(e['rejected'])} line(s) rejected" if e["rejected"] else "")
                       + (f" -- {e['no_timed_runs']}" if e["no_timed_runs"] else ""))
            if e["timed_runs"]:
                rows = [[_tail(r["model"] or "-"), r["count"], *(_us(r[k]) for k in
                         ("avg_us", "std_us", "min_us", "max_us", "median_us")), r["line"]] for r in e["timed_runs"]]
                click.echo(table(rows, ["model", "count", "avg us", "std us", "min us", "max us", "median us",
                                        "line"], right=[False] + [True] * 7))
            for x in e["rejected"][:5]:
                click.echo(f"  rejected line {x['line']}: {x['why']}")
    if empty:
        raise click.ClickException(f"no timed runs in {'; '.join(empty)}")


def _us(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _tail(path: str, n: int = 40) -> str:
    return path if len(path) <= n else "..." + path[-(n - 3):]


def _read(path: Path):  # -> latency_lut.offline.ingest.Source
    from latency_lut.backends.ios.errors import ResultsFormatError
    from latency_lut.offline.ingest import Source

    if str(path) == "-":
        return Source("<stdin>", sys.stdin.read(MAX_RESULTS_BYTES))
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a pipe blocks, /dev/zero never ends
            raise ResultsFormatError(f"results file {path} is not a regular file (a folder, pipe or device); give "
                                     "the saved console log or results file")
        if st.st_size > MAX_RESULTS_BYTES:
            raise ResultsFormatError(f"results file {path} is {st.st_size} bytes, over the {MAX_RESULTS_BYTES} byte "
                                     "limit; is it the right file?")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ResultsFormatError(f"results file {path} does not exist") from None
    except OSError as e:
        raise ResultsFormatError(f"cannot read results file {path}: {e.strerror}") from None
    return Source(str(path), data.decode("utf-8", errors="replace"))
