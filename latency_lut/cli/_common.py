"""Helpers shared by the CLI commands: tables, progress bars, JSON output, common options."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from latency_lut.devices import MAX_THREADS
from latency_lut.paths import DEFAULT_PROFILES, default_lut_path, default_store  # noqa: F401 - the CLI's defaults

store_option = click.option(
    "--store", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="SQLite file holding every raw sample [default: $FBNET_LUT_STORE or profiles/store.sqlite].",
)
space_option = click.option(
    "--space", default=None, metavar="NAME|FILE.yaml",
    help="Search space: a built-in name (fbnet, proxylessnas, ofa_mbv3, mobilenetv3) or a space .yaml file.",
)


def lut_space(lut, space: str | None):  # noqa: ANN001 - a lut.LUT
    """The space to use with a LUT: its own embedded one, or --space, which must agree with it."""
    from latency_lut.predict import resolve_space

    return resolve_space(lut, space)




class FiniteFloat(click.FloatRange):
    """A float option in a range that also refuses nan and inf (a plain FloatRange lets nan through)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return v


# Bounds of the numeric options, defined once for every command.
THREADS = click.IntRange(1, MAX_THREADS)
JOBS = click.IntRange(1, 64)
RESOLUTION = click.IntRange(32, 1024)
WIDTH = FiniteFloat(0, 4, min_open=True)
SECONDS = FiniteFloat(0, 3600)
COUNT = click.IntRange(0, 100_000)


def dtype_option(default: str | None, help: str):  # noqa: A002 - click's name  # -> a click decorator
    from latency_lut.blocks.base import DTYPES

    return click.option("--dtype", type=click.Choice(DTYPES), default=default, show_default=default is not None,
                        help=help)


json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")

weights_option = click.option(
    "--weights", type=click.Choice(["hot", "cold"]), default="hot", show_default=True,
    help="How whole models are timed: hot, called back to back (as benchmark_model runs them); or cold, rotating "
         "over copies of the model (64 MiB in all), so that none of its memory is in cache when an inference "
         "starts, as in an app that does other work between frames, or on a phone, whose cache holds no mobile "
         "CNN. A model whose weights fit in this host's cache runs up to 10-20% faster hot. Local ONNX Runtime and "
         "LiteRT only; cold rounds are stored under the model's key with a -cold suffix.")


def check_weights(weights: str, device: Any, runtime: str | None) -> None:
    """--weights cold needs a backend that can time a model over copies of itself (local runtimes); checked
    before anything is exported or measured."""
    if weights != "cold":
        return
    from latency_lut.backends import backend_class, check_runtime

    if device.kind != "local":
        name = f"device {device.name!r} ({device.kind})"
    elif not backend_class(device.kind, rt := check_runtime(device, runtime)).cold_models:
        name = f"runtime {rt!r}"
    else:
        return
    raise click.UsageError(f"--weights cold times a model over copies of itself on the local CPU; {name} cannot "
                           "(use a local device with onnxruntime or litert, or drop --weights)")


def fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1e4 else f"{v:.4g}"
    return str(v)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], right: Sequence[bool] | None = None) -> str:
    """A plain-text table; numeric columns right-aligned."""
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    if right is None:
        right = [bool(rows) and all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in rows)
                 for i in range(len(headers))]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(vals, widths, right)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells]
    return "\n".join(out)


def failed_rows(failed: Mapping[str, str], label: str = "failed") -> list[list[str]]:
    """One table row per block that failed to export or quantize, naming it with the converter's reason."""
    return [[f"{label} {key}", why] for key, why in failed.items()]


def failed_note(failed: Mapping[str, str]) -> str:
    """What a bundle's failed blocks mean for its LUT, and what to do about them."""
    return (f"{len(failed)} block(s) failed to export or quantize and are not in the bundle; the LUT stays "
            "incomplete without them. Once the cause is fixed, 'fbnet-lut build ... --only KEY' bundles just them.")


def echo_json(obj: Any) -> None:
    """Strict JSON (RFC 8259): a NaN or Infinity is a bug to report, never a bare token a parser rejects."""
    try:
        text = json.dumps(obj, indent=2, default=str, allow_nan=False)
    except ValueError as e:
        raise click.ClickException(f"the result holds a non-finite number ({e}); nothing printed. Check the LUT for "
                                   "implausible entries with 'fbnet-lut show'") from None
    click.echo(text)


class ClickProgress:
    """A build's progress as click progress bars on stderr (silent when ``quiet``)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._bar: Any = None

    def start(self, phase: str, total: int) -> None:
        if self.quiet:
            return
        self._bar = click.progressbar(
            length=total, label=f"{phase:<18}", file=sys.stderr, show_pos=True, show_eta=True,
            item_show_func=lambda k: k[:48] if k else None,
        )
        self._bar.__enter__()

    def advance(self, key: str) -> None:
        if self._bar is not None:
            self._bar.update(1, key)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def parse_shape(text: str, param: str = "--input-shape") -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a shape such as 1,3,224,224", param_hint=param) from None
    if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
        raise click.BadParameter(f"{text!r}: give N,C,H,W with N = 1", param_hint=param)
    if max(shape) > 16384 or shape[1] * shape[2] * shape[3] > 1 << 26:
        raise click.BadParameter(f"{text!r} is larger than any mobile model's input (at most 16384 per dimension "
                                 "and 2^26 values)", param_hint=param)
    return shape
