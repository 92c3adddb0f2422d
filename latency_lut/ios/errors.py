"""Errors of the iPhone flow; all are user errors (one line on the CLI, exit status 2)."""

from __future__ import annotations

from latency_lut.errors import LatencyLutError


class BundleError(LatencyLutError):
    """A bundle folder that is missing, incomplete, or not the one the results belong to."""


class BundleMismatchError(BundleError):
    """Results that were produced by another bundle (their bundle id is not the manifest's)."""


class ResultsFormatError(LatencyLutError):
    """A results file or console log that cannot be trusted: truncated, inconsistent, or in the wrong units."""


class TruncatedLogError(ResultsFormatError):
    """A line of the app's output is cut off (a log copied or streamed only in part)."""


class UnitMismatchError(ResultsFormatError):
    """Numbers whose units are not the ones the format declares, or that contradict each other by a unit."""


class AutomationError(LatencyLutError):
    """The phone could not be driven (pymobiledevice3 missing or incompatible, no phone, app not installed)."""
