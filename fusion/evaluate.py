"""Evaluate predicted risks on a cohort with outcomes: discrimination, prediction error, calibration.

    report = evaluate(predictions, cohort, horizons=(1, 2, 5, 10), report_dir=Path("report"))

`predictions` holds `patient_id` and, per outcome and horizon, the predicted cumulative incidence
`risk_mof_{h}y` / `risk_hip_{h}y` (death competing; optional `_lo`/`_hi` 95% interval columns), as
`LoadedModel.predict_frame` and `osteorisk predict` write them; or, for a classifier, `probability`
(of the positive class of the model's target column). `cohort` is a canonical cohort table with
`time_years`/`event` and `hip_time_years`/`hip_event` (fusion.cohort_table).

For each outcome (MOF: event 1 of `event`; hip: event 1 of `hip_event`; death competing) and horizon:
Harrell's and Uno's C truncated at the horizon (cumulative-incidence concordance, Wolbers 2009),
time-dependent AUC (Blanche 2013, controls include competing events), IPCW Brier score with its
null-model reference and IPA, calibration slope and intercept, ICI/E50/E90/Emax of a smoothed
calibration curve, and observed (Aalen-Johansen) over expected; per outcome the overall C with the
10-year risk and the integrated Brier score over the horizons available in 1-10 years. When the cohort
carries the generator's truth (`true_risk_*`, synthetic cohorts), the oracle's figures are reported
beside the model's, with the coverage of the 95% intervals. Screening flags (L1 attenuation against
DXA osteoporosis, thresholds from fusion/data/thresholds.json) are evaluated whenever the cohort has both.
Every formula and its source: `fusion.metrics`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from fusion.cohort_table import true_risk_column, validate_cohort
from fusion.errors import CohortError
from fusion.metrics import (
    binary_calibration,
    calibration_curve,
    calibration_slope,
    calibration_table,
    censoring_survival,
    harrell_c,
    integrated_brier_score,
    kaplan_meier,
    observed_expected,
    reliability_curve,
    roc_auc,
    scaled_brier,
    sensitivity_specificity,
    time_dependent_auc,
    uno_c,
)
from fusion.metrics.survival import CalibrationCurve

EVALUATION_SCHEMA: Final = "osteorisk.evaluation/1"
DEFAULT_EVALUATION_HORIZONS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)
OutcomePrefix = Literal["mof", "hip"]
OUTCOME_COLUMNS: dict[OutcomePrefix, tuple[str, str, str]] = {
    "mof": ("major_osteoporotic_fracture", "time_years", "event"),
    "hip": ("hip_fracture", "hip_time_years", "hip_event"),
}
MIN_CASES = 5
"""Fewer cases than this at a horizon: discrimination and calibration are reported as null (too few)."""

_RISK_COLUMN = re.compile(r"^risk_(mof|hip)_([0-9]+(?:\.[0-9]+)?)y$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)


def _clean(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class HorizonMetrics(_Model):
    """Every figure of one outcome at one horizon (None: not estimable, e.g. too few cases)."""

    horizon_years: float
    n_cases: int = Field(description="outcome events by the horizon")
    n_competing: int = Field(description="deaths (competing events) by the horizon")
    n_event_free: int = Field(description="followed beyond the horizon without an event")
    n_censored: int = Field(description="censored before the horizon (status unknown)")
    harrell_c: float | None = Field(description="Harrell's C, CIF concordance (Wolbers), truncated at the horizon")
    uno_c: float | None = Field(description="Uno's IPCW C, CIF concordance, truncated at the horizon")
    auc: float | None = Field(description="cumulative/dynamic AUC with IPCW (Blanche 2013, definition 2)")
    brier: float | None
    brier_null: float | None = Field(description="Brier score of the marginal Aalen-Johansen risk")
    ipa: float | None = Field(description="index of prediction accuracy, 1 - brier / brier_null")
    calibration_slope: float | None
    calibration_intercept: float | None
    ici: float | None
    e50: float | None
    e90: float | None
    emax: float | None
    observed: float | None = Field(description="Aalen-Johansen cumulative incidence")
    observed_ci95: tuple[float, float] | None
    expected: float | None = Field(description="mean predicted cumulative incidence")
    oe_ratio: float | None
    oe_ci95: tuple[float, float] | None
    interval_coverage: float | None = Field(
        default=None, description="fraction of true risks inside the predicted 95% interval (synthetic truth only)"
    )
    mean_interval_width: float | None = None
    calibration_plot: str | None = None


class OutcomeMetrics(_Model):
    outcome: str
    prefix: OutcomePrefix
    predictor: str = Field(description="'model' or 'oracle' (the generator's true risks)")
    n: int
    n_events: int
    n_competing: int
    c_index: float | None = Field(description="Harrell's C (CIF concordance, Wolbers) of the longest-horizon risk")
    c_index_cause_specific: float | None = Field(description="Harrell's C with competing events as censoring")
    c_index_horizon_years: float
    integrated_brier: float | None
    integrated_brier_range: tuple[float, float] | None
    horizons: list[HorizonMetrics]


class ThresholdMetrics(_Model):
    threshold: float
    positive: Literal["above", "at_or_below"]
    sensitivity: float | None
    specificity: float | None
    ppv: float | None
    npv: float | None
    sensitivity_ci95: tuple[float, float] | None
    specificity_ci95: tuple[float, float] | None
    source: str = ""


class ReliabilityBin(_Model):
    n: int
    predicted: float
    observed: float
    observed_lo: float
    observed_hi: float


class ClassifierMetrics(_Model):
    """A binary prediction (probability or score) against a 0/1 label."""

    name: str
    label: str
    score: str
    n: int
    n_positive: int
    auc: float | None
    brier: float | None = None
    calibration_slope: float | None = None
    calibration_intercept: float | None = None
    ici: float | None = None
    e90: float | None = None
    thresholds: list[ThresholdMetrics] = Field(default_factory=list)
    reliability: list[ReliabilityBin] = Field(default_factory=list)
    plot: str | None = None


class CohortSummary(_Model):
    n_rows: int
    n_evaluated: int
    n_unscored: int
    median_follow_up_years: float | None = Field(description="reverse Kaplan-Meier median potential follow-up")
    has_truth: bool


class ModelSummary(_Model):
    id: str
    version: str = ""
    kind: str = ""
    sha256: str = ""
    trained_on: str = ""


class EvaluationReport(_Model):
    """Every figure of an evaluation, per outcome and horizon (JSON: `metrics.json`)."""

    schema_id: Literal["osteorisk.evaluation/1"] = Field(default=EVALUATION_SCHEMA, alias="schema")
    created: datetime
    model: ModelSummary
    cohort: CohortSummary
    survival: list[OutcomeMetrics] = Field(default_factory=list)
    oracle: list[OutcomeMetrics] = Field(default_factory=list)
    classification: list[ClassifierMetrics] = Field(default_factory=list)
    flags: list[ClassifierMetrics] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def outcome(self, prefix: OutcomePrefix, *, oracle: bool = False) -> OutcomeMetrics:
        for item in self.oracle if oracle else self.survival:
            if item.prefix == prefix:
                return item
        raise KeyError(f"no {'oracle ' if oracle else ''}metrics for outcome {prefix!r}")

    def summary_table(self) -> pd.DataFrame:
        """One row per predictor, outcome and horizon with the headline figures."""
        rows = []
        for block in (self.survival, self.oracle):
            for item in block:
                for h in item.horizons:
                    rows.append(
                        {
                            "predictor": item.predictor,
                            "outcome": item.prefix,
                            "horizon": h.horizon_years,
                            "cases": h.n_cases,
                            "harrell_c": h.harrell_c,
                            "uno_c": h.uno_c,
                            "auc": h.auc,
                            "brier": h.brier,
                            "ipa": h.ipa,
                            "slope": h.calibration_slope,
                            "ici": h.ici,
                            "observed": h.observed,
                            "expected": h.expected,
                            "o/e": h.oe_ratio,
                        }
                    )
        return pd.DataFrame(rows)


# --- predictions ---------------------------------------------------------------------------------------


def prediction_horizons(predictions: pd.DataFrame, prefix: OutcomePrefix) -> list[float]:
    """Horizons with a `risk_{prefix}_{h}y` column, ascending."""
    found = []
    for column in predictions.columns:
        match = _RISK_COLUMN.match(str(column))
        if match and match.group(1) == prefix:
            found.append(float(match.group(2)))
    return sorted(found)


def _risk_name(prefix: OutcomePrefix, horizon: float) -> str:
    return f"risk_{prefix}_{horizon:g}y"


def oracle_predictions(cohort: pd.DataFrame) -> pd.DataFrame:
    """The generator's true risks as predictions (`true_risk_mof_10y` -> `risk_mof_10y`): the oracle
    that no model can beat except by chance. Raises CohortError when the cohort has no truth columns."""
    columns = {c: "risk_" + c[len("true_risk_") :] for c in cohort.columns if str(c).startswith("true_risk_")}
    if not columns:
        raise CohortError(
            "the cohort has no true_risk_* columns: generate it with `osteorisk synth cohort --truth`",
            reason="NO_TRUTH",
        )
    frame = cohort[["patient_id", *columns]].rename(columns=columns)
    return frame.reset_index(drop=True)


def _join(predictions: pd.DataFrame, cohort: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    if "patient_id" not in predictions.columns:
        raise CohortError("predictions need a patient_id column to join the cohort", reason="MISSING_COLUMN")
    keys = ["patient_id"]
    if "index_date" in predictions.columns and "index_date" in cohort.columns:
        keys.append("index_date")
    pred = predictions.copy()
    pred["patient_id"] = pred["patient_id"].astype(str)
    if pred.duplicated(subset=keys).any():
        raise CohortError(f"predictions repeat a ({', '.join(keys)}) key", reason="DUPLICATE_ROW")
    overlap = [c for c in pred.columns if c in cohort.columns and c not in keys]
    joined = cohort.merge(pred.drop(columns=overlap), on=keys, how="left", validate="one_to_one", indicator=True)
    warnings = []
    unmatched = int((joined["_merge"] == "left_only").sum())
    if unmatched == len(joined):
        raise CohortError("no prediction row matches a cohort patient_id", reason="NO_MATCH")
    if unmatched:
        warnings.append(f"{unmatched} of {len(joined)} cohort rows have no prediction and are not evaluated")
    return joined.drop(columns="_merge"), warnings


# --- survival ------------------------------------------------------------------------------------------


def _counts(time: np.ndarray, event: np.ndarray, horizon: float) -> tuple[int, int, int, int]:
    early = time <= horizon
    return (
        int(np.sum(early & (event == 1))),
        int(np.sum(early & (event == 2))),
        int(np.sum(~early)),
        int(np.sum(early & (event == 0))),
    )


def _horizon_metrics(
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    horizon: float,
    *,
    censoring: Any,
    truth: np.ndarray | None,
    lo: np.ndarray | None,
    hi: np.ndarray | None,
) -> tuple[HorizonMetrics, pd.DataFrame | None, CalibrationCurve | None]:
    cases, competing, event_free, censored = _counts(time, event, horizon)
    values: dict[str, Any] = {}
    table: pd.DataFrame | None = None
    curve: CalibrationCurve | None = None
    if event_free == 0:
        pass  # nobody followed this long: every figure stays None
    elif cases >= MIN_CASES:
        values["harrell_c"] = harrell_c(time, event, risk, horizon=horizon).c
        values["uno_c"] = uno_c(time, event, risk, horizon=horizon, censoring=censoring).c
        values["auc"] = time_dependent_auc(time, event, risk, horizon=horizon, censoring=censoring)
        brier, null, ipa = scaled_brier(time, event, risk, horizon=horizon, censoring=censoring)
        values.update(brier=brier, brier_null=null, ipa=ipa)
        fit = calibration_slope(time, event, risk, horizon=horizon, censoring=censoring)
        values.update(calibration_slope=fit.slope, calibration_intercept=fit.intercept)
        curve = calibration_curve(time, event, risk, horizon=horizon, censoring=censoring)
        values.update(ici=curve.ici, e50=curve.e50, e90=curve.e90, emax=curve.emax)
        table = calibration_table(time, event, risk, horizon=horizon)
    if event_free > 0:
        oe = observed_expected(time, event, risk, horizon=horizon)
        values.update(
            observed=oe.observed,
            observed_ci95=oe.observed_ci,
            expected=oe.expected,
            oe_ratio=oe.ratio,
            oe_ci95=oe.ratio_ci,
        )
        if cases < MIN_CASES and "brier" not in values:
            brier, null, ipa = scaled_brier(time, event, risk, horizon=horizon, censoring=censoring)
            values.update(brier=brier, brier_null=null, ipa=ipa)
    coverage = width = None
    if lo is not None and hi is not None:
        width = float(np.mean(hi - lo))
        if truth is not None:
            coverage = float(np.mean((truth >= lo - 1e-12) & (truth <= hi + 1e-12)))
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, tuple):
            pair = (_clean(value[0]), _clean(value[1]))
            cleaned[key] = pair if None not in pair else None
        else:
            cleaned[key] = _clean(value)
    defaults = dict.fromkeys(
        ("harrell_c", "uno_c", "auc", "brier", "brier_null", "ipa", "calibration_slope", "calibration_intercept",
         "ici", "e50", "e90", "emax", "observed", "observed_ci95", "expected", "oe_ratio", "oe_ci95"),
    )  # fmt: skip
    metrics = HorizonMetrics(
        horizon_years=horizon,
        n_cases=cases,
        n_competing=competing,
        n_event_free=event_free,
        n_censored=censored,
        interval_coverage=coverage,
        mean_interval_width=width,
        **{**defaults, **cleaned},
    )
    return metrics, table, curve


def _outcome_metrics(
    frame: pd.DataFrame,
    prefix: OutcomePrefix,
    horizons: Sequence[float],
    *,
    predictor: str,
    truth_frame: pd.DataFrame | None,
    plots: dict[str, tuple[pd.DataFrame, CalibrationCurve | None, str]],
) -> OutcomeMetrics | None:
    outcome, time_column, event_column = OUTCOME_COLUMNS[prefix]
    available = prediction_horizons(frame, prefix)
    chosen = [h for h in available if any(abs(h - r) < 1e-9 for r in horizons)]
    if not chosen:
        return None
    time = frame[time_column].to_numpy(dtype=np.float64)
    event = frame[event_column].to_numpy(dtype=np.float64).astype(np.int64)
    censoring = censoring_survival(time, event)
    results = []
    for h in chosen:
        name = _risk_name(prefix, h)
        risk = frame[name].to_numpy(dtype=np.float64)
        lo = frame[name + "_lo"].to_numpy(dtype=np.float64) if name + "_lo" in frame.columns else None
        hi = frame[name + "_hi"].to_numpy(dtype=np.float64) if name + "_hi" in frame.columns else None
        truth_name = true_risk_column(prefix, h)
        truth = (
            truth_frame[truth_name].to_numpy(dtype=np.float64)
            if truth_frame is not None and truth_name in truth_frame.columns
            else None
        )
        metrics, table, curve = _horizon_metrics(time, event, risk, h, censoring=censoring, truth=truth, lo=lo, hi=hi)
        if table is not None:
            file_name = f"calibration_{predictor}_{prefix}_{h:g}y.png"
            plots[file_name] = (table, curve, f"{outcome.replace('_', ' ')}, {h:g} years ({predictor})")
            metrics = metrics.model_copy(update={"calibration_plot": file_name})
        results.append(metrics)
    longest = max(chosen)
    longest_risk = frame[_risk_name(prefix, longest)].to_numpy(dtype=np.float64)
    n_events = int(np.sum(event == 1))
    c_index = harrell_c(time, event, longest_risk, horizon=longest).c if n_events >= MIN_CASES else float("nan")
    c_cause = (
        harrell_c(time, event, longest_risk, horizon=longest, competing="censor").c
        if n_events >= MIN_CASES
        else float("nan")
    )
    ibs: float | None = None
    ibs_range: tuple[float, float] | None = None
    grid = [h for h in available if 1.0 - 1e-9 <= h <= 10.0 + 1e-9 and np.any(time > h)]
    if len(grid) >= 2 and n_events >= MIN_CASES:
        matrix = np.column_stack([frame[_risk_name(prefix, h)].to_numpy(dtype=np.float64) for h in grid])
        ibs = _clean(integrated_brier_score(time, event, matrix, grid, censoring=censoring))
        ibs_range = (grid[0], grid[-1])
    return OutcomeMetrics(
        outcome=outcome,
        prefix=prefix,
        predictor=predictor,
        n=len(frame),
        n_events=n_events,
        n_competing=int(np.sum(event == 2)),
        c_index=_clean(c_index),
        c_index_cause_specific=_clean(c_cause),
        c_index_horizon_years=longest,
        integrated_brier=ibs,
        integrated_brier_range=ibs_range,
        horizons=results,
    )


# --- classification and flags ----------------------------------------------------------------------------


def _classifier_metrics(name: str, label_name: str, score_name: str, y: np.ndarray, p: np.ndarray) -> ClassifierMetrics:
    calibration = binary_calibration(y, p)
    bins = reliability_curve(y, p)
    return ClassifierMetrics(
        name=name,
        label=label_name,
        score=score_name,
        n=int(y.size),
        n_positive=int(y.sum()),
        auc=_clean(roc_auc(y, p)),
        brier=_clean(calibration.brier),
        calibration_slope=_clean(calibration.slope),
        calibration_intercept=_clean(calibration.intercept),
        ici=_clean(calibration.ici),
        e90=_clean(calibration.e90),
        thresholds=[_threshold(t, "") for t in sensitivity_specificity(y, p, [0.5])],
        reliability=[
            ReliabilityBin(**{k: row[k] for k in ReliabilityBin.model_fields}) for row in bins.to_dict("records")
        ],
    )


def _threshold(result: Any, source: str) -> ThresholdMetrics:
    def pair(values: tuple[float, float]) -> tuple[float, float] | None:
        a, b = _clean(values[0]), _clean(values[1])
        return (a, b) if a is not None and b is not None else None

    return ThresholdMetrics(
        threshold=result.threshold,
        positive=result.positive,
        sensitivity=_clean(result.sensitivity),
        specificity=_clean(result.specificity),
        ppv=_clean(result.ppv),
        npv=_clean(result.npv),
        sensitivity_ci95=pair(result.sensitivity_ci),
        specificity_ci95=pair(result.specificity_ci),
        source=source,
    )


def _l1_thresholds() -> tuple[list[float], str]:
    """Pickhardt 2013 L1 thresholds from the rules' data file (fusion/data/thresholds.json)."""
    from importlib import resources

    raw = json.loads(resources.files("fusion").joinpath("data/thresholds.json").read_text(encoding="utf-8"))
    section = raw["l1_hu"]
    source = str(raw["sources"][section["source"]]["short"])
    values = [float(section["probable_osteoporosis_at_or_below"]), float(section["refer_dxa_at_or_below"])]
    return values, source


