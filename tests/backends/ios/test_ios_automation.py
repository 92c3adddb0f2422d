"""The pymobiledevice3 driver: the real library's API surface, and the command sequence against a fake phone.

No phone here. The fakes stand only at the device boundary (lockdown, house_arrest, instruments, os_trace); each
fake method is checked to take the parameters of the real pymobiledevice3 method it replaces. The fake app
runs the copied bundle with LiteRT and prints the real output format (tests/ios_applog.py).
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
from pathlib import Path

import pytest
from ios_applog import block_lines, time_model

from latency_lut.backends.ios import automation
from latency_lut.backends.ios.automation import API, BUNDLE_ARG, DONE, Phone, check_api, run_bundle_on_phone
from latency_lut.devices import get_device
from latency_lut.offline.bundles import build_bundle
from latency_lut.offline.ingest import Source, ingest
from latency_lut.spaces import get_space
from latency_lut.store import Store

KEYS = ["ir-in16x16x8-out8-k3-e1-g1-s1", "ir-in16x16x8-out8-k3-e1-g2-s1"]
FACTS = {"ProductType": "iPhone10,3", "ProductVersion": "16.7.10", "DeviceName": "Lab X", "UniqueDeviceID": "00ab"}


class Event:
    def __init__(self, message: str) -> None:
        self.message = message


class FakePhone:
    """What the phone does: a Documents folder, an app that runs the copied bundle, its output stream."""

    def __init__(self, documents: Path) -> None:
        self.documents = documents
        self.calls: list[tuple] = []
        self.output: asyncio.Queue[Event] | None = None

    def api(self) -> dict:
        phone = self

        class Lockdown:
            async def get_value(self, domain=None, key=None):
                phone.calls.append(("get_value", domain, key))
                return dict(FACTS)

        async def create_using_usbmux(serial=None, identifier=None, label="", autopair=True, connection_type=None,
                                      pair_timeout=None, local_hostname=None, pair_record=None,
                                      pairing_records_cache_folder=None, port=62078, usbmux_address=None):
            phone.calls.append(("usbmux", serial))
            return Lockdown()

        class HouseArrest:
            @classmethod
            async def create(cls, lockdown, bundle_id, documents_only=False):
                phone.calls.append(("house_arrest", bundle_id, documents_only))
                return cls()

            async def makedirs(self, filename):
                phone.calls.append(("makedirs", filename))
                (phone.documents / filename.removeprefix("/Documents/")).mkdir(parents=True, exist_ok=True)

            async def push(self, local_path, remote_path, callback=None, progress_bar=True):
                phone.calls.append(("push", Path(local_path).name, remote_path))
                dest = phone.documents / remote_path.removeprefix("/Documents/") / Path(local_path).name
                shutil.copytree(local_path, dest)

            async def close(self):
                phone.calls.append(("afc_close",))

        class Provider:
            def __init__(self, lockdown, strip_ssl=None, dtx=None):
                pass

            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc):
                return False

        class ProcessControl:
            def __init__(self, provider, service=None):
                self.queue: asyncio.Queue[Event] = asyncio.Queue()

            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc):
                return False

            async def launch(self, bundle_id, arguments=None, kill_existing=True, start_suspended=False,
                             environment=None, extra_options=None):
                phone.calls.append(("launch", bundle_id, list(arguments or []), kill_existing))
                folder = phone.documents / arguments[arguments.index(BUNDLE_ARG) + 1].removeprefix("Documents/")
                for rel in (folder / "run_list.txt").read_text().split():  # the batch runner
                    for line in block_lines(time_model(folder / rel)):
                        self.queue.put_nowait(Event(line))
                bundle_id_ = (folder / "manifest.json").read_text().split('"bundle_id": "')[1].split('"')[0]
                self.queue.put_nowait(Event(f"{DONE} {bundle_id_}"))
                return 812

            async def __aiter__(self):
                while True:
                    yield await self.queue.get()

        class OsTrace:
            def __init__(self, lockdown, service_name=None, is_developer_service=False, service=None,
                         include_escrow_bag=False):
                pass

            async def syslog(self, pid=-1, message_filter=65535, stream_flags=60):
                phone.calls.append(("syslog", pid))
                await asyncio.sleep(3600)  # the app relays nothing to the syslog in this fake
                yield Event("")

        class DtxService:
            async def __aenter__(self):
                return self

        return {"create_using_usbmux": create_using_usbmux, "LockdownClient.get_value": Lockdown.get_value,
                "HouseArrestService.create": HouseArrest.create, "AfcService.makedirs": HouseArrest.makedirs,
                "AfcService.push": HouseArrest.push, "AfcService.close": HouseArrest.close,
                "DvtProvider": Provider, "ProcessControl": ProcessControl,
                "DtxService.__aenter__": DtxService.__aenter__, "ProcessControl.launch": ProcessControl.launch,
                "OsTraceService": OsTrace, "OsTraceService.syslog": OsTrace.syslog}


def _params(obj) -> list[str]:
    fn = obj.__init__ if inspect.isclass(obj) else obj
    names = list(inspect.signature(fn).parameters)
    return names[1:] if inspect.isclass(obj) else names


def test_real_api_surface():
    real = check_api()
    assert set(real) == {item.attr for item in API}
    fakes = FakePhone(Path(".")).api()
    for item in API:
        # The fake replaces the real callable one to one: same parameter names, in the same order.
        assert _params(fakes[item.attr]) == _params(real[item.attr]), item.attr
        inner = inspect.unwrap(real[item.attr].__init__ if inspect.isclass(real[item.attr]) else real[item.attr])
        assert inspect.iscoroutinefunction(inner) or inspect.isasyncgenfunction(inner) or not item.is_async


def test_sequence_against_fake_phone(tmp_path: Path, artifact_cache: Path):
    dev = get_device("iphonex")
    space = get_space("fbnet", 32, 0.25)
    with Store(tmp_path / "store.sqlite") as st:
        res = build_bundle(space, dev, st, only=KEYS, bundle_root=tmp_path / "bundles",
                           protocol_overrides={"warmup": 1, "runs": 4, "min_seconds": 0})
    fake = FakePhone(tmp_path / "phone-documents")
    (tmp_path / "phone-documents").mkdir()
    log = run_bundle_on_phone(res.bundle.path, dev, phone=Phone(api=fake.api()), log_dir=tmp_path / "logs")

    name = res.bundle.path.name
    kinds = [c[0] for c in fake.calls]
    assert kinds[:6] == ["usbmux", "get_value", "house_arrest", "makedirs", "push", "afc_close"]
    assert fake.calls[2] == ("house_arrest", "example.TFLiteBenchmark", True)
    assert fake.calls[4] == ("push", name, "/Documents/fbnet-lut")
    assert ("launch", "example.TFLiteBenchmark", [BUNDLE_ARG, f"Documents/fbnet-lut/{name}"], True) in fake.calls
    assert ("syslog", 812) in fake.calls
    assert (tmp_path / "phone-documents" / "fbnet-lut" / name / "manifest.json").is_file()

    text = log.read_text()
    assert text.startswith('fbnet-lut device: {"product_type": "iPhone10,3"')
    with Store(tmp_path / "store.sqlite") as st:
        rep = ingest([Source(str(log), text)], res.bundle.manifest, dev, st)
    assert sorted(rep.added) == sorted(KEYS) and rep.missing == []
    assert rep.device_info["ios_version"] == "16.7.10" and rep.device_info["udid"] == "00ab"


def test_missing_phone_is_one_clear_error(tmp_path: Path, artifact_cache: Path, monkeypatch):
    dev = get_device("iphonex")
    with Store(tmp_path / "store.sqlite") as st:
        res = build_bundle(get_space("fbnet", 32, 0.25), dev, st, only=KEYS[:1], bundle_root=tmp_path,
                           protocol_overrides={"runs": 3})

    async def no_phone(serial=None, **kw):
        raise ConnectionRefusedError("usbmuxd: no device connected")

    api = check_api()
    api["create_using_usbmux"] = no_phone
    with pytest.raises(automation.AutomationError, match="no device connected"):
        run_bundle_on_phone(res.bundle.path, dev, phone=Phone(api=api))
