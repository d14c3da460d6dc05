"""One patient's assessment: (ClinicalRecord, BoneFeatures) + a loaded model -> RiskReport.

Order of work: the canonical feature row (`fusion.features`), the model's inputs with imputation and range
checks (`fusion.imputation`), the diagnosis and screening flags (`fusion.rules`, including the treatment
thresholds on the predicted 10-year risks), cumulative incidence with 95% intervals, explanations, and the
provenance: which FHIR resources and which CT series were used, which model (id, version, sha256), what
was missing or imputed. Every warning of the ClinicalRecord and BoneFeatures is carried into the report,
and every imputed input is named in a warning: a risk is never computed from a defaulted input silently.

Everything heavy was precomputed when the model was loaded; this path uses numpy on one row, no pandas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import numpy as np

from clinical.types import ClinicalRecord
from fusion.artifacts import LoadedModel
from fusion.errors import ModelInputError
from fusion.explain import explain_patient
from fusion.features import IMAGING_SUMMARY_FEATURES, LEVEL_FEATURES, feature_row
from fusion.rules import diagnose, screening_flags, thresholds
from fusion.types import (
    DEFAULT_HORIZONS_YEARS,
    OUTCOMES,
    AssessmentInputs,
    Diagnosis,
    ModelRef,
    Outcome,
    Prediction,
    RiskReport,
)
from imaging.types import BoneFeatures

_IMAGING = frozenset(IMAGING_SUMMARY_FEATURES) | frozenset(LEVEL_FEATURES)


def _check_identity(patient_id: str, index_date: date, clinical: ClinicalRecord | None) -> None:
    if clinical is None:
        return
    if clinical.patient_id != patient_id:
        raise ModelInputError(
            f"the clinical record is for another patient than the one assessed ({patient_id!r})",
            reason="PATIENT_MISMATCH",
        )
    if clinical.index_date != index_date:
        raise ModelInputError(
            f"the clinical record is anchored at {clinical.index_date.isoformat()} but the assessment at "
            f"{index_date.isoformat()}: rebuild the record at the assessment's index date",
            reason="INDEX_DATE_MISMATCH",
        )


def _check_outcomes(model: LoadedModel, outcomes: Sequence[str]) -> tuple[Outcome, ...]:
    chosen: list[Outcome] = []
    for name in outcomes:
        if name not in OUTCOMES:
            raise ModelInputError(f"unknown outcome {name!r}; use {' or '.join(OUTCOMES)}", reason="BAD_OUTCOME")
        if name not in model.survival:
            raise ModelInputError(
                f"model {model.card.id} does not predict {name} (it predicts {', '.join(model.outcomes) or 'none'})",
                reason="BAD_OUTCOME",
            )
        if name not in chosen:
            chosen.append(name)  # type: ignore[arg-type]
    return tuple(chosen)


def _diagnosis(
    model: LoadedModel, values: Mapping[str, float | None], warnings: list[str]
) -> tuple[Diagnosis, dict[str, float] | None]:
    t_score = values.get("dxa_t_score_min")
    vbmd = values.get("vbmd_l1_l2_mg_cm3")
    probabilities = None
    component = model.diagnosis
    if t_score is None and vbmd is None and component is not None:
        imaging_inputs = [n for n in component.plan.names if n in _IMAGING]
        has_ct = any(values.get(n) is not None for n in imaging_inputs)
        required_ok = all(values.get(s.name) is not None for s in component.plan.specs if s.required)
        if has_ct and required_ok:
            probabilities, imputed = component.probabilities(values)
            for name, value in imputed:
                warnings.append("DIAGNOSIS_" + component.plan.warning(component.plan.names.index(name), value))
    return (
        diagnose(
            t_score=t_score,
            vbmd_mg_cm3=vbmd,
            l1_hu=values.get("l1_hu"),
            probabilities=probabilities,
            classifier_name=f"calibrated classifier of model {model.card.id} {model.card.version}",
        ),
        probabilities,
    )


def assess(
    model: LoadedModel,
    *,
    patient_id: str,
    index_date: date,
    clinical: ClinicalRecord | None,
    bone: BoneFeatures | None,
    outcomes: Sequence[str] = OUTCOMES,
    horizons: Sequence[float] = DEFAULT_HORIZONS_YEARS,
) -> RiskReport:
    """Diagnosis, screening flags, cumulative incidence with 95% intervals, explanations and provenance.

    `outcomes` defaults to both outcomes, or to those the model predicts.

    Raises `ModelInputError` when an input the model requires is missing, a value is implausible, the
    record belongs to another patient or index date, or an outcome/horizon is outside the model's range.
    """
    if not patient_id:
        raise ModelInputError("patient_id is empty", reason="MISSING_PATIENT_ID")
    _check_identity(patient_id, index_date, clinical)
    # the default asks for every outcome the model predicts; an explicit request must be predictable
    chosen = model.outcomes if outcomes is OUTCOMES else _check_outcomes(model, outcomes)
    row = feature_row(clinical, bone)
    values = row.values
    warnings = list(row.warnings)
    if bone is not None and bone.source.study_date is not None and bone.source.study_date > index_date:
        warnings.append(
            f"CT_AFTER_INDEX_DATE: the CT ({bone.source.study_date.isoformat()}) is after the index date "
            f"({index_date.isoformat()})"
        )
    for name in row.defaulted:
        if name in model.plan.names:
            warnings.append(f"DEFAULTED_INPUT: {name} was imputed by the clinical source, not observed")

    predictions: list[Prediction] = []
    explanations = []
    features_used: dict[str, float] = {}
    imputed: list[str] = []
    risk_10y: dict[str, float] = {}
    if chosen:
        treatment_h = thresholds().treatment_horizon_years
        extra = [treatment_h] if model.card.min_horizon_years <= treatment_h <= model.card.max_horizon_years else []
        all_h = list(dict.fromkeys([float(h) for h in horizons] + extra))
        risk = model.predict_patient(values, all_h)
        imputed = risk.imputed
        for name in imputed:
            j = model.plan.names.index(name)
            warnings.append(model.plan.warning(j, float(risk.x[j])))
        features_used = {n: float(v) for n, v in zip(model.plan.names, risk.x, strict=True)}
        for outcome in model.survival:
            est, lo, hi = risk.risks[outcome]
            if extra:
                risk_10y[outcome] = float(est[all_h.index(extra[0])])
            if outcome not in chosen:
                continue
            for h in (float(x) for x in horizons):
                k = all_h.index(h)
                p, a, b = float(est[k]), float(lo[k]), float(hi[k])
                if not (np.isfinite(a) and np.isfinite(b)):
                    a = b = p
                    warnings.append(f"NO_INTERVAL: model {model.card.id} has no bootstrap replicates")
                predictions.append(Prediction(outcome=outcome, horizon_years=h, probability=p, ci95=(a, b)))
        explanations = explain_patient(model, risk, chosen)
    elif model.classifier is not None:
        raise ModelInputError(
            f"model {model.card.id} is a {model.card.kind} classifier of {model.card.target}: score cohorts with "
            "`osteorisk predict`; assess needs a fracture risk model",
            reason="MODEL_KIND",
        )

    diagnosis, _ = _diagnosis(model, values, warnings)
    grades = (
        {m.level: m.genant_grade for m in bone.levels if m.genant_grade is not None and not m.excluded}
        if bone is not None
        else {}
    )
    recent = values.get("recent_fracture_2y")
    flags = screening_flags(
        t_score=values.get("dxa_t_score_min"),
        vbmd_mg_cm3=values.get("vbmd_l1_l2_mg_cm3"),
        l1_hu=values.get("l1_hu"),
        genant_grades=grades,
        recent_fracture_2y=None if recent is None else bool(recent),
        risk_mof_10y=risk_10y.get("major_osteoporotic_fracture"),
        risk_hip_10y=risk_10y.get("hip_fracture"),
    )
    card = model.card
    missing = [n for n in model.plan.names if values.get(n) is None]
    inputs = AssessmentInputs(
        clinical_sources=list(row.clinical_sources),
        series_uid=bone.source.series_uid if bone is not None else None,
        study_uid=bone.source.study_uid if bone is not None else None,
        segmentation_backend=bone.segmentation.backend if bone is not None else None,
        features_used=features_used,
        imputed=imputed,
        missing=missing,
        clinical=clinical,
        imaging=bone.summary if bone is not None else None,
    )
    return RiskReport(
        patient_id=patient_id,
        index_date=index_date,
        diagnosis=diagnosis,
        screening_flags=flags,
        predictions=predictions,
        explanations=explanations,
        model=ModelRef(
            id=card.id,
            version=card.version,
            sha256=model.sha256,
            trained_on=card.trained_on,
            intended_use=card.intended_use,
        ),
        inputs=inputs,
        warnings=warnings,
    )
