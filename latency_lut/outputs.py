"""The one guard every command runs on the files it is about to write, and the atomic write they all use.

Rules (the README's "Output files" section says the same to users):

- An output is a regular file or a path that does not exist yet. A folder, a device node (``/dev/full``,
  ``/dev/null``), a named pipe or a socket is refused: an atomic rename would replace the node with a file.
- An output is never the measurement store (nor its ``-wal``/``-shm``/``-journal`` companions), never a file the
  same command reads (a LUT given to ``show``, a results log given to ``ingest``), and two outputs of one command
  are never the same file. Files are compared after following symlinks, and hard links by inode.
- Symlinks are followed: ``-o link.json`` writes the link's target (atomically, through a temporary file beside
  the target) and the link stays a link pointing at fresh content. A dangling link creates its target.
- The folder is created when missing; a path that cannot be written fails before any measurement starts.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

from latency_lut.errors import OutputPathError

# Files SQLite keeps beside a database; writing any of them corrupts the store as surely as writing the store.
STORE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def real_path(path: str | Path) -> Path:
    """``path`` with every symlink followed (the target need not exist yet)."""
    return Path(os.path.realpath(os.fspath(path)))


def _identity(path: Path) -> tuple[object, ...]:
    """What makes two paths the same file: the inode when it exists (catches hard links), else the real path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", str(real_path(path)))


def check_kind(path: Path, what: str = "output path", hint: str = "choose another -o path") -> None:
    """Refuse an existing path that is not a regular file (following symlinks)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # the parent checks of check_writable name the cause
        return
    except OSError as e:
        raise OutputPathError(f"{what} {path} cannot be examined ({e.strerror}); {hint}") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputPathError(f"{what} {path} is a directory; give a file name such as {path / 'lut.json'}")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device node")
        raise OutputPathError(f"{what} {path} is {kind}, not a regular file; {hint}")


def read_input(path: Path, what: str, *, hint: str, missing: str, error: type[Exception]) -> str:
    """The text of a file the user named, or ``error`` saying why not: ``missing`` when it does not exist; a
    folder, pipe or device (whose read would block or never end) with ``hint``; unreadable or not text."""
    try:
        check_kind(path, what, hint)
    except OutputPathError as e:
        raise error(str(e)) from None
    try:
        return path.read_text()
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist{'; ' + missing if missing else ''}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"cannot read {what} {path}: {e}") from None


def check_writable(path: Path) -> None:
    """The folder exists or can be made, and a file can be created in it (probed: ``os.access`` lies to root)."""
    check_kind(path)
    target = real_path(path)
    parent = target.parent
    for anc in (parent, *parent.parents):
        if anc.exists() and not anc.is_dir():
            raise OutputPathError(f"output path {path}: {anc} is a file, not a folder; choose another -o path")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"cannot create output folder {parent}: {e.strerror}; choose another -o path") from e
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
        if target.exists():
            with open(target, "a"):
                pass
    except OSError as e:
        raise OutputPathError(f"output path {path} is not writable ({e.strerror}); choose another -o path") from None


def check_outputs(
    outputs: Mapping[str, str | Path | None],
    *,
    inputs: Mapping[str, str | Path | None] | None = None,
    store: str | Path | None = None,
) -> dict[str, Path]:
    """Check every output of one command before it does any work; returns the outputs given, as Paths.

    ``outputs`` and ``inputs`` map an option name (``-o``, ``--csv``, ``LUT``) to a path or None (not given);
    ``store`` is the command's measurement store, if it opens one.
    """
    outs = {name: Path(p) for name, p in outputs.items() if p is not None and str(p) != ""}
    taken: dict[tuple[object, ...], str] = {}
    if store is not None:
        for suffix in STORE_COMPANIONS:
            taken[_identity(Path(f"{store}{suffix}"))] = f"the measurement store ({store})"
    for name, p in (inputs or {}).items():
        if p is not None and str(p) not in ("", "-"):
            taken.setdefault(_identity(Path(p)), f"an input of this command ({name} {p})")
    for name, p in outs.items():
        ident = _identity(p)
        if ident in taken:
            raise OutputPathError(f"{name} {p} is {taken[ident]}; writing it would destroy that file. "
                                  f"Choose another {name} path")
        taken[ident] = f"also given as {name}"
    for p in outs.values():  # only once no output clashes: this creates missing folders
        check_writable(p)
    return outs


def check_store_path(path: str | Path) -> Path:
    """A store path is a regular file or does not exist yet (SQLite would write ``/dev/null-journal``)."""
    p = Path(path)
    check_kind(p, "measurement store", "pass another --store file")
    return p


def write_atomic(path: str | Path, data: str | bytes, what: str = "file") -> Path:
    """Write ``data`` to ``path`` through a temp file and a rename, following a symlink to its target."""
    target = real_path(path)
    check_kind(target)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputPathError(f"cannot write {what} {path}: {e.strerror}") from e
    return Path(path)

