"""The TFLite iOS benchmark app as a measurement configuration.

Nothing is measured from Python: the app measures on the phone. This class gives the build machinery what it
needs from a backend (runtime, settings, fingerprint, device info) so that ingested results land in the store
under one configuration, exactly as a local build's would, and LUT headers are written the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latency_lut.backends.base import Backend
from latency_lut.devices import Device
from latency_lut.errors import DeviceError
from latency_lut.measure import Protocol, RunResult
from latency_lut.ops import OpSpec

# benchmark_model flags per delegate (string values, as the app's benchmark_params.json holds them).
DELEGATE_FLAGS: dict[str, dict[str, str]] = {
    "xnnpack": {"use_xnnpack": "true"},
    "cpu": {"use_xnnpack": "false"},
    "coreml": {"use_coreml": "true", "use_xnnpack": "false"},
    "gpu": {"use_gpu": "true", "use_xnnpack": "false"},
}

# Defaults of the optional descriptor fields; the protocol fields mirror measure.Protocol's.
DEFAULTS: dict[str, Any] = {"delegate": "xnnpack", "warmup_min_seconds": 0.5, "run_delay": -1,
                            "documents_dir": "fbnet-lut", "timeout_seconds": 3600}


class IOSApp(Backend):
    runtime = "litert"
    artifact_format = "tflite"

    def __init__(self, device: Device, threads: int | None = None) -> None:
        if device.kind != "ios":
            raise DeviceError(f"device {device.name!r} is a {device.kind} device, not an ios one")
        super().__init__(threads or device.threads)
        self.device = device
        self.delegate = str(self.option("delegate")).lower()
        if self.delegate not in DELEGATE_FLAGS:
            raise DeviceError(f"device descriptor {device.source}: delegate {self.delegate!r} is not one of "
                              f"{', '.join(DELEGATE_FLAGS)}")

    def option(self, name: str) -> Any:
        value = self.device.options.get(name)
        return DEFAULTS.get(name) if value is None else value

    def runtime_version(self) -> str:
        # The TFLite version linked into the app; the phone cannot be asked, so the descriptor names it.
        return str(self.device.options["tflite_version"])

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "platform": "ios", "delegate": self.delegate,
                "warmup_min_seconds": float(self.option("warmup_min_seconds")),
                "run_delay": float(self.option("run_delay"))}

    def fingerprint(self) -> str:
        # Phones of one model are interchangeable for a LUT; the serial number is kept in the session env.
        return f"ios|{'/'.join(self.product_types)}|{self.device.name}"

    @property
    def product_types(self) -> list[str]:
        """Apple's model identifiers this descriptor stands for (the iPhone X is iPhone10,3 and iPhone10,6)."""
        return [str(t) for t in self.device.options["product_types"]]

    def device_info(self) -> dict[str, Any]:
        # The phone's own facts (its product type, iOS version, name) come from the log or the command line.
        return {"platform": "ios", "model": self.device.description or "/".join(self.product_types),
                "app_bundle_id": self.device.options["app_bundle_id"]}

    def protocol(self, **overrides: Any) -> Protocol:
        """The descriptor's protocol with CLI overrides. There are no retries: the phone runs each model once."""
        fields = {k: self.device.options[k] for k in ("warmup", "runs", "min_seconds", "max_seconds",
                                                      "noise_threshold") if self.device.options.get(k) is not None}
        fields.update(overrides)
        fields["retries"] = 0
        try:
            return Protocol(**fields)
        except (TypeError, ValueError) as e:
            raise DeviceError(f"device descriptor {self.device.source}: {e}") from None

    def measure(self, spec: OpSpec, artifact: Path | None, protocol: Protocol) -> RunResult:
        raise DeviceError(f"{self.device.name} is measured by the iOS benchmark app: run "
                          f"'fbnet-lut build --device {self.device.name}' and ingest the app's output")
