"""Helpers shared by the CLI commands: tables, progress bars, JSON output, common options."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

DEFAULT_PROFILES = Path("profiles")


def default_store() -> Path:
    """$FBNET_LUT_STORE, else profiles/store.sqlite beside the LUT files."""
    return Path(os.environ.get("FBNET_LUT_STORE") or DEFAULT_PROFILES / "store.sqlite")


store_option = click.option(
    "--store", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="SQLite file holding every raw sample [default: $FBNET_LUT_STORE or profiles/store.sqlite].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of tables.")


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


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


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
    return shape
