"""File checksums, used to verify and reuse what is pushed to or bundled for a phone."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ChecksumCache:
    """SHA-256 of host files, computed once per (path, mtime, size): a build checks every model before sending it."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, float, int], str] = {}

    def __call__(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_mtime, st.st_size)
        if key not in self._known:
            self._known[key] = sha256_file(path)
        return self._known[key]
