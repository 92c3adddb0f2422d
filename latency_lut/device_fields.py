"""Checks of descriptor fields that several device kinds share: CPU masks, the thermal guard, bounded numbers, and
``$VARS`` in host paths. ``bad(field, why)`` makes the kind's DeviceError naming the descriptor and the field."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from latency_lut.errors import DeviceError

Bad = Callable[[str, str], DeviceError]


def expand(value: Any) -> str | None:
    """``~`` and ``$VARS`` expanded, so one descriptor serves several machines (``address: ${PHONE}:5555``)."""
    if value in (None, ""):
        return None
    return os.path.expanduser(os.path.expandvars(str(value)))


def cpu_mask(mask: Any, bad: Bad) -> str:
    """A taskset-style hex CPU mask, lower case without ``0x``."""
    if isinstance(mask, int) and not isinstance(mask, bool):
        raise bad("cpu_mask", f"must be a quoted hex string such as \"f0\" (YAML read {mask} as a number)")
    text = str(mask).lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]+", text) or int(text, 16) == 0:
        raise bad("cpu_mask", f"must be a non-zero hex CPU mask such as \"f0\" (CPUs 4-7), got {mask!r}")
    return text


def thermal(opts: dict[str, Any], bad: Bad, example: str) -> tuple[tuple[int | str, ...], float | None]:
    """``thermal_zones`` and ``cooldown_celsius``; ``example`` is a zone pattern of the kind's devices."""
    zones = tuple(opts.get("thermal_zones") or ())
    for z in zones:
        if isinstance(z, bool) or not isinstance(z, (int, str)):
            raise bad("thermal_zones", f"lists zone numbers or type patterns, got {z!r}")
    cool = opts.get("cooldown_celsius")
    if cool is not None and not 20 <= float(cool) <= 110:
        raise bad("cooldown_celsius", f"must be between 20 and 110 degrees C, got {cool}")
    if cool is not None and not zones:
        raise bad("cooldown_celsius", f"needs thermal_zones to read (e.g. [\"{example}\"])")
    return zones, float(cool) if cool is not None else None


def numbers(opts: dict[str, Any], bad: Bad, fields: Iterable[tuple[str, float, float]]) -> dict[str, float]:
    """Each ``(field, default, lowest allowed)`` as a float."""
    out = {}
    for key, default, lo in fields:
        value = float(opts.get(key, default))
        if value < lo:
            raise bad(key, f"must be >= {lo}")
        out[key] = value
    return out