def flag_metrics(cohort: pd.DataFrame) -> list[ClassifierMetrics]:
    """L1 attenuation thresholds (<= 110 HU probable osteoporosis, <= 160 HU refer for DXA; Pickhardt 2013)
    against DXA osteoporosis (T <= -2.5), on the rows with both; empty when the cohort lacks either."""
    if "l1_hu" not in cohort.columns or "osteoporosis" not in cohort.columns:
        return []
    both = cohort["l1_hu"].notna() & cohort["osteoporosis"].notna()
    if int(both.sum()) < 2:
        return []
    y = cohort.loc[both, "osteoporosis"].to_numpy(dtype=np.float64).astype(np.int64)
    hu = cohort.loc[both, "l1_hu"].to_numpy(dtype=np.float64)
    thresholds, source = _l1_thresholds()
    results = sensitivity_specificity(y, hu, thresholds, positive="at_or_below")
    return [
        ClassifierMetrics(
            name="l1_hu_flags",
            label="osteoporosis",
            score="l1_hu",
            n=int(y.size),
            n_positive=int(y.sum()),
            auc=_clean(roc_auc(y, hu, positive="at_or_below")),
            thresholds=[_threshold(r, source) for r in results],
        )
    ]


# --- the report ----------------------------------------------------------------------------------------


