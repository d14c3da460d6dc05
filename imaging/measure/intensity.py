"""Robust HU statistics of a trabecular ROI.

Outlier rule (documented, applied before every statistic): with Q1, Q3 the quartiles of the ROI's HU and
IQR = max(Q3 - Q1, `min_iqr_hu`), voxels outside the "far out" fences [Q1 - k*IQR, Q3 + k*IQR] with k = 3
(Tukey, Exploratory Data Analysis, 1977) are rejected. High outliers are bone islands (enostoses,
typically several hundred to > 1000 HU) or cortex caught by a tilted ROI; low outliers are venous
channels, fat or lytic foci. The rejected fractions are reported so that QC can flag contamination. The
median (`hu_median`) is the level's representative value: it is insensitive to the remaining tails.
`min_iqr_hu` keeps noise-free (synthetic) data from rejecting everything but the median.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

TUKEY_FAR_OUT_K = 3.0
MIN_IQR_HU = 20.0


@dataclass(frozen=True)
class RoiStats:
    """HU statistics of the ROI voxels kept after outlier rejection."""

    n_voxels: int
    n_kept: int
    mean: float
    median: float
    sd: float
    p05: float
    p25: float
    p75: float
    p95: float
    skewness: float
    kurtosis: float
    high_outlier_fraction: float
    low_outlier_fraction: float
    lower_fence: float
    upper_fence: float


def roi_statistics(
    values: npt.NDArray[np.floating], *, k: float = TUKEY_FAR_OUT_K, min_iqr_hu: float = MIN_IQR_HU
) -> RoiStats | None:
    """Statistics of `values` (HU of the ROI voxels) after the far-out outlier rule; None when empty."""
    hu = np.asarray(values, dtype=np.float64).ravel()
    hu = hu[np.isfinite(hu)]
    if hu.size == 0:
        return None
    q1, q3 = np.percentile(hu, [25.0, 75.0])
    iqr = max(float(q3 - q1), min_iqr_hu)
    lower, upper = float(q1 - k * iqr), float(q3 + k * iqr)
    high = hu > upper
    low = hu < lower
    kept = hu[~(high | low)]
    p05, p25, p50, p75, p95 = np.percentile(kept, [5.0, 25.0, 50.0, 75.0, 95.0])
    sd = float(kept.std(ddof=1)) if kept.size > 1 else 0.0
    if kept.size > 2 and sd > 0.0:
        skewness = float(stats.skew(kept))
        kurtosis = float(stats.kurtosis(kept))  # Fisher: 0 for a normal distribution
    else:
        skewness, kurtosis = 0.0, 0.0
    return RoiStats(
        n_voxels=int(hu.size),
        n_kept=int(kept.size),
        mean=float(kept.mean()),
        median=float(p50),
        sd=sd,
        p05=float(p05),
        p25=float(p25),
        p75=float(p75),
        p95=float(p95),
        skewness=skewness,
        kurtosis=kurtosis,
        high_outlier_fraction=float(high.mean()),
        low_outlier_fraction=float(low.mean()),
        lower_fence=lower,
        upper_fence=upper,
    )
