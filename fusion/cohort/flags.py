"""Diagnosis and screening flags of a whole cohort frame at once: `fusion.rules`, vectorised.

The thresholds and their sources are those of `fusion/data/thresholds.json` (read through
`fusion.rules.thresholds()`); the rules are the same as the one-patient rules of `fusion.rules` (a test
checks, row by row, that `diagnose` and `screening_flags` agree with these columns):

- diagnosis, by the first available source: DXA T-score (WHO 1994), ACR QCT vBMD, the model's calibrated
  osteoporosis classifier (when the model ships one, the patient has no DXA and no vBMD, has at least one
  CT input of the classifier and every required input), L1 attenuation (Pickhardt 2013), else
  "undetermined". Unlike a single assessment, a cohort row whose classifier inputs are out of range
  falls through to the next source instead of failing.
- screening flags: one boolean column `flag_<CODE>` per code of the thresholds file, and `flags`, the
  codes that fired joined by ";" (in the thresholds file's order), for readers that want one column.

Inputs are the raw (not imputed) canonical columns: `dxa_t_score_min`, `vbmd_l1_l2_mg_cm3`, `l1_hu`,
`recent_fracture_2y`, `genant_grade_max` (the worst Genant grade of the measured levels, a column of the
`cohort features` table), and the predicted 10-year risks.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from fusion.artifacts import LoadedModel
from fusion.features import IMAGING_SUMMARY_FEATURES, LEVEL_FEATURES, frame_features
from fusion.rules import DIAGNOSIS_CLASSES, thresholds

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
FLAG_PREFIX: Final = "flag_"
GENANT_COLUMN: Final = "genant_grade_max"
_IMAGING: Final = frozenset(IMAGING_SUMMARY_FEATURES) | frozenset(LEVEL_FEATURES)
METHODS: Final = ("dxa_t_score_who", "qct_vbmd_acr", "classifier", "ct_l1_hu_thresholds", "none")
CATEGORIES: Final = ("normal", "osteopenia", "osteoporosis", "undetermined")


def flag_codes() -> tuple[str, ...]:
    """Every screening-flag code, in the thresholds file's order."""
    return tuple(thresholds().flags)


def flag_column(code: str) -> str:
    return f"{FLAG_PREFIX}{code}"


def _column(frame: pd.DataFrame, name: str) -> FloatArray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return frame_features(frame, [name])[:, 0]


def _three_way(values: FloatArray, low: BoolArray, middle: BoolArray) -> npt.NDArray[np.object_]:
    """'osteoporosis' where `low`, 'osteopenia' where `middle`, else 'normal' (for observed values)."""
    return np.where(low, "osteoporosis", np.where(middle, "osteopenia", "normal")).astype(object)