def _follow_up_median(time: np.ndarray, event: np.ndarray) -> float | None:
    km = kaplan_meier(time, (event == 0).astype(np.int64))  # reverse Kaplan-Meier
    below = np.flatnonzero(km.values <= 0.5)
    return float(km.times[below[0]]) if below.size else None


def evaluate(
    predictions: pd.DataFrame,
    cohort: pd.DataFrame,
    *,
    horizons: Sequence[float] = DEFAULT_EVALUATION_HORIZONS,
    report_dir: Path | None = None,
    model: ModelSummary | None = None,
    target: str | None = None,
) -> EvaluationReport:
    """Evaluate `predictions` against the outcomes of `cohort` (module docstring).

    - Survival predictions: `risk_{mof|hip}_{h}y` columns; metrics at each of `horizons` that has a column.
    - Classifier predictions: a `probability` column evaluated against the cohort's 0/1 `target` column.
    - `report_dir`: write metrics.json, calibration PNGs and README.md there.
    Raises CohortError when the cohort lacks the outcome columns the predictions need.
    """
    horizon_list = [float(h) for h in horizons]
    if not horizon_list or any(not math.isfinite(h) or h <= 0 for h in horizon_list):
        raise CohortError(f"horizons must be positive years, got {list(horizons)}", reason="BAD_HORIZON")
    has_survival = any(prediction_horizons(predictions, p) for p in OUTCOME_COLUMNS)
    is_classifier = "probability" in predictions.columns
    if not has_survival and not is_classifier:
        raise CohortError(
            "predictions have no risk_mof_<h>y / risk_hip_<h>y or probability column", reason="MISSING_COLUMN"
        )
    require: list[Any] = ["features"]
    if has_survival:
        require += [u for p, u in (("mof", "mof"), ("hip", "hip")) if prediction_horizons(predictions, p)]  # type: ignore[arg-type]
    table = validate_cohort(cohort, require=tuple(require))
    joined, warnings = _join(predictions, table)
    risk_columns = [c for c in joined.columns if _RISK_COLUMN.match(str(c))]
    scored_columns = risk_columns + (["probability"] if is_classifier else [])
    unscored = joined[scored_columns].isna().any(axis=1).to_numpy()
    if unscored.any():
        warnings.append(
            f"{int(unscored.sum())} of {len(joined)} rows have no prediction (e.g. refused inputs) "
            "and are not evaluated"
        )
    frame = joined.loc[~unscored].reset_index(drop=True)
    if frame.empty:
        raise CohortError("no row has a complete prediction to evaluate", reason="NO_PREDICTIONS")
    bad = (frame[scored_columns] < 0) | (frame[scored_columns] > 1)
    if bad.to_numpy().any():
        column = str(bad.any()[bad.any()].index[0])
        raise CohortError(f"prediction column {column!r} holds values outside [0, 1]", reason="BAD_PREDICTION")

    truth_columns = [c for c in frame.columns if str(c).startswith("true_risk_")]
    truth_frame = frame[truth_columns] if truth_columns else None
    plots: dict[str, tuple[pd.DataFrame, CalibrationCurve | None, str]] = {}
    survival: list[OutcomeMetrics] = []
    oracle: list[OutcomeMetrics] = []
    is_oracle = model is not None and model.id == "oracle"
    predictor = "oracle" if is_oracle else "model"
    if has_survival:
        oracle_frame = None
        if truth_frame is not None and not is_oracle:
            model_columns = [c for c in frame.columns if str(c).startswith("risk_")]
            oracle_frame = frame.drop(columns=model_columns).join(oracle_predictions(frame).drop(columns="patient_id"))
        for prefix in OUTCOME_COLUMNS:
            result = _outcome_metrics(
                frame, prefix, horizon_list, predictor=predictor, truth_frame=truth_frame, plots=plots
            )
            if result is None:
                continue
            survival.append(result)
            if oracle_frame is not None:
                reference = _outcome_metrics(
                    oracle_frame, prefix, horizon_list, predictor="oracle", truth_frame=None, plots=plots
                )
                if reference is not None:
                    oracle.append(reference)

    classification: list[ClassifierMetrics] = []
    if is_classifier:
        if target is None or target not in frame.columns:
            raise CohortError(
                f"a classifier's predictions need the label column {target!r} in the cohort", reason="MISSING_COLUMN"
            )
        labelled = frame[target].notna().to_numpy()
        y = frame.loc[labelled, target].to_numpy(dtype=np.float64)
        if not np.all((y == 0) | (y == 1)):
            raise CohortError(f"label column {target!r} must hold 0/1", reason="BAD_LABEL")
        p = frame.loc[labelled, "probability"].to_numpy(dtype=np.float64)
        metrics = _classifier_metrics("classifier", target, "probability", y.astype(np.int64), p)
        bins = reliability_curve(y.astype(np.int64), p)
        plots["reliability_classifier.png"] = (bins, None, f"{target}: reliability")
        classification.append(metrics.model_copy(update={"plot": "reliability_classifier.png"}))

    first_outcome = next(iter(OUTCOME_COLUMNS.values()))
    follow_up = (
        _follow_up_median(
            table[first_outcome[1]].to_numpy(dtype=np.float64), table[first_outcome[2]].to_numpy(dtype=np.float64)
        )
        if first_outcome[1] in table.columns and first_outcome[2] in table.columns
        else None
    )
    report = EvaluationReport(
        created=datetime.now(UTC).replace(microsecond=0),
        model=model or ModelSummary(id="predictions"),
        cohort=CohortSummary(
            n_rows=len(table),
            n_evaluated=len(frame),
            n_unscored=len(table) - len(frame),
            median_follow_up_years=_clean(follow_up),
            has_truth=truth_frame is not None,
        ),
        survival=survival,
        oracle=oracle,
        classification=classification,
        flags=flag_metrics(frame),
        warnings=warnings,
    )
    if report_dir is not None:
        write_report(report, report_dir, plots)
    return report


