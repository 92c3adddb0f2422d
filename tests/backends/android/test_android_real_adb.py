"""The loopback daemon is a faithful ADB device: Debian's real adb client and server drive it."""
# ruff: noqa: F811  (pytest fixtures imported from android_fixtures are test arguments of the same name)

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from adb_daemon import parse_android_pubkey
from android_fixtures import loopback_doc, phone, phone_home  # noqa: F401

ADB = shutil.which("adb") or "/usr/bin/adb"


@pytest.fixture
def adb(tmp_path: Path):
    """Run the real adb client against its own server on a free non-default port (killed at the end)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "adb-home"  # the server's key goes to $HOME/.android, not the user's
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "ANDROID_ADB_SERVER_PORT": str(port)}
    env.pop("ANDROID_SERIAL", None)

    def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ADB, "-P", str(port), *args], env=env, capture_output=True, text=True,
                              timeout=timeout)

    # Started first: a server started by `connect` may still be generating its key when the phone asks for it.
    assert run("start-server").returncode == 0
    run.home = home  # type: ignore[attr-defined]
    run.env = env  # type: ignore[attr-defined]
    yield run
    run("kill-server")


def test_real_adb_connects_shells_pushes_and_pulls(adb, phone, tmp_path):
    assert Path(ADB).exists(), "Debian's adb package is required (make test installs it)"
    assert not 5555 <= phone.port <= 5585
    # This computer was authorized before (its key is on the phone): adb signs the phone's token with its own key
    # and the phone verifies the signature, no prompt. (An unknown key gets "failed to authenticate" and a prompt,
    # as with a real phone; the adb-shell tests cover that path.)
    pub = (adb.home / ".android" / "adbkey.pub").read_bytes()
    phone.trusted_keys.append(parse_android_pubkey(pub))
    assert "connected to" in adb("connect", phone.address).stdout
    assert adb("-s", phone.address, "wait-for-device", timeout=30).returncode == 0
    devices = adb("devices", "-l").stdout
    assert f"{phone.address}" in devices and "device product:loopback model:Loopback_Phone" in devices
    assert phone.prompts == 0

    shell = adb("-s", phone.address, "shell", "echo hello; getprop ro.serialno; cat /sys/class/thermal/*0/temp")
    assert shell.stdout.split() == ["hello", "FBNETLOOP0001", "38000"]

    blob = os.urandom(300_000)  # several sync DATA chunks and ADB packets
    src = tmp_path / "blob.bin"
    src.write_bytes(blob)
    push = adb("-s", phone.address, "push", str(src), "/data/local/tmp/dir/blob.bin")
    assert push.returncode == 0, push.stderr
    assert (phone.data_dir / "dir/blob.bin").read_bytes() == blob
    assert "blob.bin" in adb("-s", phone.address, "shell", "ls /data/local/tmp/dir").stdout

    dest = tmp_path / "back.bin"
    pull = adb("-s", phone.address, "pull", "/data/local/tmp/dir/blob.bin", str(dest))
    assert pull.returncode == 0, pull.stderr
    assert dest.read_bytes() == blob

    missing = adb("-s", phone.address, "pull", "/data/local/tmp/nope.bin", str(tmp_path / "x"))
    assert missing.returncode != 0 and "'/data/local/tmp/nope.bin' does not exist" in missing.stdout + missing.stderr


def test_offline_bundle_runs_through_real_adb_and_its_log_is_ingested(adb, phone, tmp_path, artifact_cache):
    """`build --bundle` for an Android descriptor, its run_with_adb.sh driving the phone with the real adb client
    (push, run pinned on the phone, log back), then `ingest` of that log."""
    import json

    import yaml
    from conftest import cli_env, run_cli

    keys = ["ir-in16x16x8-out8-k3-e1-g1-s1", "ir-in16x16x8-out8-k3-e3-g1-s1"]
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(loopback_doc(name="lab")))
    env = cli_env(FBNET_LUT_CACHE=str(artifact_cache), FBNET_LUT_STORE=str(tmp_path / "store.sqlite"))
    only = [a for k in keys for a in ("--only", k)]
    p = run_cli("build", "--device", "lab.yaml", "--resolution", "32", "--width", "0.25", "--warmup", "1", "--runs",
                "4", "--min-seconds", "0", *only, "--bundle", "b", "--json", cwd=tmp_path, env=env, check=True)
    bundle_id = json.loads(p.stdout)["bundle_id"]
    assert phone.commands == []  # building the bundle never touched the phone

    phone.trusted_keys.append(parse_android_pubkey((adb.home / ".android" / "adbkey.pub").read_bytes()))
    assert "connected to" in adb("connect", phone.address).stdout
    run = subprocess.run(["sh", str(tmp_path / "b" / "run_with_adb.sh"), "-s", phone.address], env=adb.env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    remote = f"/data/local/tmp/fbnet-lut/bundle-{bundle_id}"
    assert (phone.data_dir / f"fbnet-lut/bundle-{bundle_id}/benchmark_model").is_file()
    log = (tmp_path / "b" / f"fbnet-lut-{bundle_id}.log").read_text()
    assert f"Graph: [{remote}/models/{keys[1]}.tflite]" in log and log.count(" exit 0") == 2

    p = run_cli("ingest", "--device", "lab.yaml", "--bundle", "b", f"b/fbnet-lut-{bundle_id}.log", "--json",
                cwd=tmp_path, env=env, check=True)
    rep = json.loads(p.stdout)
    assert sorted(rep["added"]) == keys and rep["missing"] == [] and rep["lut_entries"] == 2
