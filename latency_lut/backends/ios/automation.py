"""Optional: drive an attached iPhone with pymobiledevice3 (pure Python, works on Linux and macOS).

The sequence: connect over usbmux (lockdown) -> read the phone's facts -> copy the bundle into the benchmark
app's Documents (house_arrest, VendDocuments) -> launch the app with ``--fbnet-lut-bundle <folder>``
(instruments' process control; needs the developer disk image mounted, i.e. Developer Mode and a prior Xcode
connection) -> collect the app's output lines (the process output instruments forwards, and its syslog) until
the batch runner prints ``fbnet-lut: done <bundle id>`` or the timeout -> save them as a log, which is then
ingested like any other.

What the app must do for this (the stock TensorFlow app reads one benchmark_params.json from its own bundle and
runs on a button tap): accept ``--fbnet-lut-bundle``, walk the folder's ``run_list.txt``, run each model's
parameters, and print the ``done`` line; docs/ios.md describes that change. Also ``UIFileSharingEnabled`` in
its Info.plist, so that house_arrest may write its Documents.

This has been checked against the installed pymobiledevice3's API (:data:`API`, :func:`check_api`) and with
fake device-side objects, never against a phone. iOS 17+ reaches instruments only through a RemoteXPC tunnel
(``pymobiledevice3 remote start-tunnel``), which this module does not set up; the iPhone X stops at iOS 16.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latency_lut.backends.ios.app import IOSApp
from latency_lut.backends.ios.bundle import load_manifest
from latency_lut.backends.ios.errors import AutomationError
from latency_lut.devices import Device

BUNDLE_ARG = "--fbnet-lut-bundle"
DONE = "fbnet-lut: done"


@dataclass(frozen=True)
class ApiItem:
    """One pymobiledevice3 callable this module uses: where it lives and the parameters it is called with."""

    module: str
    attr: str  # "name" or "Class.method"
    params: tuple[str, ...]
    is_async: bool = True


API: tuple[ApiItem, ...] = (
    ApiItem("pymobiledevice3.lockdown", "create_using_usbmux", ("serial",)),
    ApiItem("pymobiledevice3.lockdown", "LockdownClient.get_value", ("self", "domain", "key")),
    ApiItem("pymobiledevice3.services.house_arrest", "HouseArrestService.create", ("lockdown", "bundle_id",
                                                                                   "documents_only")),
    ApiItem("pymobiledevice3.services.afc", "AfcService.makedirs", ("self", "filename")),
    ApiItem("pymobiledevice3.services.afc", "AfcService.push", ("self", "local_path", "remote_path", "progress_bar")),
    ApiItem("pymobiledevice3.services.afc", "AfcService.close", ("self",)),
    ApiItem("pymobiledevice3.services.dvt.instruments.dvt_provider", "DvtProvider", ("lockdown",), is_async=False),
    ApiItem("pymobiledevice3.services.dvt.instruments.process_control", "ProcessControl", ("provider",),
            is_async=False),
    ApiItem("pymobiledevice3.dtx_service", "DtxService.__aenter__", ("self",)),
    ApiItem("pymobiledevice3.services.dvt.instruments.process_control", "ProcessControl.launch",
            ("self", "bundle_id", "arguments", "kill_existing")),
    ApiItem("pymobiledevice3.services.os_trace", "OsTraceService", ("lockdown",), is_async=False),
    ApiItem("pymobiledevice3.services.os_trace", "OsTraceService.syslog", ("self", "pid")),
)


def _resolve(item: ApiItem) -> Any:
    obj: Any = importlib.import_module(item.module)
    for part in item.attr.split("."):
        obj = getattr(obj, part)
    return obj


def check_api() -> dict[str, Any]:
    """Resolve every callable of :data:`API` in the installed pymobiledevice3; raise if one is gone or changed."""
    try:
        importlib.import_module("pymobiledevice3")
    except ImportError:
        raise AutomationError("--from-phone needs pymobiledevice3: pip install pymobiledevice3") from None
    found: dict[str, Any] = {}
    for item in API:
        try:
            obj = _resolve(item)
        except (ImportError, AttributeError):
            raise AutomationError(f"pymobiledevice3 has no {item.module}.{item.attr}; this tool was written against "
                                  "its 11.x API") from None
        fn = obj.__init__ if inspect.isclass(obj) else obj
        names = list(inspect.signature(fn).parameters)
        if inspect.isclass(obj):
            names = names[1:]  # drop self
        missing = [p for p in item.params if p not in names]
        if missing:
            raise AutomationError(f"pymobiledevice3's {item.attr} has no parameter(s) {', '.join(missing)}")
        inner = inspect.unwrap(fn)  # through decorators such as afc's path_to_str
        if item.is_async and not (inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner)):
            raise AutomationError(f"pymobiledevice3's {item.attr} is no longer async; this tool needs its 11.x API")
        found[item.attr] = obj
    return found


class Phone:
    """The device boundary: every pymobiledevice3 call of the sequence, on the real classes by default."""

    def __init__(self, api: dict[str, Any] | None = None) -> None:
        self.api = api if api is not None else check_api()

    async def connect(self, udid: str | None) -> Any:
        return await self.api["create_using_usbmux"](serial=udid)

    @staticmethod
    async def facts(lockdown: Any) -> dict[str, Any]:
        values = await lockdown.get_value() or {}  # no domain, no key: every lockdown value
        return {"product_type": values.get("ProductType"), "ios_version": values.get("ProductVersion"),
                "device_name": values.get("DeviceName"), "udid": values.get("UniqueDeviceID")}

    async def copy_bundle(self, lockdown: Any, app_id: str, local: Path, remote_parent: str) -> None:
        """Copy the folder ``local`` to ``remote_parent/<its name>`` in the app's Documents."""
        afc = await self.api["HouseArrestService.create"](lockdown=lockdown, bundle_id=app_id, documents_only=True)
        try:
            await afc.makedirs(remote_parent)
            await afc.push(str(local), remote_parent, progress_bar=False)
        finally:
            await afc.close()

    async def run(self, lockdown: Any, app_id: str, args: list[str], bundle_id: str, timeout: float,
                  on_line: Callable[[str], None]) -> list[str]:
        lines: list[str] = []
        async with self.api["DvtProvider"](lockdown) as provider, \
                self.api["ProcessControl"](provider) as process_control:
            pid = await process_control.launch(bundle_id=app_id, arguments=args, kill_existing=True)
            trace = self.api["OsTraceService"](lockdown)
            done = f"{DONE} {bundle_id}"

            async def pump(stream: Any, text: Callable[[Any], str]) -> None:
                async for item in stream:
                    for line in str(text(item)).splitlines():
                        lines.append(line)
                        on_line(line)
                    if any(done in line for line in lines[-5:]):
                        return

            tasks = [asyncio.ensure_future(pump(process_control, lambda e: e.message)),
                     asyncio.ensure_future(pump(trace.syslog(pid=pid), lambda e: e.message))]
            try:
                finished, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()
            if not finished:
                lines.append(f"fbnet-lut: timed out after {timeout:g} s (partial results are kept)")
        return lines


