"""The default places of LUT files and the store, defined once for the CLI and the library."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PROFILES = Path("profiles")


def default_store() -> Path:
    """$FBNET_LUT_STORE, else profiles/store.sqlite beside the LUT files."""
    return Path(os.environ.get("FBNET_LUT_STORE") or DEFAULT_PROFILES / "store.sqlite")


def default_lut_path(device: str, runtime: str, space_id: str, dtype: str = "fp32") -> Path:
    """FBNet's LUTs keep their original names (profiles/local-onnxruntime-224.json); other spaces add theirs,
    other dtypes theirs (profiles/local-litert-224-int8.json)."""
    tail = space_id.split("-", 1)[1] if space_id.startswith("fbnet-") else space_id
    return DEFAULT_PROFILES / f"{device}-{runtime}-{tail}{'' if dtype == 'fp32' else '-' + dtype}.json"
