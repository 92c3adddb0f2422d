"""The thermal guard: read the phone's thermal zones, wait while they are too hot, record the temperature.

Zones are chosen in the descriptor by number (``3`` = thermal_zone3) or by their ``type`` with shell-style
wildcards (``cpu*``, ``mtktscpu``), because zone numbers move between kernels while types stay put.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from latency_lut.errors import DeviceError

# One round trip for every zone: path, type and raw temperature, tab-separated.
READ_ZONES = (
    'for z in /sys/class/thermal/thermal_zone*; do '
    'printf "%s\\t%s\\t%s\\n" "${z##*/}" "$(cat "$z/type" 2>/dev/null)" "$(cat "$z/temp" 2>/dev/null)"; done'
)


@dataclass(frozen=True)
class Zone:
    name: str  # thermal_zoneN
    type: str
    celsius: float


def parse_zones(text: str) -> list[Zone]:
    """Zones from :data:`READ_ZONES` output; unreadable or absurd readings are left out."""
    zones = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or not parts[0].startswith("thermal_zone"):
            continue
        try:
            raw = float(parts[2])
        except ValueError:
            continue
        # The kernel reports millidegrees; a few drivers report whole degrees.
        celsius = raw / 1000.0 if abs(raw) >= 200 else raw
        if -40.0 <= celsius <= 150.0:
            zones.append(Zone(parts[0], parts[1].strip(), celsius))
    return zones


def select_zones(zones: Sequence[Zone], patterns: Sequence[int | str]) -> list[Zone]:
    chosen = []
    for z in zones:
        for p in patterns:
            if (isinstance(p, int) and z.name == f"thermal_zone{p}") or (
                    isinstance(p, str) and (fnmatch.fnmatchcase(z.type, p) or z.name == p)):
                chosen.append(z)
                break
    return chosen


@dataclass
class ThermalReading:
    celsius: float
    zones: dict[str, float]
    waited_seconds: float = 0.0


class ThermalGuard:
    """Before each op: read the chosen zones and wait (polling) while the hottest is above the threshold."""

    def __init__(self, read: Callable[[], str], patterns: Sequence[int | str], threshold_c: float | None,
                 *, poll_seconds: float = 5.0, timeout_seconds: float = 600.0, source: str = "the descriptor",
                 what: str = "the phone", sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.read_text = read
        self.patterns = list(patterns)
        self.threshold_c = threshold_c
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.source = source
        self.what = what  # the device, as messages name it
        self.sleep = sleep
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self.patterns)

    def read(self) -> ThermalReading:
        zones = parse_zones(self.read_text())
        chosen = select_zones(zones, self.patterns)
        if not chosen:
            have = ", ".join(sorted({z.type or z.name for z in zones})) or "none readable"
            raise DeviceError(
                f"thermal_zones {self.patterns} in {self.source} match none of {self.what}'s zones ({have}); "
                "list zone numbers or type patterns that exist")
        return ThermalReading(max(z.celsius for z in chosen), {f"{z.name}:{z.type}": z.celsius for z in chosen})

    def wait_until_cool(self) -> ThermalReading:
        start = self.clock()
        reading = self.read()
        while self.threshold_c is not None and reading.celsius > self.threshold_c:
            waited = self.clock() - start
            if waited >= self.timeout_seconds:
                raise DeviceError(
                    f"{self.what} stayed above {self.threshold_c:g} C ({reading.celsius:.1f} C) for "
                    f"{waited:.0f} s; let it cool (off the charger, out of the sun, a fan) or raise cooldown_celsius "
                    f"in {self.source}")
            self.sleep(self.poll_seconds)
            reading = self.read()
        reading.waited_seconds = round(self.clock() - start, 3)
        return reading