def screening_flag_frame(
    frame: pd.DataFrame, *, risk_mof_10y: FloatArray | None = None, risk_hip_10y: FloatArray | None = None
) -> pd.DataFrame:
    """`flag_<CODE>` boolean columns and `flags` (codes joined by ';'), one row per row of `frame`."""
    th = thresholds()
    n = len(frame)
    t = _column(frame, "dxa_t_score_min")
    vbmd = _column(frame, "vbmd_l1_l2_mg_cm3")
    hu = _column(frame, "l1_hu")
    recent = _column(frame, "recent_fracture_2y")
    grade = _column(frame, GENANT_COLUMN)
    mof = np.full(n, np.nan) if risk_mof_10y is None else np.asarray(risk_mof_10y, dtype=np.float64)
    hip = np.full(n, np.nan) if risk_hip_10y is None else np.asarray(risk_hip_10y, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        fired: dict[str, BoolArray] = {
            "DXA_OSTEOPOROSIS": t <= th.t_osteoporosis,
            "DXA_OSTEOPENIA": (t > th.t_osteoporosis) & (t < th.t_normal),
            "ACR_VBMD_OSTEOPOROSIS": vbmd < th.vbmd_osteoporosis_below,
            "ACR_VBMD_LOW_BONE_DENSITY": (vbmd >= th.vbmd_osteoporosis_below) & (vbmd <= th.vbmd_normal_above),
            "PROBABLE_OSTEOPOROSIS": hu <= th.hu_probable,
            "REFER_DXA": hu <= th.hu_refer,
            "SUSPECTED_VERTEBRAL_FRACTURE": grade >= th.genant_grade,
            "IMMINENT_FRACTURE_RISK": recent == 1,
            "HIGH_10Y_MOF_RISK": mof >= th.mof_10y,
            "HIGH_10Y_HIP_RISK": hip >= th.hip_10y,
        }
    codes = flag_codes()
    unknown = sorted(set(codes) - set(fired))
    if unknown:  # a code added to the data file needs its rule here and in fusion.rules
        raise NotImplementedError(f"no vectorised rule for flag codes {unknown}")
    matrix = np.column_stack([fired[c] for c in codes]) if codes else np.zeros((n, 0), dtype=bool)
    out = {flag_column(c): matrix[:, j] for j, c in enumerate(codes)}
    out["flags"] = _joined(matrix, codes)
    return pd.DataFrame(out, index=frame.index)


def _joined(matrix: BoolArray, codes: tuple[str, ...]) -> npt.NDArray[np.object_]:
    """Per row, the codes of its True columns joined by ';' (computed once per distinct pattern)."""
    n = matrix.shape[0]
    if n == 0 or not codes:
        return np.full(n, "", dtype=object)
    weights = np.left_shift(np.int64(1), np.arange(len(codes), dtype=np.int64))
    keys = matrix.astype(np.int64) @ weights
    patterns, inverse = np.unique(keys, return_inverse=True)
    labels = np.array([";".join(c for j, c in enumerate(codes) if (int(p) >> j) & 1) for p in patterns], dtype=object)
    out: npt.NDArray[np.object_] = labels[inverse.reshape(-1)]
    return out


def _classifier_probabilities(
    model: LoadedModel, frame: pd.DataFrame, candidates: BoolArray
) -> tuple[BoolArray, FloatArray, list[str]]:
    """(rows the classifier scored, their (n, K) probabilities (NaN elsewhere), class names)."""
    component = model.diagnosis
    n = len(frame)
    if component is None:
        return np.zeros(n, dtype=bool), np.full((n, 0), np.nan), []
    classes = [str(c) for c in component.classifier.classes_]
    probs = np.full((n, len(classes)), np.nan)
    if not candidates.any():
        return np.zeros(n, dtype=bool), probs, classes
    names = list(component.plan.names)
    raw = frame_features(frame, names)
    observed = ~np.isnan(raw)
    imaging = [j for j, name in enumerate(names) if name in _IMAGING]
    has_ct = observed[:, imaging].any(axis=1) if imaging else np.zeros(n, dtype=bool)
    required_ok = observed[:, component.plan.required].all(axis=1)
    eligible = candidates & has_ct & required_ok
    if not eligible.any():
        return eligible, probs, classes
    x, _, reasons = component.plan.matrix(raw[eligible])
    ok = np.array([r is None for r in reasons], dtype=bool)
    rows = np.flatnonzero(eligible)[ok]
    if rows.size:
        probs[rows] = component.classifier.predict_proba(component.design.transform(x[ok]))
    scored = np.zeros(n, dtype=bool)
    scored[rows] = True
    return scored, probs, classes


def diagnosis_frame(model: LoadedModel | None, frame: pd.DataFrame) -> pd.DataFrame:
    """`diagnosis_category`, `diagnosis_method` and, when the classifier was used, `diagnosis_p_<class>`."""
    th = thresholds()
    n = len(frame)
    t = _column(frame, "dxa_t_score_min")
    vbmd = _column(frame, "vbmd_l1_l2_mg_cm3")
    hu = _column(frame, "l1_hu")
    has_t, has_v, has_hu = ~np.isnan(t), ~np.isnan(vbmd), ~np.isnan(hu)
    with np.errstate(invalid="ignore"):
        by_dxa = _three_way(t, t <= th.t_osteoporosis, t < th.t_normal)
        by_acr = _three_way(vbmd, vbmd < th.vbmd_osteoporosis_below, vbmd <= th.vbmd_normal_above)
        by_hu = _three_way(hu, hu <= th.hu_probable, hu <= th.hu_refer)
    scored, probs, classes = (
        _classifier_probabilities(model, frame, ~has_t & ~has_v)
        if model is not None
        else (np.zeros(n, dtype=bool), np.full((n, 0), np.nan), [])
    )
    by_classifier = np.full(n, "undetermined", dtype=object)
    if scored.any():
        if set(classes) >= set(DIAGNOSIS_CLASSES):
            ordered = np.column_stack([probs[:, classes.index(c)] for c in DIAGNOSIS_CLASSES])
            best = np.argmax(np.where(np.isnan(ordered), -np.inf, ordered), axis=1)
            by_classifier = np.array(DIAGNOSIS_CLASSES, dtype=object)[best]
        elif "osteoporosis" in classes:
            p = probs[:, classes.index("osteoporosis")]
            with np.errstate(invalid="ignore"):
                by_classifier = np.where(p >= 0.5, "osteoporosis", "undetermined").astype(object)
    category = np.select(
        [has_t, has_v, scored, has_hu], [by_dxa, by_acr, by_classifier, by_hu], default="undetermined"
    ).astype(object)
    method = np.select([has_t, has_v, scored, has_hu], list(METHODS[:4]), default=METHODS[4]).astype(object)
    out: dict[str, object] = {
        "diagnosis_category": pd.Categorical(category, categories=list(CATEGORIES)),
        "diagnosis_method": pd.Categorical(method, categories=list(METHODS)),
    }
    for k, name in enumerate(classes):
        column = np.where(scored, probs[:, k], np.nan)
        out[f"diagnosis_p_{name}"] = column
    return pd.DataFrame(out, index=frame.index)
