"""Metrics of binary classifiers and screening flags (e.g. osteoporosis by DXA T-score <= -2.5).

`roc_auc` and `sensitivity_specificity` take SCORES (any monotone score, e.g. a probability, or an
attenuation where LOW values are positive: pass `positive="at_or_below"`); the calibration functions
take PROBABILITIES.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from fusion.errors import CohortError
from fusion.metrics._inputs import ArrayLike, as_binary, as_float, as_probabilities, quantile_groups
from fusion.metrics._regression import expit, fit_logistic, logit, rcs_basis, rcs_knots

Direction = Literal["above", "at_or_below"]


def roc_auc(label: ArrayLike, score: ArrayLike, *, positive: Direction = "above") -> float:
    """Area under the ROC curve from SCORES: P(score of a positive > score of a negative) + 1/2 P(tie),
    the Mann-Whitney statistic (Hanley & McNeil, Radiology 1982;143:29-36,
    doi:10.1148/radiology.143.1.7063747). `positive="at_or_below"` for scores where low means positive."""
    y = as_binary("label", label)
    s = as_float("score", score, n=y.size)
    if positive == "at_or_below":
        s = -s
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True)
class ThresholdPerformance:
    """Performance of the rule "positive when score is above / at or below threshold"."""

    threshold: float
    positive: Direction
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    sensitivity_ci: tuple[float, float]
    specificity_ci: tuple[float, float]
    n_positive_label: int
    n_negative_label: int


def _wilson(successes: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (Wilson, J Am Stat Assoc 1927;22:209-212, doi:10.1080/01621459.1927.10502953)."""
    if total == 0:
        return (float("nan"), float("nan"))
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = successes / total
    centre = (p + z**2 / (2 * total)) / (1 + z**2 / total)
    half = z * np.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / (1 + z**2 / total)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def sensitivity_specificity(
    label: ArrayLike,
    score: ArrayLike,
    thresholds: Sequence[float],
    *,
    positive: Direction = "above",
) -> list[ThresholdPerformance]:
    """Sensitivity, specificity, PPV and NPV (with 95% Wilson intervals for the first two) of a threshold
    rule on SCORES, for each threshold. E.g. L1 attenuation <= 110 / <= 160 HU against DXA osteoporosis
    (Pickhardt et al., Ann Intern Med 2013;158:588-595, doi:10.7326/0003-4819-158-8-201304160-00003):
    `sensitivity_specificity(osteoporosis, l1_hu, [110, 160], positive="at_or_below")`."""
    y = as_binary("label", label).astype(bool)
    s = as_float("score", score, n=y.size)
    if positive not in ("above", "at_or_below"):
        raise CohortError(f"positive must be 'above' or 'at_or_below', got {positive!r}", reason="BAD_METRIC_INPUT")
    results = []
    for threshold in thresholds:
        flagged = s <= threshold if positive == "at_or_below" else s > threshold
        tp = int(np.sum(flagged & y))
        fn = int(np.sum(~flagged & y))
        tn = int(np.sum(~flagged & ~y))
        fp = int(np.sum(flagged & ~y))
        nan = float("nan")
        results.append(
            ThresholdPerformance(
                threshold=float(threshold),
                positive=positive,
                sensitivity=tp / (tp + fn) if tp + fn else nan,
                specificity=tn / (tn + fp) if tn + fp else nan,
                ppv=tp / (tp + fp) if tp + fp else nan,
                npv=tn / (tn + fn) if tn + fn else nan,
                sensitivity_ci=_wilson(tp, tp + fn),
                specificity_ci=_wilson(tn, tn + fp),
                n_positive_label=tp + fn,
                n_negative_label=tn + fp,
            )
        )
    return results


@dataclass(frozen=True)
class BinaryCalibration:
    """Calibration of PROBABILITIES of a binary outcome."""

    slope: float
    intercept: float
    """calibration-in-the-large: a in logit P(y) = a + logit(p)."""
    brier: float
    ici: float
    e90: float
    observed_rate: float
    mean_predicted: float


def binary_calibration(label: ArrayLike, probability: ArrayLike, *, n_knots: int = 4) -> BinaryCalibration:
    """Calibration slope and intercept (logistic recalibration, Cox 1958; Van Calster et al., J Clin
    Epidemiol 2016;74:167-176, doi:10.1016/j.jclinepi.2015.12.005), Brier score (Brier, Mon Weather Rev
    1950;78:1-3) and ICI/E90 from a restricted-cubic-spline logistic calibration curve (Austin &
    Steyerberg, Stat Med 2019;38:4051-4065, doi:10.1002/sim.8281) of PROBABILITIES."""
    y = as_binary("label", label).astype(np.float64)
    p = as_probabilities("probability", probability, n=y.size)
    brier = float(np.mean((y - p) ** 2))
    nan = float("nan")
    if y.size == 0 or y.min() == y.max():
        return BinaryCalibration(nan, nan, brier, nan, nan, float(np.mean(y)) if y.size else nan, float(np.mean(p)))
    lp = logit(p)
    _, slope = fit_logistic(np.column_stack([np.ones(y.size), lp]), y)
    (intercept,) = fit_logistic(np.ones((y.size, 1)), y, offset=lp)
    knots = rcs_knots(lp, n_knots)
    basis = np.column_stack([np.ones(y.size), rcs_basis(lp, knots)])
    smoothed = expit(basis @ fit_logistic(basis, y))
    difference = np.abs(smoothed - p)
    return BinaryCalibration(
        slope=float(slope),
        intercept=float(intercept),
        brier=brier,
        ici=float(np.mean(difference)),
        e90=float(np.quantile(difference, 0.9)),
        observed_rate=float(np.mean(y)),
        mean_predicted=float(np.mean(p)),
    )


def reliability_curve(label: ArrayLike, probability: ArrayLike, *, bins: int = 10) -> pd.DataFrame:
    """Observed rate (95% Wilson interval) against mean predicted PROBABILITY per quantile bin: columns
    bin, n, predicted, observed, observed_lo, observed_hi (a reliability diagram's data)."""
    y = as_binary("label", label)
    p = as_probabilities("probability", probability, n=y.size)
    rows = []
    for b, members in enumerate(quantile_groups(p, bins)):
        k, m = int(y[members].sum()), int(members.sum())
        lo, hi = _wilson(k, m)
        rows.append(
            {"bin": b + 1, "n": m, "predicted": float(p[members].mean()), "observed": k / m, "observed_lo": lo,
             "observed_hi": hi}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["bin", "n", "predicted", "observed", "observed_lo", "observed_hi"])
