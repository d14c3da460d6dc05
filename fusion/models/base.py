"""Helpers shared by the estimators."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.utils.validation import validate_data

FloatArray = npt.NDArray[np.float64]


def checked_rows(estimator: Any, X: npt.ArrayLike) -> FloatArray:
    """X as a finite float64 (n, n_features_in_) matrix for a fitted estimator's predict methods.

    A float64 2-D array of the right width and finite values (what the model's own callers build) is
    returned as it is, without scikit-learn's general validation (hundreds of microseconds per call on
    the one-patient path); anything else goes through `validate_data`, with its errors."""
    if (
        isinstance(X, np.ndarray)
        and X.dtype == np.float64
        and X.ndim == 2
        and X.shape[1] == estimator.n_features_in_
        and np.isfinite(X).all()
    ):
        return X
    return np.asarray(validate_data(estimator, X, dtype=np.float64, reset=False))
