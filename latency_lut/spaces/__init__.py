"""Search spaces as data: ``get_space("fbnet", resolution=96, width=0.35)`` or ``get_space("my_space.yaml")``.

The built-in spaces are the YAML files in ``spaces/builtin/`` (schema: ``latency_lut.spaces.schema``). The
registry is open: :func:`register_space` adds a user's file under its name, and :func:`get_space` accepts a path.
A LUT header embeds the whole definition (``SearchSpace.describe()``), so :func:`from_description` rebuilds a
user's space without its file.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from latency_lut.errors import ArchitectureError
from latency_lut.spaces.base import Architecture, Layer, SearchSpace, Stage, make_divisible
from latency_lut.spaces.candidates import Candidate, CandidateError, decode
from latency_lut.spaces.schema import MIN_RESOLUTION, SpaceFileError, build, check_definition, load_file

BUILTIN_DIR = Path(__file__).with_name("builtin")
_DEFINITIONS: dict[str, tuple[dict[str, Any], str, bool]] = {}  # name -> (definition, source, builtin)


def _load_builtins() -> None:
    if not _DEFINITIONS:
        for path in sorted(BUILTIN_DIR.glob("*.yaml")):
            doc = load_file(path)
            _DEFINITIONS[doc["name"]] = (doc, f"builtin/{path.name}", True)


def space_names() -> list[str]:
    _load_builtins()
    return sorted(_DEFINITIONS)


def register_space(path: str | Path) -> str:
    """Add the space of a YAML file to the registry under its ``name``; returns the name."""
    _load_builtins()
    doc = load_file(path)
    known = _DEFINITIONS.get(doc["name"])
    if known is not None and known[2]:
        raise SpaceFileError(f"space file {path}: name {doc['name']!r} is a built-in space; choose another name")
    _DEFINITIONS[doc["name"]] = (doc, str(path), False)
    return doc["name"]


def load_definition(name_or_path: str | Path) -> dict[str, Any]:
    """The definition of a registered space name or of a space file (a copy; plain data)."""
    return copy.deepcopy(_lookup(name_or_path)[0])


def _is_path(name_or_path: str | Path) -> bool:
    s = str(name_or_path)
    return isinstance(name_or_path, Path) or s.endswith((".yaml", ".yml")) or "/" in s


def _lookup(name_or_path: str | Path) -> tuple[dict[str, Any], str, bool]:
    _load_builtins()
    if _is_path(name_or_path):
        doc = load_file(name_or_path)
        return doc, str(name_or_path), False
    if name_or_path not in _DEFINITIONS:
        raise ArchitectureError(f"unknown search space {name_or_path!r}; known: {', '.join(sorted(_DEFINITIONS))} "
                                "(or give a space .yaml file)")
    return _DEFINITIONS[str(name_or_path)]


def get_space(name: str | Path = "fbnet", resolution: int | None = None, width: float | None = None) -> SearchSpace:
    """A space by built-in or registered name, or from a YAML file, at a resolution and width (default: the
    definition's)."""
    doc, source, builtin = _lookup(name)
    return build(doc, resolution, width, source, builtin)


def from_definition(doc: dict[str, Any], resolution: int | None = None, width: float | None = None,
                    source: str = "<embedded space>") -> SearchSpace:
    """A space from a definition (e.g. one embedded in a LUT header), checked as a file would be."""
    try:
        text = json.dumps(doc, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):  # not plain JSON data: let the checks name the field
        text = None
    if text is None:
        return _from_definition(doc, resolution, width, source)
    return _from_definition_text(text, resolution, width, source)


@functools.lru_cache(maxsize=32)
def _from_definition_text(text: str, resolution: int | None, width: float | None, source: str) -> SearchSpace:
    # A space is immutable; predictions and calibration ask for the LUT header's space again and again.
    return _from_definition(json.loads(text), resolution, width, source)


def _from_definition(doc: dict[str, Any], resolution: int | None, width: float | None, source: str) -> SearchSpace:
    check_definition(doc, source)
    _load_builtins()
    known = _DEFINITIONS.get(doc.get("name"))
    builtin = known is not None and known[2] and known[0] == doc
    return build(doc, resolution, width, source, builtin)


def from_description(d: dict[str, Any], source: str = "<embedded space>") -> SearchSpace:
    """The space of a ``SearchSpace.describe()`` dict: its embedded definition, else (older LUTs) its name."""
    res, width = int(d["resolution"]), float(d["width"])
    if isinstance(d.get("definition"), dict) and d["definition"]:
        return from_definition(d["definition"], res, width, source)
    return get_space(d["name"], res, width)



__all__ = [
    "MIN_RESOLUTION", "Architecture", "Candidate", "CandidateError", "Layer", "SearchSpace", "SpaceFileError",
    "Stage", "decode", "from_definition", "from_description", "get_space", "load_definition",
    "make_divisible", "register_space", "space_names",
]
