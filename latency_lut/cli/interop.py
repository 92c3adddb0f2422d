"""fbnet-lut import, fbnet-lut export"""

from __future__ import annotations

from pathlib import Path

import click

from latency_lut.cli._common import echo_json, json_option, table
from latency_lut.outputs import check_outputs

_FILE = click.Path(dir_okay=False, path_type=Path)


FORMATS = ("hwnasbench", "proxylessnas", "ofa")


@click.command("import")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(FORMATS))
@click.argument("files", metavar="FILE...", nargs=-1, required=True, type=_FILE)
@click.option("-o", "--output", required=True, type=_FILE, help="The LUT file to write.")
@click.option("--metric", default=None,
              help="hwnasbench: the table to take from a file holding several (pixel3_latency, raspi4_latency, "
                   "edgegpu_latency, eyeriss_latency, fpga_latency, *_energy).")
@click.option("--resolution", type=click.IntRange(1), default=None,
              help="The input resolution the table must be for (an error if it is another) [default: the file's].")
@click.option("--allow-estimates", is_flag=True,
              help="Also import simulator or model estimates (HW-NAS-Bench's eyeriss and fpga); the LUT is marked "
                   "as an estimate.")
@json_option
def import_cmd(fmt: str, files: tuple[Path, ...], output: Path, metric: str | None, resolution: int | None,
               allow_estimates: bool, as_json: bool) -> None:
    """Import a public latency table as a LUT of this tool's search space: hwnasbench (HW-NAS-Bench's FBNet
    tables -> fbnet at 224, fbnet_cifar100 at 32), proxylessnas (the mobile YAML -> proxylessnas), ofa (a Note10
    YAML, one per resolution -> ofa_mbv3 at width 1.2).

    The LUT works like a measured one (predict, DNAS, compare). Its header's 'imported' block names the source,
    its license, the device and unit as the source gives them and the statistics it has; it has no raw samples
    and says so. Ops of the space that the source lacks are listed there and the LUT is marked incomplete.

    \b
    Examples:
      fbnet-lut import hwnasbench pixel3_latency_224.json -o profiles/pixel3-224.json
      fbnet-lut import hwnasbench fpga_latency_32.json --allow-estimates -o fpga-32.json
      fbnet-lut import proxylessnas mobile_trim.yaml -o profiles/pixel1-proxylessnas-224.json
      fbnet-lut import ofa 160_lookup_table.yaml --resolution 160 -o profiles/note10-ofa-160.json
    """
    from latency_lut.interop import SourceFormatError, import_lut

    for f in files:
        if f.resolve() == output.resolve():
            raise SourceFormatError(f"output {output} is one of the input files; choose another -o path")
    check_outputs({"-o": output}, inputs={f"FILE {i + 1}": f for i, f in enumerate(files)})
    options: dict[str, object] = {"resolution": resolution}
    if fmt == "hwnasbench":
        options.update(metric=metric, allow_estimates=allow_estimates)
    elif metric:
        raise click.UsageError("--metric applies to hwnasbench only")
    lut = import_lut(fmt, files, **options)
    lut.save(output)
    info = lut.header["imported"]
    if as_json:
        echo_json({"output": str(output), "entries": len(lut), "complete": lut.header["complete"],
                   "space": lut.header["space"]["id"], "imported": info})
        return
    rows = [
        ["source", info["source"]],
        ["license", info["license"]],
        ["device", f"{lut.header['device']} ({info['device']})" + ("  ESTIMATE, not measured" if info["estimate"]
                                                                   else "")],
        ["space", lut.header["space"]["id"]],
        ["entries", f"{len(lut)} ({'complete' if lut.header['complete'] else 'INCOMPLETE'}), unit {info['unit']}"],
        ["statistics", ", ".join(info["statistics"]) + "; no raw samples"],
    ]
    if info["missing"]:
        rows.append(["missing", ", ".join(info["missing"])])
    if info["skipped"]:
        rows.append(["skipped", ", ".join(info["skipped"]) + " (not an op of the space)"])
    click.echo(table(rows, ["imported", str(output)], right=[False, False]))


@click.command("export")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(FORMATS))
@click.argument("lut_path", metavar="LUT", type=_FILE)
@click.option("-o", "--output", required=True, type=_FILE, help="The file to write in FORMAT.")
def export_cmd(fmt: str, lut_path: Path, output: Path) -> None:
    """Write a LUT in a public format, so that project's own search code can use these measurements.

    \b
    hwnasbench: the per-metric JSON of HW-NAS-Bench's FBNet part (key -> median), for the LUT's fbnet space at 224
    or its fbnet_cifar100 layout at 32.
    proxylessnas, ofa: their YAML tables (key -> count, mean, var or std), for LUTs of proxylessnas / ofa_mbv3.

    \b
    Example:
      fbnet-lut export hwnasbench profiles/local-onnxruntime-224.json -o local_latency_224.json
    """
    from latency_lut.interop import export_lut
    from latency_lut.lut import load

    check_outputs({"-o": output}, inputs={"LUT": lut_path})
    lut = load(lut_path)
    export_lut(fmt, lut, output)
    click.echo(f"wrote {output} ({fmt}) from {lut_path}")
