"""Public LUT formats in and out (HW-NAS-Bench, ProxylessNAS, Once-for-All), and
``compare``: how differently two or more LUTs of one space rank its architectures.

    from latency_lut.interop import import_lut, export_lut
    lut = import_lut("hwnasbench", ["pixel3_latency_224.json"])
    export_lut("hwnasbench", lut, "pixel3_again.json")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latency_lut.interop import hwnasbench, mobile_formats
from latency_lut.interop.source import SourceFormatError, imported_info
from latency_lut.lut import LUT, check_output_path
from latency_lut.predict import space_of

IMPORT_FORMATS = ("hwnasbench", "proxylessnas", "ofa")
EXPORT_FORMATS = IMPORT_FORMATS


def import_lut(fmt: str, files: Sequence[str | Path], **options: Any) -> LUT:
    """A LUT from the files of one public table. Options: ``resolution`` (the table must be at it); hwnasbench
    also ``metric`` and ``allow_estimates``."""
    paths = [Path(f) for f in files]
    if fmt == "hwnasbench":
        return hwnasbench.import_lut(paths, **options)
    if fmt in mobile_formats.FORMATS:
        return mobile_formats.import_lut(fmt, paths, **options)
    raise SourceFormatError(f"unknown import format {fmt!r}; known: {', '.join(IMPORT_FORMATS)}")


def export_doc(fmt: str, lut: LUT) -> Any:
    """The document of ``lut`` in a public format: plain data for JSON (hwnasbench), YAML text (the others)."""
    if fmt == "hwnasbench":
        return hwnasbench.export_doc(lut, space_of(lut))
    if fmt in mobile_formats.FORMATS:
        return mobile_formats.export_text(fmt, lut, space_of(lut))
    raise SourceFormatError(f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}")


def export_lut(fmt: str, lut: LUT, path: str | Path) -> Path:
    """Write ``lut`` in a public format; refuses to overwrite the LUT it exports."""
    out = Path(path)
    if lut.path is not None and out.resolve() == Path(lut.path).resolve():
        raise SourceFormatError(f"output {out} is the LUT being exported; choose another -o path")
    doc = export_doc(fmt, lut)
    check_output_path(out)
    out.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return out


__all__ = ["EXPORT_FORMATS", "IMPORT_FORMATS", "SourceFormatError", "export_doc", "export_lut", "import_lut",
           "imported_info"]
