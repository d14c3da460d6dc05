"""Input checks shared by the metrics: arrays of equal length, finite values, known event codes."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fusion.errors import CohortError

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def as_float(name: str, values: Any, *, n: int | None = None, finite: bool = True) -> FloatArray:
    """A 1-d float64 array; raises CohortError naming `name` for NaN/inf, wrong shape or length."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CohortError(f"{name}: not numeric ({exc})", reason="BAD_METRIC_INPUT") from None
    if array.ndim != 1:
        raise CohortError(f"{name}: expected a 1-d array, got shape {array.shape}", reason="BAD_METRIC_INPUT")
    if n is not None and array.shape[0] != n:
        raise CohortError(f"{name}: {array.shape[0]} values for {n} subjects", reason="BAD_METRIC_INPUT")
    if finite and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        first = int(np.flatnonzero(~np.isfinite(array))[0])
        raise CohortError(
            f"{name}: {bad} of {array.size} values are missing or infinite (e.g. row {first}); "
            "drop or impute those rows first",
            reason="BAD_METRIC_INPUT",
        )
    return array


def as_times(name: str, values: Any, *, n: int | None = None) -> FloatArray:
    times = as_float(name, values, n=n)
    if np.any(times < 0):
        raise CohortError(f"{name}: {int(np.count_nonzero(times < 0))} negative times", reason="BAD_METRIC_INPUT")
    return times


def as_events(name: str, values: Any, *, n: int | None = None) -> IntArray:
    """Event codes: 0 censored, 1, 2, ... causes (integers)."""
    raw = as_float(name, values, n=n)
    if np.any(raw != np.round(raw)) or np.any(raw < 0):
        raise CohortError(
            f"{name}: event codes must be 0 (censored) or a positive cause number", reason="BAD_METRIC_INPUT"
        )
    return raw.astype(np.int64)


def as_binary(name: str, values: Any, *, n: int | None = None) -> IntArray:
    raw = as_float(name, values, n=n)
    if not np.all((raw == 0) | (raw == 1)):
        raise CohortError(f"{name}: labels must be 0/1", reason="BAD_METRIC_INPUT")
    return raw.astype(np.int64)


def as_probabilities(name: str, values: Any, *, n: int | None = None) -> FloatArray:
    array = as_float(name, values, n=n)
    if np.any((array < 0) | (array > 1)):
        raise CohortError(f"{name}: probabilities must lie in [0, 1]", reason="BAD_METRIC_INPUT")
    return array


def as_horizon(value: float) -> float:
    horizon = float(value)
    if not np.isfinite(horizon) or horizon <= 0:
        raise CohortError(f"horizon must be a positive number of years, got {value!r}", reason="BAD_METRIC_INPUT")
    return horizon


def dense_rank(values: FloatArray) -> IntArray:
    """0-based dense ranks (equal values share a rank)."""
    _, inverse = np.unique(values, return_inverse=True)
    ranks: IntArray = inverse.astype(np.int64)
    return ranks


def quantile_groups(values: FloatArray, groups: int) -> list[npt.NDArray[np.bool_]]:
    """Masks of `groups` equal-count groups of `values` in ascending order (ties split by position); empty
    groups (fewer values than groups) are left out."""
    if groups < 1:
        raise CohortError("the number of groups must be at least 1", reason="BAD_METRIC_INPUT")
    ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    labels = (ranks * groups) // max(values.size, 1)
    masks = [labels == g for g in range(groups)]
    return [m for m in masks if m.any()]
