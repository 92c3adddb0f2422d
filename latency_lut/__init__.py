"""fbnet-lut: per-device operator latency lookup tables for hardware-aware neural architecture search.

``import latency_lut`` stays light: torch, the exporters, the runtimes and ADB are imported where they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from latency_lut.errors import LatencyLutError  # noqa: E402
from latency_lut.lut import LUT, load  # noqa: E402
from latency_lut.ops import OpSpec  # noqa: E402
from latency_lut.predict import Prediction, predict  # noqa: E402
from latency_lut.spaces import SearchSpace, get_space  # noqa: E402

load_lut = load

__all__ = ["LUT", "LatencyLutError", "OpSpec", "Prediction", "SearchSpace", "__version__", "get_space", "load",
           "load_lut", "predict"]
