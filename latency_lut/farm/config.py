"""The farm file: which Ray cluster, and which devices hang off which of its hosts.

```yaml
ray: local               # "local" starts a Ray head on this machine; HOST:PORT joins a running cluster
devices:
  - descriptor: pixel    # a device name or a descriptor path; the fields below override the descriptor's
    serial: ABC123
    host: lab-node-1     # the Ray node the phone hangs off (its custom resource "host:lab-node-1"); default: any
  - descriptor: local
```

Everything that can be checked without measuring is checked here, so a typo fails before any device is touched:
unknown fields, unknown descriptors, bad overrides (the descriptor's own checks), the same phone listed twice.
Whether the cluster is reachable and provides each host is checked by the runner right after connecting.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latency_lut.devices import Device, get_device, parse_descriptor
from latency_lut.errors import LatencyLutError
from latency_lut.safe_yaml import load_yaml

LOCAL = "local"
FARM_FIELDS = ("ray", "devices")
# Besides these, an entry's fields override its descriptor's; fields under "overrides" do too, which is how an SSH
# board's own field "host" (its address) is set, since an entry's "host" is the Ray node.
ENTRY_FIELDS = ("descriptor", "host", "overrides")
# The custom resource through which a device's actor is placed on its host: a worker joins the cluster with
# `ray start --address HEAD:PORT --resources '{"host:NAME": 1}'`.
HOST_RESOURCE = "host:{}"
_ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})$")


class FarmError(LatencyLutError):
    """A farm file that cannot be used, a cluster that cannot be reached, or a farm that lost its devices."""


@dataclass(frozen=True)
class FarmDevice:
    """One device of the farm: its descriptor (overrides applied), the host it hangs off, and a unique label."""

    device: Device
    host: str | None
    label: str
    index: int

    @property
    def resource(self) -> str | None:
        return HOST_RESOURCE.format(self.host) if self.host else None


@dataclass(frozen=True)
class Farm:
    ray: str  # "local" or HOST:PORT
    devices: tuple[FarmDevice, ...]
    source: str


def load_farm(path: str | Path) -> Farm:
    return parse_farm(load_yaml(path, what="farm file", error=FarmError), str(path))


def parse_farm(doc: Any, source: str = "<farm>") -> Farm:
    if not isinstance(doc, dict):
        raise FarmError(f"farm file {source} is not a YAML mapping with 'ray' and 'devices'")
    for key in doc:
        if key not in FARM_FIELDS:
            raise FarmError(f"farm file {source}: unknown field {key!r}{_hint(key, FARM_FIELDS)}")
    ray = doc.get("ray", LOCAL)
    if not isinstance(ray, str) or not (ray == LOCAL or _ADDRESS.match(ray) and 0 < int(ray.rsplit(":", 1)[1])
                                        < 65536):
        raise FarmError(f"farm file {source}: field 'ray' must be 'local' or HOST:PORT of a running Ray head "
                        f"(as printed by 'ray start --head'), got {ray!r}")
    entries = doc.get("devices")
    if not isinstance(entries, list) or not entries:
        raise FarmError(f"farm file {source}: field 'devices' must be a non-empty list of devices")
    devices = [_device(e, i, source) for i, e in enumerate(entries)]
    _check_unique(devices, source)
    return Farm(ray, tuple(devices), source)


def _device(entry: Any, i: int, source: str) -> FarmDevice:
    where = f"farm file {source}: devices[{i}]"
    if isinstance(entry, str):
        entry = {"descriptor": entry}
    if not isinstance(entry, dict) or not entry.get("descriptor"):
        raise FarmError(f"{where} needs a 'descriptor' (a device name or a descriptor .yaml path)")
    try:
        base = get_device(str(entry["descriptor"]))
    except LatencyLutError as e:
        raise FarmError(f"{where}: {e}") from None
    host = entry.get("host")
    if host is not None and (not isinstance(host, str) or not host.strip()):
        raise FarmError(f"{where}: field 'host' must be the name of a Ray node's host resource, got {host!r}")
    nested = entry.get("overrides") or {}
    if not isinstance(nested, dict):
        raise FarmError(f"{where}: field 'overrides' must be a mapping of descriptor fields")
    overrides = {**{k: v for k, v in entry.items() if k not in ENTRY_FIELDS}, **nested}
    if base.kind == "ios":
        raise FarmError(f"{where}: iOS devices run their bundle in the app, not under a farm; use "
                        f"'fbnet-lut build --device {base.name}' and 'fbnet-lut ingest'")
    try:
        device = parse_descriptor({**base.to_dict(), **overrides}, f"{base.source} (with the overrides of {where})")
    except LatencyLutError as e:
        raise FarmError(str(e)) from None
    unit = _unit(device)
    label = unit[1] if unit else f"{device.name}@{host}" if host else f"{device.name}-{i}"
    return FarmDevice(device, host.strip() if host else None, label, i)


def _check_unique(devices: list[FarmDevice], source: str) -> None:
    """The same phone twice would run two benchmarks at once on it and count it as two phones."""
    seen: dict[tuple[str, str], int] = {}
    for d in devices:
        unit = _unit(d.device)
        if unit is None:
            continue
        if unit in seen:
            raise FarmError(f"farm file {source}: devices[{d.index}]: duplicate {unit[0]} {unit[1]!r} (also "
                            f"devices[{seen[unit]}]); each phone may be listed once")
        seen[unit] = d.index
    labels: dict[str, int] = {}
    for d in devices:
        if d.label in labels:
            raise FarmError(f"farm file {source}: devices[{d.index}] and devices[{labels[d.label]}] are both "
                            f"{d.label!r}; give them different hosts or serials")
        labels[d.label] = d.index


def _unit(device: Device) -> tuple[str, str] | None:
    """What names one phone: its USB serial, its address over TCP, a board's SSH host (None for a host's CPU)."""
    if device.kind == "ssh":
        field = "host"
    elif device.kind == "android":
        field = "serial" if device.options.get("transport") == "usb" else "address"
    else:
        return None
    value = device.options.get(field)
    return (field, str(value)) if value not in (None, "") else None


def _hint(key: Any, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
