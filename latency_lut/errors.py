"""User-facing errors.

Anything raised as a :class:`LatencyLutError` is a problem with the user's input or environment (a bad name, a
corrupt file, an unreachable device). The CLI prints its message on one line and exits with status 2; it never
shows a traceback for these. Bugs are left as ordinary exceptions so they do show one.
"""

from __future__ import annotations


class LatencyLutError(Exception):
    """Base class of every error that is the user's to fix."""


class ArchitectureError(LatencyLutError):
    """An architecture string or tensor does not fit the search space."""


class DeviceError(LatencyLutError):
    """An unknown device, a malformed descriptor, or a device that cannot be reached."""


class LUTFormatError(LatencyLutError):
    """A LUT file that is corrupt, truncated, of another schema version, or inconsistent."""


class UnknownOpError(LatencyLutError):
    """A prediction needs ops that the LUT does not hold; the message lists them."""

    def __init__(self, message: str, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing or [])


class StoreError(LatencyLutError):
    """The measurement store cannot be opened or written."""


class ExportError(LatencyLutError):
    """A model could not be exported to the requested format."""


class OutputPathError(LatencyLutError):
    """An output file cannot be written."""


class ValidationError(LatencyLutError):
    """A validation that cannot run as asked: a LUT from another device or runtime, too few models."""
