"""Exceptions raised by `clinical/`. Each names the bad value and, where there is one, the fix.

Mapped at the server's edge: `FhirInputError` -> INVALID_ARGUMENT, `PatientNotFoundError` -> NOT_FOUND,
`PatientDeceasedError` -> FAILED_PRECONDITION, `FhirSourceUnavailableError` -> UNAVAILABLE.
"""

from __future__ import annotations


class ClinicalError(Exception):
    """Base class of every error raised by `clinical/`."""

    reason: str = "CLINICAL_ERROR"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class FhirInputError(ClinicalError):
    """Malformed FHIR: not JSON, a wrong resourceType, an invalid resource, unknown units."""

    reason = "INVALID_FHIR"


class PatientNotFoundError(ClinicalError):
    """The source holds no Patient with the requested id."""

    reason = "PATIENT_NOT_FOUND"


class PatientDeceasedError(ClinicalError):
    """The patient died before the index date: no assessment at that date makes sense."""

    reason = "PATIENT_DECEASED"


class FhirSourceUnavailableError(ClinicalError):
    """The FHIR server is down, timed out, or answered with a server error."""

    reason = "FHIR_UNAVAILABLE"
