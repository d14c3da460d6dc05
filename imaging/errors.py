"""Exceptions raised by `imaging/`. Each names the bad value and, where there is one, the fix.

The server maps them once, at the edge: `ImageInputError` -> INVALID_ARGUMENT,
`UnusableImageError` -> FAILED_PRECONDITION (with the QC reason), `BackendUnavailableError` ->
FAILED_PRECONDITION naming what to install.
"""

from __future__ import annotations


class ImagingError(Exception):
    """Base class of every error raised by `imaging/`."""

    #: Short machine-readable reason, used as google.rpc.BadRequest.FieldViolation.reason.
    reason: str = "IMAGING_ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ImageInputError(ImagingError):
    """The input is not a readable CT: corrupt file, wrong modality, NaNs, too few slices, ..."""

    reason = "INVALID_IMAGE"


class GeometryError(ImageInputError):
    """Inconsistent geometry: bad affine, label map not aligned with the CT, uneven slices, gantry tilt."""

    reason = "INVALID_GEOMETRY"


class UnusableImageError(ImagingError):
    """A valid CT on which the measurement cannot be made (no lumbar spine found, all levels excluded)."""

    reason = "CT_UNUSABLE"


class BackendUnavailableError(ImagingError):
    """A segmentation backend was asked for but its package or weights are not installed."""

    reason = "BACKEND_UNAVAILABLE"


class ProcessingCancelledError(ImagingError):
    """The caller gave up (deadline passed or cancelled); work stopped between steps."""

    reason = "CANCELLED"
