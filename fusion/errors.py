"""Exceptions raised by `fusion/`. Mapped at the server's edge: `ModelInputError` -> INVALID_ARGUMENT,
`ModelArtifactError` -> FAILED_PRECONDITION (the server refuses to start with a tampered model)."""

from __future__ import annotations


class FusionError(Exception):
    """Base class of every error raised by `fusion/`."""

    reason: str = "FUSION_ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ModelInputError(FusionError):
    """An input the model needs is missing (and cannot be imputed) or out of its plausible range."""

    reason = "INVALID_MODEL_INPUT"


class ModelArtifactError(FusionError):
    """A model directory is incomplete, malformed, or a file's sha256 does not match its manifest."""

    reason = "MODEL_ARTIFACT_INVALID"


class CohortError(FusionError):
    """A cohort table lacks required columns or holds impossible values."""

    reason = "INVALID_COHORT"