def write_report(
    report: EvaluationReport,
    report_dir: Path,
    plots: dict[str, tuple[pd.DataFrame, CalibrationCurve | None, str]],
) -> list[Path]:
    """metrics.json, one calibration PNG per outcome/horizon/predictor, and README.md; returns the paths."""
    from fusion.plots import plot_calibration, use_headless_backend

    use_headless_backend()
    import matplotlib.pyplot as plt

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    written = []
    metrics_path = report_dir / "metrics.json"
    metrics_path.write_text(report.model_dump_json(indent=2, by_alias=True) + "\n", encoding="utf-8")
    written.append(metrics_path)
    for file_name, (table, curve, title) in plots.items():
        figure, ax = plt.subplots(figsize=(4.8, 4.4), dpi=110)
        try:
            plot_calibration(ax, table, curve=curve, title=title, label="observed")
            figure.tight_layout()
            figure.savefig(report_dir / file_name)
        finally:
            plt.close(figure)
        written.append(report_dir / file_name)
    readme = report_dir / "README.md"
    readme.write_text(render_markdown(report), encoding="utf-8")
    written.append(readme)
    return written


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_text(report: EvaluationReport) -> str:
    """A readable plain-text table of the headline figures (what the CLI prints)."""
    lines = [
        f"model {report.model.id} {report.model.version}".rstrip()
        + f" | cohort {report.cohort.n_evaluated} of {report.cohort.n_rows} rows evaluated",
    ]
    header = f"{'predictor':<9} {'outcome':<4} {'h':>4} {'cases':>6} {'C':>6} {'Uno C':>6} {'AUC':>6} "
    header += f"{'Brier':>7} {'IPA':>6} {'slope':>6} {'ICI':>6} {'obs':>6} {'exp':>6} {'O/E':>6}"
    for block in (report.survival, report.oracle):
        for item in block:
            if len(lines) == 1:
                lines.append(header)
            c_line = f"{item.predictor:<9} {item.prefix:<4} C-index {_fmt(item.c_index)} "
            c_line += f"(CIF, {item.c_index_horizon_years:g}-year risk)"
            c_line += f", cause-specific {_fmt(item.c_index_cause_specific)}, IBS {_fmt(item.integrated_brier, 4)}"
            for h in item.horizons:
                lines.append(
                    f"{item.predictor:<9} {item.prefix:<4} {h.horizon_years:>4g} {h.n_cases:>6d} "
                    f"{_fmt(h.harrell_c):>6} {_fmt(h.uno_c):>6} {_fmt(h.auc):>6} "
                    f"{_fmt(h.brier, 4):>7} {_fmt(h.ipa):>6} "
                    f"{_fmt(h.calibration_slope, 2):>6} {_fmt(h.ici):>6} {_fmt(h.observed):>6} {_fmt(h.expected):>6} "
                    f"{_fmt(h.oe_ratio, 2):>6}"
                )
            lines.append(c_line)
    for clf in report.classification + report.flags:
        line = f"{clf.name}: {clf.label} ~ {clf.score}, n {clf.n} ({clf.n_positive} positive), AUC {_fmt(clf.auc)}"
        if clf.brier is not None:
            line += f", Brier {_fmt(clf.brier, 4)}, slope {_fmt(clf.calibration_slope, 2)}, ICI {_fmt(clf.ici)}"
        lines.append(line)
        for t in clf.thresholds:
            rule = f"{clf.score} {'<=' if t.positive == 'at_or_below' else '>'} {t.threshold:g}"
            lines.append(f"  {rule}: sensitivity {_fmt(t.sensitivity)}, specificity {_fmt(t.specificity)}")
    lines.extend(f"warning: {w}" for w in report.warnings)
    return "\n".join(lines)


