"""The one YAML loader (latency_lut/safe_yaml.py): safe tags, bounded size, expansion and depth, clean errors."""

from __future__ import annotations

import os

import pytest

from latency_lut.errors import DeviceError
from latency_lut.safe_yaml import YAMLLimitError, load_yaml, loads_yaml


def laughs(levels: int) -> str:
    return "x: [" + ", ".join(f"&l{i} [{', '.join(['lol'] * 10 if i == 0 else [f'*l{i - 1}'] * 10)}]"
                              for i in range(levels)) + "]\n"


def test_plain_documents_load_and_modest_aliases_are_fine():
    assert loads_yaml("a: 1\nb: [x, y]\n", "t") == {"a": 1, "b": ["x", "y"]}
    assert loads_yaml("base: &b {k: 1}\nother: *b\n", "t") == {"base": {"k": 1}, "other": {"k": 1}}
    assert len(loads_yaml(laughs(3), "t")["x"]) == 3  # 10^3 values: allowed


@pytest.mark.parametrize("text, fragment", [
    (laughs(9), "alias bomb"),
    ("a: &a [1, *a]\n", "recursive"),
    ("a: " + "[" * 200 + "]" * 200, "deeper than 64"),
    ("a: " + "[" * 50_000 + "]" * 50_000, "t"),
    ("a: !!python/object/apply:os.system ['touch pwned']\n", "not valid YAML"),
    ("a: 1\n---\nb: 2\n", "not valid YAML"),
    ("a: [1, 2\n", "line 2"),
    ("\x08", "not valid YAML"),
])
def test_hostile_documents_are_one_clean_error(tmp_path, monkeypatch, text, fragment):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(YAMLLimitError, match=fragment) as e:
        loads_yaml(text, "t")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "pwned").exists()


def test_files_are_checked_before_they_are_read(tmp_path):
    (tmp_path / "big.yaml").write_text("a: '" + "x" * 5000 + "'\n")
    with pytest.raises(DeviceError, match="over the 1000 byte limit"):
        load_yaml(tmp_path / "big.yaml", what="device descriptor", error=DeviceError, max_bytes=1000)
    (tmp_path / "bin.yaml").write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(DeviceError, match="not UTF-8"):
        load_yaml(tmp_path / "bin.yaml", error=DeviceError)
    os.mkfifo(tmp_path / "p.yaml")  # would block a plain read forever
    with pytest.raises(DeviceError, match="not a regular file"):
        load_yaml(tmp_path / "p.yaml", error=DeviceError)
    with pytest.raises(DeviceError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml", error=DeviceError)
