"""Errors of the iPhone flow; all are user errors (one line on the CLI, exit status 2)."""

from __future__ import annotations

from latency_lut.backends.tflite_benchmark import OutputFormatError, TruncatedOutputError, UnitMismatchError
from latency_lut.errors import LatencyLutError


class BundleError(LatencyLutError):
    """A bundle folder that is missing, incomplete, or not the one the results belong to."""


class BundleMismatchError(BundleError):
    """Results that were produced by another bundle (their bundle id is not the manifest's)."""


# A results file or console log that cannot be trusted (truncated, inconsistent, in the wrong units): the errors
# of the one benchmark_model parser, so that the log and the JSON/CSV forms fail alike.
ResultsFormatError = OutputFormatError
TruncatedLogError = TruncatedOutputError


class AutomationError(LatencyLutError):
    """The phone could not be driven (pymobiledevice3 missing or incompatible, no phone, app not installed)."""


__all__ = ["AutomationError", "BundleError", "BundleMismatchError", "ResultsFormatError", "TruncatedLogError",
           "UnitMismatchError"]
