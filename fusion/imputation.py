"""Missing and implausible inputs: each model declares what it needs (`FeatureSpec`) and this module
enforces it, precompiled into arrays so that one patient costs microseconds.

- a missing input that the model declares `required` is refused (`ModelInputError` naming it);
- any other missing input is imputed and named in the warnings (a risk is never computed from a defaulted
  input without saying so): with its `impute_value` (the training median, or the mode for yes/no and
  categorical inputs), or, when the model carries `ConditionalMeans`, with its conditional mean given the
  patient's other inputs (a linear regression learned on the training data, the other missing inputs
  taken at their medians; single conditional-mean imputation, cf. van Buuren, Flexible Imputation of
  Missing Data, 2nd ed. 2018, ch. 3), kept inside the plausible range;
- a value outside the declared plausible range [min, max] is refused (a unit or measurement error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fusion.errors import ModelInputError
from fusion.features import IMAGING_SUMMARY_FEATURES, LEVEL_FEATURES, feature_info
from fusion.types import FeatureSpec

FloatArray = npt.NDArray[np.float64]


def request_field(name: str) -> str:
    """The request field a model input comes from (for google.rpc.BadRequest field violations)."""
    if name in IMAGING_SUMMARY_FEATURES:
        return f"imaging.summary.{name}"
    if name in LEVEL_FEATURES:
        return f"imaging.levels.{LEVEL_FEATURES[name]}"
    return f"clinical.variables.{name}"


def input_error(name: str, message: str, reason: str) -> ModelInputError:
    exc = ModelInputError(message, reason=reason)
    exc.field = request_field(name)  # type: ignore[attr-defined]
    return exc


def imputation_warning(name: str, value: float, unit: str, *, conditional: bool = False) -> str:
    """The warning that names an imputed input and the value used in its place."""
    unit_text = "" if unit in ("", "1") else f" {unit}"
    how = "its conditional mean given the other inputs" if conditional else "the training median/mode"
    return f"IMPUTED_INPUT: {name} was missing; {how}, {value:.4g}{unit_text}, was used"


def build_specs(
    names: Sequence[str], matrix: FloatArray, *, required: Sequence[str] = (), kinds: Mapping[str, str] | None = None
) -> list[FeatureSpec]:
    """Feature specs from training data: unit and range from the canonical catalogue, impute value = median
    (continuous) or mode (yes/no, sex, categorical) of the observed training values."""
    specs = []
    for j, name in enumerate(names):
        column = matrix[:, j]
        observed = column[~np.isnan(column)]
        info = feature_info(name)
        kind = (kinds or {}).get(name) or (info.kind if info is not None else "continuous")
        if observed.size == 0:
            raise ModelInputError(f"training column {name!r} has no observed values", reason="EMPTY_FEATURE")
        if kind == "continuous":
            impute = float(np.median(observed))
        else:
            values, counts = np.unique(observed, return_counts=True)
            impute = float(values[np.argmax(counts)])
        specs.append(
            FeatureSpec(
                name=name,
                unit=info.unit if info is not None else "1",
                description=info.description if info is not None else "site-specific input",
                min=info.min if info is not None else None,
                max=info.max if info is not None else None,
                required=name in required,
                impute_value=float(f"{impute:.10g}"),
            )
        )
    return specs


@dataclass(frozen=True)
class ConditionalMeans:
    """x_j | other inputs ~ a_j + sum_k B_jk x~_k, x~ = the inputs with missing ones at their median."""

    intercept: FloatArray  # (p,)
    coef: FloatArray  # (p, p), zero diagonal

    @classmethod
    def fit(cls, raw: FloatArray, medians: FloatArray) -> ConditionalMeans:
        """Least squares of each input on the others over the training rows where it is observed."""
        p = raw.shape[1]
        filled = np.where(np.isnan(raw), medians, raw)
        intercept = medians.astype(np.float64).copy()
        coef = np.zeros((p, p))
        for j in range(p):
            rows = ~np.isnan(raw[:, j])
            others = [k for k in range(p) if k != j]
            if not others or rows.sum() <= p + 1:
                continue
            design = np.column_stack([np.ones(int(rows.sum())), filled[rows][:, others]])
            beta = np.linalg.lstsq(design, raw[rows, j], rcond=None)[0]
            intercept[j] = beta[0]
            coef[j, others] = beta[1:]
        return cls(intercept=intercept, coef=coef)

    def predict(self, filled: FloatArray) -> FloatArray:
        """(n, p) conditional means of every input given the others (median-filled)."""
        return np.asarray(self.intercept + filled @ self.coef.T)

    def to_json(self) -> dict[str, object]:
        return {
            "method": "conditional_mean",
            "intercept": [float(f"{v:.12g}") for v in self.intercept],
            "coef": [[float(f"{v:.12g}") for v in row] for row in self.coef],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object], p: int) -> ConditionalMeans:
        if data.get("method") != "conditional_mean":
            raise ValueError(f"unknown imputation method {data.get('method')!r}")
        intercept = np.asarray(data["intercept"], dtype=np.float64).reshape(p)
        coef = np.asarray(data["coef"], dtype=np.float64).reshape(p, p)
        return cls(intercept=intercept, coef=coef)


@dataclass(frozen=True)
class InputPlan:
    """Compiled `FeatureSpec`s: names, impute values, ranges and the required mask as arrays."""

    specs: tuple[FeatureSpec, ...]
    names: tuple[str, ...]
    impute: FloatArray
    low: FloatArray
    high: FloatArray
    required: npt.NDArray[np.bool_]
    conditional: ConditionalMeans | None = None

    @classmethod
    def from_specs(cls, specs: Sequence[FeatureSpec], conditional: ConditionalMeans | None = None) -> InputPlan:
        return cls(
            conditional=conditional,
            specs=tuple(specs),
            names=tuple(s.name for s in specs),
            impute=np.array([np.nan if s.impute_value is None else s.impute_value for s in specs]),
            low=np.array([-np.inf if s.min is None else s.min for s in specs]),
            high=np.array([np.inf if s.max is None else s.max for s in specs]),
            required=np.array([s.required for s in specs], dtype=bool),
        )

    def warning(self, j: int, value: float) -> str:
        """The imputation warning of input j imputed with `value`."""
        s = self.specs[j]
        return imputation_warning(s.name, value, s.unit, conditional=self.conditional is not None)

    def row(self, values: Mapping[str, float | None]) -> tuple[FloatArray, list[int]]:
        """One patient: (x, indices of imputed inputs). Raises `ModelInputError` for a required missing input
        or a value out of range."""
        x = np.array([np.nan if (v := values.get(n)) is None else v for n in self.names], dtype=np.float64)
        missing = np.isnan(x)
        if missing.any():
            needed = [self.names[j] for j in np.flatnonzero(missing & self.required)]
            if needed:
                raise input_error(
                    needed[0],
                    f"the model requires {', '.join(needed)}, which {'is' if len(needed) == 1 else 'are'} missing; "
                    "provide it (it cannot be imputed)",
                    "MISSING_REQUIRED_INPUT",
                )
        bad = ~missing & ((x < self.low) | (x > self.high))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            s = self.specs[j]
            raise input_error(
                s.name,
                f"{s.name} = {x[j]:g} {s.unit} is outside the plausible range [{self.low[j]:g}, {self.high[j]:g}] "
                "(a unit or measurement error?)",
                "OUT_OF_RANGE",
            )
        if missing.any():
            x = self._impute(x[None, :], missing[None, :])[0]
        return x, [int(j) for j in np.flatnonzero(missing)]

    def _impute(self, raw: FloatArray, missing: npt.NDArray[np.bool_]) -> FloatArray:
        """Missing entries at the median (mode), or at their conditional mean clipped to the plausible range."""
        filled = np.where(missing, self.impute, raw)
        if self.conditional is None:
            return np.asarray(filled)
        rows = missing.any(axis=1)
        if rows.any():
            means = np.clip(self.conditional.predict(filled[rows]), self.low, self.high)
            filled[rows] = np.where(missing[rows], means, filled[rows])
        return np.asarray(filled)

    def matrix(self, raw: FloatArray) -> tuple[FloatArray, npt.NDArray[np.bool_], list[str | None]]:
        """Many patients: (filled matrix, imputed mask, per-row refusal reason or None).

        Rows with a required input missing or a value out of range keep NaN and get a reason."""
        missing = np.isnan(raw)
        with np.errstate(invalid="ignore"):
            out_of_range = ~missing & ((raw < self.low) | (raw > self.high))
        refused_required = missing & self.required
        x = self._impute(np.where(out_of_range, np.nan, raw), missing | out_of_range)
        bad_rows = np.flatnonzero(out_of_range.any(axis=1) | refused_required.any(axis=1))
        reasons: list[str | None] = [None] * raw.shape[0]
        for i in bad_rows:
            parts = [f"{self.names[j]} required but missing" for j in np.flatnonzero(refused_required[i])]
            parts += [
                f"{self.names[j]} = {raw[i, j]:g} outside [{self.low[j]:g}, {self.high[j]:g}]"
                for j in np.flatnonzero(out_of_range[i])
            ]
            reasons[i] = "; ".join(parts)
            x[i] = np.nan
        return x, missing & ~refused_required, reasons
