"""Pure metric functions for survival (competing risks) and classification; see each module's docstring.

Each function says whether it takes RISK SCORES (any monotone score) or PROBABILITIES.
"""

from fusion.metrics.classification import (
    BinaryCalibration,
    ThresholdPerformance,
    binary_calibration,
    reliability_curve,
    roc_auc,
    sensitivity_specificity,
)
from fusion.metrics.concordance import ConcordanceResult, harrell_c, uno_c
from fusion.metrics.nonparametric import (
    CumulativeIncidence,
    StepFunction,
    aalen_johansen,
    censoring_survival,
    kaplan_meier,
)
from fusion.metrics.survival import (
    CalibrationCurve,
    CalibrationFit,
    ObservedExpected,
    brier_score,
    calibration_curve,
    calibration_slope,
    calibration_table,
    integrated_brier_score,
    ipcw_status,
    null_risk,
    observed_expected,
    scaled_brier,
    time_dependent_auc,
)

__all__ = [
    "BinaryCalibration",
    "CalibrationCurve",
    "CalibrationFit",
    "ConcordanceResult",
    "CumulativeIncidence",
    "ObservedExpected",
    "StepFunction",
    "ThresholdPerformance",
    "aalen_johansen",
    "binary_calibration",
    "brier_score",
    "calibration_curve",
    "calibration_slope",
    "calibration_table",
    "censoring_survival",
    "harrell_c",
    "integrated_brier_score",
    "ipcw_status",
    "kaplan_meier",
    "null_risk",
    "observed_expected",
    "reliability_curve",
    "roc_auc",
    "scaled_brier",
    "sensitivity_specificity",
    "time_dependent_auc",
    "uno_c",
]