def render_markdown(report: EvaluationReport) -> str:
    """README.md of a report directory: what was evaluated, the headline table, the plots."""
    parts = [
        "# Evaluation report",
        "",
        f"- model: `{report.model.id}` {report.model.version} ({report.model.kind or 'predictions'})"
        + (f", sha256 `{report.model.sha256[:16]}...`" if report.model.sha256 else ""),
        f"- cohort: {report.cohort.n_evaluated} of {report.cohort.n_rows} rows evaluated; median potential "
        f"follow-up {_fmt(report.cohort.median_follow_up_years, 1)} years; synthetic truth: {report.cohort.has_truth}",
        f"- created: {report.created.isoformat()}; all figures in `metrics.json` (schema {EVALUATION_SCHEMA})",
        "",
        "Definitions (fusion/metrics): C = Harrell's C, cumulative-incidence concordance truncated at the horizon "
        "(Wolbers 2009); Uno C with IPCW (Uno 2011); AUC = cumulative/dynamic AUC with IPCW, competing events as "
        "controls (Blanche 2013); Brier = IPCW Brier score, IPA = 1 - Brier / null Brier; slope = calibration slope; "
        "ICI = integrated calibration index (Austin 2020); observed = Aalen-Johansen cumulative incidence; "
        "O/E = observed / mean predicted.",
        "",
    ]
    table = report.summary_table()
    if not table.empty:
        columns = list(table.columns)
        parts.append("| " + " | ".join(columns) + " |")
        parts.append("|" + "---|" * len(columns))
        for row in table.to_dict("records"):
            cells = [
                _fmt(v, 4 if k == "brier" else 3) if isinstance(v, float) or v is None else str(v)
                for k, v in row.items()
            ]
            parts.append("| " + " | ".join(cells) + " |")
        parts.append("")
        for block in (report.survival, report.oracle):
            for item in block:
                parts.append(
                    f"- {item.predictor} {item.prefix}: C-index {_fmt(item.c_index)} "
                    f"(cause-specific {_fmt(item.c_index_cause_specific)}), integrated Brier "
                    f"{_fmt(item.integrated_brier, 4)} over {item.integrated_brier_range or '-'} years"
                )
        parts.append("")
    for clf in report.classification + report.flags:
        parts.append(f"## {clf.name}: {clf.label} ~ {clf.score}")
        parts.append("")
        parts.append(f"n {clf.n}, positive {clf.n_positive}, AUC {_fmt(clf.auc)}")
        for t in clf.thresholds:
            rule = f"{clf.score} {'<=' if t.positive == 'at_or_below' else '>'} {t.threshold:g}"
            parts.append(
                f"- {rule}: sensitivity {_fmt(t.sensitivity)}, specificity {_fmt(t.specificity)}"
                + (f" ({t.source})" if t.source else "")
            )
        parts.append("")
    plots = [h.calibration_plot for b in (report.survival, report.oracle) for i in b for h in i.horizons]
    plots += [c.plot for c in report.classification]
    if any(plots):
        parts.append("## Calibration plots")
        parts.append("")
        parts.extend(f"![{p}]({p})" for p in plots if p)
        parts.append("")
    if report.warnings:
        parts.append("## Warnings")
        parts.append("")
        parts.extend(f"- {w}" for w in report.warnings)
        parts.append("")
    return "\n".join(parts)