def run_bundle_on_phone(bundle: Path, device: Device, *, udid: str | None = None, phone: Phone | None = None,
                        log_dir: Path | None = None, echo: Callable[[str], None] | None = None) -> Path:
    """Copy, launch, collect; return the path of the saved log (the bundle's ``results/`` folder by default)."""
    manifest = load_manifest(bundle)
    app = IOSApp(device, manifest.threads)
    app_id = str(app.option("app_bundle_id"))
    folder = Path(bundle).resolve()
    remote_parent = f"/Documents/{app.option('documents_dir')}"
    phone = phone or Phone()
    say = echo or (lambda s: None)
    lines: list[str] = []

    async def sequence() -> dict[str, Any]:
        lockdown = await phone.connect(udid or device.options.get("udid"))
        facts = await phone.facts(lockdown)
        say(f"phone: {facts.get('device_name')} ({facts.get('product_type')}, iOS {facts.get('ios_version')})")
        say(f"copying {len(manifest.models)} models to {app_id}:{remote_parent}/{folder.name}")
        await phone.copy_bundle(lockdown, app_id, folder, remote_parent)
        say(f"launching {app_id}; waiting for '{DONE} {manifest.bundle_id}'")
        args = [BUNDLE_ARG, f"{remote_parent.lstrip('/')}/{folder.name}"]
        lines.extend(await phone.run(lockdown, app_id, args, manifest.bundle_id,
                                     float(app.option("timeout_seconds")), lambda s: None))
        return facts

    try:
        facts = asyncio.run(sequence())
    except AutomationError:
        raise
    except Exception as e:  # usbmux, pairing, missing app: the user needs the cause, on one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise AutomationError(f"driving the phone failed: {type(e).__name__}: {first}; check the cable, the pairing "
                              "(trust this computer) and Developer Mode") from e
    out_dir = log_dir or Path(bundle) / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out_dir / f"phone-{stamp}.log"
    header = "fbnet-lut device: " + json.dumps({k: v for k, v in facts.items() if v})
    path.write_text("\n".join([header, *lines]) + "\n")
    say(f"saved {len(lines)} log lines to {path}")
    return path
