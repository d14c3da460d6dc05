"""Model inputs: canonical feature names, units, encodings and plausible ranges, and the feature row of one
patient built from a `ClinicalRecord` and `BoneFeatures`.

The names are DESIGN.md's cohort columns (ClinicalRecord variable names, BoneFeatures summary names and the
per-level `hu_l1`..`hu_l4`); units and plausible ranges come from the cohort column spec
(`fusion/data/cohort_columns.json`, read by `fusion.cohort_table`). Encodings: yes/no inputs are 1/0;
`sex` is 1 for female, 0 for male (other/unknown are missing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from clinical.types import ClinicalRecord, ClinicalVariables, Variable
from fusion.cohort_table import canonical_feature_names, column_spec
from fusion.errors import ModelInputError
from imaging.types import BoneFeatures

FeatureKind = Literal["continuous", "binary", "sex", "categorical"]
IMAGING_SUMMARY_FEATURES: tuple[str, ...] = ("l1_hu", "mean_hu_l1_l4", "vbmd_l1_l2_mg_cm3")
LEVEL_FEATURES: dict[str, str] = {"hu_l1": "L1", "hu_l2": "L2", "hu_l3": "L3", "hu_l4": "L4"}
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}
_FEMALE = {"female", "f", "woman", "1"}
_MALE = {"male", "m", "man", "0"}
_CLINICAL_NAMES = ClinicalVariables.names()
_KIND_OF_DTYPE: dict[str, FeatureKind] = {"float": "continuous", "int": "continuous", "bool": "binary"}


@dataclass(frozen=True)
class FeatureInfo:
    """One model input: unit (UCUM, "1" for yes/no), encoding kind and plausible range (inclusive)."""

    name: str
    unit: str
    kind: FeatureKind
    min: float | None
    max: float | None
    description: str


@cache
def feature_info(name: str) -> FeatureInfo | None:
    """The canonical input `name` (from the cohort column spec, `fusion.cohort_table`), or None for a
    site-specific column. `sex` is encoded female = 1, male = 0; yes/no inputs 1/0."""
    spec = column_spec(name)
    if spec is None or spec.role != "feature":
        return None
    if name == "sex":
        return FeatureInfo(name, "1", "sex", 0.0, 1.0, "sex: female = 1, male = 0 (other/unknown: missing)")
    kind = _KIND_OF_DTYPE.get(spec.dtype, "categorical")
    if kind == "binary":
        return FeatureInfo(name, "1", kind, 0.0, 1.0, f"{spec.description} (yes = 1, no = 0)")
    return FeatureInfo(name, spec.unit or "1", kind, spec.min, spec.max, spec.description)


def canonical_features() -> tuple[str, ...]:
    """Every canonical feature name, in the cohort spec's order."""
    return canonical_feature_names()


def encode_value(name: str, value: object) -> float | None:
    """One raw value (bool, number, 'female', 'yes', None) as the model's float, or None when missing.

    Raises `ModelInputError` for a value that cannot be read (e.g. 'maybe' for a yes/no input).
    """
    if value is None:
        return None
    info = feature_info(name)
    kind = info.kind if info is not None else "continuous"
    if isinstance(value, bool | np.bool_):
        return 1.0 if value else 0.0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"", "nan", "na", "none", "unknown", "other"}:
            return None
        if kind == "sex":
            if text in _FEMALE:
                return 1.0
            if text in _MALE:
                return 0.0
            raise ModelInputError(f"{name}: cannot read sex {value!r}; use 'female' or 'male'", reason="BAD_VALUE")
        if kind == "binary":
            if text in _TRUE:
                return 1.0
            if text in _FALSE:
                return 0.0
            raise ModelInputError(f"{name}: cannot read yes/no value {value!r}", reason="BAD_VALUE")
        try:
            number = float(text)
        except ValueError:
            raise ModelInputError(f"{name}: {value!r} is not a number", reason="BAD_VALUE") from None
        return None if math.isnan(number) else number
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        return None if math.isnan(number) else number
    raise ModelInputError(f"{name}: unsupported value type {type(value).__name__}", reason="BAD_VALUE")


def encode_column(name: str, column: pd.Series) -> npt.NDArray[np.float64]:
    """A cohort column as float64 with NaN for missing (vectorised for numbers, value by value for text)."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        return np.asarray(column.astype("float64").to_numpy(copy=True, na_value=np.nan), dtype=np.float64)
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    mapped = np.array([encode_value(name, u) for u in uniques] + [None], dtype=np.float64)
    return np.asarray(mapped[codes], dtype=np.float64)  # code -1 (missing) picks the trailing None -> NaN


@dataclass(frozen=True)
class FeatureRow:
    """The model-ready values of one patient with their provenance."""

    values: dict[str, float | None]
    defaulted: tuple[str, ...] = ()  # values a source already imputed (clinical status 'imputed')
    clinical_sources: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _level_hu(bone: BoneFeatures, level: str) -> float | None:
    measurement = bone.level(level)
    if measurement is None or measurement.excluded:
        return None
    return measurement.hu_median if measurement.hu_median is not None else measurement.hu_mean


def feature_row(clinical: ClinicalRecord | None, bone: BoneFeatures | None) -> FeatureRow:
    """Every canonical feature of one patient: clinical variables, CT summary and per-level attenuation.

    Excluded CT levels (imaging QC) give no value. A clinical value that its source imputed is kept and
    listed in `defaulted`, so that the report names it.
    """
    values: dict[str, float | None] = {}
    defaulted: list[str] = []
    warnings: list[str] = []
    sources: tuple[str, ...] = ()
    if clinical is not None:
        variables = clinical.variables
        for name in _CLINICAL_NAMES:
            variable: Variable = getattr(variables, name)
            if variable.is_missing:
                values[name] = None
                continue
            values[name] = encode_value(name, variable.value)
            if variable.status == "imputed":
                defaulted.append(name)
        sources = tuple(clinical.sources())
        warnings.extend(clinical.warnings)
    if bone is not None:
        summary = bone.summary
        values["l1_hu"] = summary.l1_hu
        values["mean_hu_l1_l4"] = summary.mean_hu_l1_l4
        values["vbmd_l1_l2_mg_cm3"] = summary.vbmd_l1_l2_mg_cm3
        for name, level in LEVEL_FEATURES.items():
            values[name] = _level_hu(bone, level)
        warnings.extend(bone.warnings)
    return FeatureRow(values=values, defaulted=tuple(defaulted), clinical_sources=sources, warnings=tuple(warnings))


def frame_features(frame: pd.DataFrame, names: list[str] | tuple[str, ...]) -> npt.NDArray[np.float64]:
    """The (n, p) float matrix of `names` from a cohort frame (NaN where missing); a missing column is all NaN."""
    out = np.full((len(frame), len(names)), np.nan)
    for j, name in enumerate(names):
        if name in frame.columns:
            out[:, j] = encode_column(name, frame[name])
    return out


def parse_column_map(text: str | None) -> dict[str, str]:
    """'old=new,old2=new2' -> {'old': 'new', ...}; raises `ModelInputError` on a malformed pair."""
    mapping: dict[str, str] = {}
    if not text:
        return mapping
    for pair in text.split(","):
        pair = pair.strip()
        if not pair:
            continue
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ModelInputError(f"column map entry {pair!r} must look like OLD=NEW", reason="BAD_COLUMN_MAP")
        mapping[old.strip()] = new.strip()
    return mapping


def describe(values: Mapping[str, Any]) -> str:
    """A short 'name=value' listing for messages (no identifiers, no PHI beyond the model inputs)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
