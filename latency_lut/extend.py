"""Measure ops a LUT lacks on the LUT's own device and configuration, and add them to the store and the LUT.

The device, runtime, threads and protocol come from the LUT header; the measurement is only taken when this
machine reproduces the LUT's configuration exactly (same settings hash: runtime version, threads, dtype, exporter,
protocol; and for a local device the same CPU), so the new entries are comparable with the old ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from latency_lut.backends import create_backend
from latency_lut.build import build_lut, config_for
from latency_lut.devices import get_device
from latency_lut.errors import DeviceError, LUTFormatError
from latency_lut.lut import LUT
from latency_lut.measure import Protocol
from latency_lut.ops import OpSpec
from latency_lut.paths import default_store
from latency_lut.predict import space_of
from latency_lut.store import Store


def measure_into(lut: LUT, specs: Sequence[OpSpec], store: str | Path | None = None) -> list[str]:
    """Measure ``specs`` on the LUT's device; add them to the store and to ``lut`` in memory. Returns the keys."""
    h = lut.header
    if isinstance(h.get("imported"), dict):
        raise DeviceError(
            f"{lut.name} was imported from {h['imported'].get('format')} ({h['device']}); there is no device to "
            f"measure its {len(specs)} missing op(s) on: {', '.join(s.key for s in specs[:4])}"
            f"{' ...' if len(specs) > 4 else ''}"
        )
    device = get_device(h["device"])
    backend = create_backend(device, h["runtime"], h.get("dtype", "fp32"), threads=int(h["threads"]))
    try:
        protocol = Protocol.from_dict(h["protocol"])
        config = config_for(device, backend, protocol, h.get("dtype", "fp32"))
        _check_same_config(lut, config, backend)
        with Store(Path(store) if store else default_store()) as st:
            res = build_lut(space_of(lut), device, backend, st, protocol, specs=list(specs))
    finally:
        backend.close()
    for key, entry in res.lut.entries.items():
        lut.entries[key] = entry
    return list(res.lut.entries)


def measurer(store: str | Path | None = None) -> Callable[[LUT, Sequence[OpSpec]], list[str]]:
    """The ``measure`` callback of ``predict_module``/``predict_onnx``: missing ops measured into ``store``."""
    return lambda lut, specs: measure_into(lut, specs, store)


def _check_same_config(lut: LUT, config, backend) -> None:  # noqa: ANN001 - store.Config, backends.Backend
    h = lut.header
    want = h.get("settings_hash")
    if want and want != config.hash:
        old = {**(h.get("settings") or {}), "protocol": h.get("protocol"), "exporter": h.get("exporter")}
        diff = [k for k in sorted(set(old) | set(config.settings)) if old.get(k) != config.settings.get(k)]
        detail = ", ".join(f"{k}: {old.get(k)!r} in the LUT vs {config.settings.get(k)!r} here" for k in diff[:3])
        raise LUTFormatError(
            f"cannot add measurements to {lut.name}: this machine's configuration differs ({detail or 'settings'}); "
            "rebuild the LUT here with 'fbnet-lut build' or measure on the original setup"
        )
    info = h.get("device_info") or {}
    if h.get("device_kind", "local") == "local" and info.get("cpu_model"):
        here = backend.device_info()
        if here.get("cpu_model") != info.get("cpu_model"):
            raise LUTFormatError(
                f"cannot add measurements to {lut.name}: it was measured on {info.get('cpu_model')!r}, this machine "
                f"is {here.get('cpu_model')!r}; measure missing ops on the machine that built the LUT"
            )
