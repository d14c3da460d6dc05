"""Domain types of `fusion/`: the RiskReport of an assessment and the ModelCard of a model.

`RiskReport` is the JSON contract `osteorisk.risk_report/1` of DESIGN.md (CLI `assess --json` and the
gRPC `Assess` response). `ModelCard` is the declarative `manifest.json` of a model directory.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from clinical.types import ClinicalRecord
from imaging.types import FeatureSummary

RISK_REPORT_SCHEMA: Final = "osteorisk.risk_report/1"
MODEL_CARD_SCHEMA: Final = "osteorisk.model_card/1"

Outcome = Literal["major_osteoporotic_fracture", "hip_fracture"]
OUTCOMES: tuple[Outcome, ...] = ("major_osteoporotic_fracture", "hip_fracture")
DEFAULT_HORIZONS_YEARS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)
DiagnosisCategory = Literal["normal", "osteopenia", "osteoporosis", "undetermined"]
Severity = Literal["info", "warning", "critical"]
ModelKind = Literal["cox", "forest", "net", "logistic", "rules"]


V = TypeVar("V")


def _sorted_keys(mapping: dict[str, V]) -> dict[str, V]:
    """Maps serialise in key order, so that the same content gives the same JSON whatever path built it."""
    return dict(sorted(mapping.items()))


FloatMap = Annotated[dict[str, float], AfterValidator(_sorted_keys)]
StrMap = Annotated[dict[str, str], AfterValidator(_sorted_keys)]


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True, allow_inf_nan=False
    )


class Diagnosis(_Model):
    category: DiagnosisCategory
    probabilities: FloatMap = Field(default_factory=dict)
    method: str
    basis: str


class ScreeningFlag(_Model):
    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    severity: Severity
    reason: str


class Prediction(_Model):
    """Cumulative incidence of `outcome` by `horizon_years` (death competing), with a 95% interval."""

    outcome: Outcome
    horizon_years: float = Field(ge=1.0, le=10.0)
    probability: float = Field(ge=0.0, le=1.0)
    ci95: tuple[float, float]

    @model_validator(mode="after")
    def _interval_contains_estimate(self) -> Prediction:
        lo, hi = self.ci95
        if not (0.0 <= lo <= self.probability + 1e-9 and self.probability - 1e-9 <= hi <= 1.0):
            raise ValueError(f"ci95 {self.ci95} must lie in [0, 1] and contain probability {self.probability}")
        return self


class Explanation(_Model):
    """One term's contribution to a patient's predicted risk of `outcome` (for Cox models: the log-hazard
    contribution b_j (x_j - mean_j); for other models: the change in log-odds of the 10-year risk when the
    input is replaced by its training median/mode)."""

    feature: str
    value: float | str | bool | None = None
    contribution: float
    outcome: Outcome | None = None


class ModelRef(_Model):
    """The model that produced a report (from its card)."""

    id: str
    version: str
    sha256: str
    trained_on: str
    intended_use: str


class AssessmentInputs(_Model):
    """Provenance: what went in, what was missing or imputed."""

    clinical_sources: list[str] = Field(default_factory=list)
    series_uid: str | None = None
    study_uid: str | None = None
    segmentation_backend: str | None = None
    features_used: FloatMap = Field(default_factory=dict)
    imputed: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    clinical: ClinicalRecord | None = None
    imaging: FeatureSummary | None = None


class RiskReport(_Model):
    """The answer of one assessment (JSON contract `osteorisk.risk_report/1`)."""

    schema_id: Literal["osteorisk.risk_report/1"] = Field(default=RISK_REPORT_SCHEMA, alias="schema")
    patient_id: str
    index_date: date
    diagnosis: Diagnosis
    screening_flags: list[ScreeningFlag] = Field(default_factory=list)
    predictions: list[Prediction] = Field(default_factory=list)
    explanations: list[Explanation] = Field(default_factory=list)
    model: ModelRef
    inputs: AssessmentInputs = Field(default_factory=AssessmentInputs)
    warnings: list[str] = Field(default_factory=list)
    fhir_risk_assessment: dict[str, Any] | None = None


class FeatureSpec(_Model):
    """One model input: canonical name, unit, plausible range, and what happens when it is missing."""

    name: str
    unit: str = "1"
    description: str = ""
    min: float | None = None
    max: float | None = None
    required: bool = False
    impute_value: float | None = None


class ModelCard(_Model):
    """Declarative model metadata (a model directory's manifest.json); never evaluated as code."""

    schema_id: Literal["osteorisk.model_card/1"] = Field(default=MODEL_CARD_SCHEMA, alias="schema")
    id: str
    version: str
    created: datetime
    kind: ModelKind
    description: str = ""
    trained_on: str
    intended_use: str
    not_for_clinical_use: bool = True
    features: list[FeatureSpec] = Field(default_factory=list)
    outcomes: list[str] = Field(default_factory=list)
    target: str | None = Field(default=None, description="label column of a classifier (kind logistic)")
    diagnosis_features: list[FeatureSpec] = Field(
        default_factory=list, description="inputs of the osteoporosis classifier shipped with a risk model"
    )
    min_horizon_years: float = 1.0
    max_horizon_years: float = 10.0
    metrics: FloatMap = Field(default_factory=dict)
    training_data_sha256: str | None = None
    files: StrMap = Field(default_factory=dict, description="file name -> sha256 hex digest")
    references: list[str] = Field(default_factory=list)
    changelog: list[str] = Field(default_factory=list)
