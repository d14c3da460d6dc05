"""The FHIR R4 RiskAssessment that accompanies every RiskReport, validated with fhir.resources (R4B models).

Mapping (FHIR R4 RiskAssessment, http://hl7.org/fhir/R4/riskassessment.html):
- `subject`: Patient/{patient_id}; `occurrenceDateTime`: the index date; `status`: final.
- `method`: the model, coded in the project's own code system (id and version) with its card's intended use.
- `basis`: the FHIR resources the clinical variables came from, and the CT study as an identifier reference
  (`ImagingStudy` with identifier system `urn:dicom:uid`, value `urn:oid:{StudyInstanceUID}`), as FHIR's
  ImagingStudy identifier guidance describes.
- `prediction`: one per outcome and horizon: `probabilityDecimal`, `whenPeriod` from the index date to the
  horizon, the 95% interval in `rationale`; outcomes coded in the project's code system (no external
  terminology code is asserted).
- `note`: the model's intended use (e.g. "synthetic data, not for clinical use") and the diagnosis.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Hashable
from datetime import date, timedelta
from typing import Any

from fhir.resources.R4B.riskassessment import RiskAssessment

from fusion.types import RiskReport

MODEL_SYSTEM = "https://osteorisk.org/fhir/CodeSystem/model"
OUTCOME_SYSTEM = "https://osteorisk.org/fhir/CodeSystem/outcome"
_OUTCOME_DISPLAY = {
    "major_osteoporotic_fracture": "Major osteoporotic fracture (hip, clinical spine, forearm or humerus)",
    "hip_fracture": "Hip fracture",
}
_DAYS_PER_YEAR = 365.25
_RATIONALE = "cumulative incidence with death as a competing risk"


def _years(value: float) -> str:
    return "year" if value == 1 else "years"


def _horizon_end(start: date, years: float) -> date:
    return start + timedelta(days=round(years * _DAYS_PER_YEAR))


def _basis(report: RiskReport) -> list[dict[str, Any]]:
    references: list[dict[str, Any]] = [{"reference": ref} for ref in report.inputs.clinical_sources if "/" in ref]
    if report.inputs.study_uid:
        references.append(
            {
                "type": "ImagingStudy",
                "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{report.inputs.study_uid}"},
                "display": f"CT series {report.inputs.series_uid}" if report.inputs.series_uid else "CT study",
            }
        )
    return references


def build_risk_assessment(report: RiskReport) -> dict[str, Any]:
    """A validated FHIR R4 RiskAssessment (as JSON) for `report`; its id is derived from the report's content."""
    start = report.index_date
    predictions = [
        {
            "outcome": {
                "coding": [{"system": OUTCOME_SYSTEM, "code": p.outcome, "display": _OUTCOME_DISPLAY[p.outcome]}],
                "text": f"{_OUTCOME_DISPLAY[p.outcome]} within {p.horizon_years:g} {_years(p.horizon_years)}",
            },
            "probabilityDecimal": round(p.probability, 6),
            "whenPeriod": {"start": start.isoformat(), "end": _horizon_end(start, p.horizon_years).isoformat()},
            "rationale": f"95% interval {p.ci95[0]:.4f}-{p.ci95[1]:.4f}; {_RATIONALE}",
        }
        for p in report.predictions
    ]
    notes = [
        {"text": f"Model intended use: {report.model.intended_use}"},
        {"text": f"Diagnosis: {report.diagnosis.category} ({report.diagnosis.basis})"},
    ]
    resource: dict[str, Any] = {  # in the element order of the FHIR model (checked once per structure)
        "status": "final",
        "method": {
            "coding": [
                {
                    "system": MODEL_SYSTEM,
                    "version": report.model.version,
                    "code": report.model.id,
                    "display": report.model.id,
                }
            ],
            "text": f"{report.model.id} {report.model.version} (sha256 {report.model.sha256[:12]}); "
            f"trained on {report.model.trained_on}",
        },
        "subject": {"reference": f"Patient/{report.patient_id}"},
        "occurrenceDateTime": start.isoformat(),
        "basis": _basis(report),
        "prediction": predictions,
        "note": notes,
    }
    if not resource["basis"]:
        del resource["basis"]
    digest = hashlib.sha256(repr(sorted(resource.items())).encode()).hexdigest()
    resource = {"resourceType": "RiskAssessment", "id": f"osteorisk-{digest[:32]}", **resource}
    return validated_risk_assessment(resource)


def _checked_shape(value: Any) -> Hashable | None:
    """The structure of a JSON value (keys in order, the element shapes of lists but not their length, leaf
    types), or None when a value breaks FHIR R4's primitive rules as our builder writes them: strings carry
    non-whitespace content, decimals are finite (http://hl7.org/fhir/R4/datatypes.html#primitive)."""
    if isinstance(value, str):
        return "str" if value.strip() else None
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            shape = _checked_shape(item)
            if shape is None:
                return None
            items.append((key, shape))
        return tuple(items)
    if isinstance(value, list):
        shapes = set()
        for item in value:
            shape = _checked_shape(item)
            if shape is None:
                return None
            shapes.add(shape)
        return ("[]", frozenset(shapes))
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return type(value).__name__


_VALIDATED_SHAPES: dict[Hashable, bool] = {}
_MAX_SHAPES = 4096  # a handful of structures occur (basis kinds x prediction sets); a bound keeps memory fixed


def validated_risk_assessment(resource: dict[str, Any]) -> dict[str, Any]:
    """`resource`, validated: the first time a structure appears, against the fhir.resources R4B model (and its
    element order checked to be the model's); afterwards, the same structure needs only FHIR's primitive rules
    on its values. Anything new or odd takes the full path, so no unvalidated structure is ever returned."""
    shape = _checked_shape(resource)
    if shape is not None and _VALIDATED_SHAPES.get(shape):
        return resource
    canonical = canonical_risk_assessment(resource)
    if shape is not None and len(_VALIDATED_SHAPES) < _MAX_SHAPES:
        _VALIDATED_SHAPES[shape] = json.dumps(canonical) == json.dumps(resource)
    return canonical


def risk_assessment_json(resource: dict[str, Any]) -> str:
    """The resource as the JSON text the wire carries (compact, UTF-8 characters kept as they are)."""
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def canonical_risk_assessment(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate a RiskAssessment and give it the element order of the FHIR model (the same JSON text whatever
    order its keys arrived in, e.g. from another JSON writer)."""
    validated = RiskAssessment.model_validate(resource)
    result: dict[str, Any] = validated.model_dump(mode="json", exclude_none=True)
    return result
