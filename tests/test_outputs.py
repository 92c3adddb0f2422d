"""The output-path guard every writing command uses (latency_lut/outputs.py) and the atomic write behind it."""

from __future__ import annotations

import os
import stat

import pytest

from latency_lut.errors import OutputPathError
from latency_lut.outputs import check_outputs, check_store_path, write_atomic
from tests.test_lut import make_lut


def test_an_output_may_not_be_the_store_or_its_companions(tmp_path):
    store = tmp_path / "s.sqlite"
    store.write_bytes(b"")
    for name in ("s.sqlite", "s.sqlite-wal", "s.sqlite-shm", "s.sqlite-journal"):
        with pytest.raises(OutputPathError, match="measurement store"):
            check_outputs({"-o": tmp_path / name}, store=store)


def test_links_are_seen_through(tmp_path):
    lut = make_lut().save(tmp_path / "l.json")
    os.link(lut, tmp_path / "hard.csv")
    os.symlink(lut, tmp_path / "soft.csv")
    for name in ("hard.csv", "soft.csv", "./l.json", "sub/../l.json"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(OutputPathError, match="input of this command"):
            check_outputs({"--csv": tmp_path / name}, inputs={"LUT": lut})


def test_two_outputs_may_not_be_one_file_and_nothing_is_created_on_a_clash(tmp_path):
    with pytest.raises(OutputPathError, match="also given as -o"):
        check_outputs({"-o": tmp_path / "new" / "l.json", "--csv": tmp_path / "new" / "l.json"})
    assert not (tmp_path / "new").exists()  # the clash is found before any folder is made


@pytest.mark.parametrize("kind, fragment", [("fifo", "named pipe"), ("device", "device node"),
                                            ("dir", "is a directory")])
def test_only_regular_files_are_outputs(tmp_path, kind, fragment):
    p = tmp_path / "out.json"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "dir":
        p.mkdir()
    else:
        try:
            os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
        except PermissionError:
            p = tmp_path / "full"
            os.symlink("/dev/full", p)
    with pytest.raises(OutputPathError, match=fragment):
        check_outputs({"-o": p})
    with pytest.raises(OutputPathError, match=fragment):
        make_lut().save(p)
    if kind == "device":
        assert stat.S_ISCHR(os.stat(p).st_mode)  # still the device node, never replaced by a file


def test_a_symlinked_lut_output_writes_the_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "real" / "l.json"
    target.parent.mkdir()
    target.write_text("stale")
    link = tmp_path / "l.json"
    os.symlink(target, link)
    make_lut().save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert '"format": "fbnet-lut"' in target.read_text()
    make_lut().to_csv(tmp_path / "c.csv")
    os.symlink(tmp_path / "c.csv", tmp_path / "c-link.csv")
    write_atomic(tmp_path / "c-link.csv", "x\n")
    assert (tmp_path / "c-link.csv").is_symlink() and (tmp_path / "c.csv").read_text() == "x\n"


def test_a_store_must_be_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "p")
    with pytest.raises(OutputPathError, match="named pipe"):
        check_store_path(tmp_path / "p")
    assert check_store_path(tmp_path / "new.sqlite") == tmp_path / "new.sqlite"
