"""The ``fbnet-lut`` command line.

Every command lives in its own module and is registered here. User mistakes (:class:`LatencyLutError` and click's
usage errors) are printed as one line on stderr with exit status 2, never as a traceback.
"""

from __future__ import annotations

import sys

import click

from latency_lut import __version__
from latency_lut.cli.build import build
from latency_lut.cli.compare import compare
from latency_lut.cli.info import devices, show
from latency_lut.cli.ingest import ingest
from latency_lut.cli.interop import export_cmd, import_cmd
from latency_lut.cli.measure import measure
from latency_lut.cli.predict import predict
from latency_lut.cli.search import search
from latency_lut.cli.validate import validate
from latency_lut.errors import LatencyLutError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fbnet-lut")
def cli() -> None:
    """Measure operator latency on real hardware and turn it into latency lookup tables (LUTs) for
    hardware-aware neural architecture search.

    \b
    Typical session:
      fbnet-lut devices                      # what can be measured
      fbnet-lut build --device local         # LUT of the FBNet space on this CPU
      fbnet-lut show profiles/local-onnxruntime-224.json
      fbnet-lut predict --lut profiles/local-onnxruntime-224.json -a fbnet_a
    """


for _cmd in (build, devices, show, predict, measure, ingest, validate, import_cmd, export_cmd, compare,
             search):
    cli.add_command(_cmd)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="fbnet-lut", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Interrupted. Measurements taken so far are in the store; rerun the same command to resume.",
                   err=True)
        return 130
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "fbnet-lut"
        click.echo(f"Error: {e.format_message()} (see '{cmd} --help')", err=True)
        return 2
    except click.ClickException as e:
        click.echo(f"Error: {e.format_message()}", err=True)
        return 2
    except LatencyLutError as e:
        click.echo(f"Error: {e}", err=True)
        return 2
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
