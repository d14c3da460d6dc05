"""Domain types of `clinical/`: the ClinicalRecord of one patient at an index date.

JSON contract `osteorisk.clinical/1` of DESIGN.md (the CLI's `clinical --json` output). Every variable
carries its value, its status, the FHIR references it came from and its effective date.
"""

from __future__ import annotations

from datetime import date
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

CLINICAL_SCHEMA: Final = "osteorisk.clinical/1"

VariableStatus = Literal["observed", "derived", "imputed", "missing"]
Sex = Literal["female", "male", "other", "unknown"]


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True, allow_inf_nan=False
    )


class Variable(_Model):
    """One clinical variable: value (None when missing) + status + FHIR sources + effective date."""

    value: bool | float | str | None = None
    status: VariableStatus = "missing"
    sources: list[str] = Field(default_factory=list, description="FHIR references, e.g. Observation/123")
    effective: date | None = None
    unit: str | None = Field(default=None, description="UCUM unit of a numeric value")

    @classmethod
    def missing(cls) -> Variable:
        return cls()

    @property
    def is_missing(self) -> bool:
        return self.status == "missing" or self.value is None


def _missing() -> Variable:
    return Variable()


class ClinicalVariables(_Model):
    """The fixed set of clinical variables (DESIGN.md). Units are in the names; booleans are True/False."""

    age_years: Variable = Field(default_factory=_missing)
    sex: Variable = Field(default_factory=_missing)
    weight_kg: Variable = Field(default_factory=_missing)
    height_cm: Variable = Field(default_factory=_missing)
    bmi_kg_m2: Variable = Field(default_factory=_missing)
    prior_fragility_fracture: Variable = Field(default_factory=_missing)
    prior_hip_fracture: Variable = Field(default_factory=_missing)
    prior_vertebral_fracture: Variable = Field(default_factory=_missing)
    prior_forearm_fracture: Variable = Field(default_factory=_missing)
    prior_humerus_fracture: Variable = Field(default_factory=_missing)
    prior_other_fracture: Variable = Field(default_factory=_missing)
    recent_fracture_2y: Variable = Field(default_factory=_missing)
    falls_last_12m: Variable = Field(default_factory=_missing)
    parental_hip_fracture: Variable = Field(default_factory=_missing)
    current_smoker: Variable = Field(default_factory=_missing)
    glucocorticoids: Variable = Field(default_factory=_missing)
    rheumatoid_arthritis: Variable = Field(default_factory=_missing)
    secondary_osteoporosis: Variable = Field(default_factory=_missing)
    alcohol_3_or_more_units_day: Variable = Field(default_factory=_missing)
    dxa_t_score_min: Variable = Field(default_factory=_missing)
    osteoporosis_diagnosis: Variable = Field(default_factory=_missing)
    osteoporosis_treatment: Variable = Field(default_factory=_missing)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Variable names in contract order."""
        return tuple(cls.model_fields)

    def get(self, name: str) -> Variable:
        if name not in type(self).model_fields:
            raise KeyError(f"unknown clinical variable {name!r}; known: {', '.join(self.names())}")
        value: Variable = getattr(self, name)
        return value


class ClinicalRecord(_Model):
    """Clinical risk factors of one patient at an index date (JSON contract `osteorisk.clinical/1`)."""

    schema_id: Literal["osteorisk.clinical/1"] = Field(default=CLINICAL_SCHEMA, alias="schema")
    patient_id: str = Field(min_length=1)
    index_date: date
    variables: ClinicalVariables = Field(default_factory=ClinicalVariables)
    warnings: list[str] = Field(default_factory=list)

    def sources(self) -> list[str]:
        """Every FHIR reference any variable came from, sorted, without duplicates."""
        variables = self.variables
        return sorted({ref for name in ClinicalVariables.model_fields for ref in getattr(variables, name).sources})
