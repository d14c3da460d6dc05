"""The canonical cohort table: one row per patient-index date (DESIGN.md "Cohort table").

The columns are declared in `fusion/data/cohort_columns.json` (name, dtype, unit, allowed range, role
and source of each); this module reads that spec, validates tables against it and reads/writes them.

Roles: `id` (patient_id, index_date), `feature` (ClinicalRecord variables and BoneFeatures summary
names), `outcome` (time_years/event, hip_time_years/hip_event; 0 censored, 1 fracture, 2 death
without that fracture), `label` (osteoporosis: DXA T-score <= -2.5) and `truth` (synthetic cohorts
only: latent values and true risks `true_risk_{mof|hip}_{h}y`).

Columns the spec does not know are kept untouched (e.g. GLOW500's FRACTURE), so a site can carry its
own labels through; `column_map` renames foreign columns to canonical names first.

    >>> df = read_cohort("cohort.parquet", require=("survival",))
    >>> feature_columns(df)
    ['age_years', 'sex', ..., 'l1_hu', ...]
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from fusion.errors import CohortError

Use = Literal["features", "mof", "hip", "survival", "diagnosis"]
Role = Literal["id", "feature", "outcome", "label", "truth"]
DType = Literal["string", "date", "float", "bool", "int", "category", "event"]

OSTEOPOROSIS_T_SCORE = -2.5
"""WHO densitometric osteoporosis: T-score <= -2.5 (Kanis JA, Osteoporos Int 1994;4:368-381,
doi:10.1007/BF01622200); the `osteoporosis` label derives from `dxa_t_score_min` with it."""

_TRUE_STRINGS = {"1", "true", "t", "yes", "y"}
_FALSE_STRINGS = {"0", "false", "f", "no", "n"}
_SUPPORTED_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv")
_MAX_EXAMPLE_CHARS = 60


@dataclass(frozen=True)
class ColumnSpec:
    """One canonical column: what it holds, its unit and the values it may take."""

    name: str
    dtype: DType
    role: Role
    source: str
    unit: str = ""
    description: str = ""
    min: float | None = None
    max: float | None = None
    values: tuple[str | int, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class _PatternSpec:
    pattern: re.Pattern[str]
    template: ColumnSpec


@cache
def _spec_document() -> dict[str, Any]:
    text = resources.files("fusion").joinpath("data/cohort_columns.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


def _column_from_json(entry: Mapping[str, Any], *, name: str | None = None) -> ColumnSpec:
    return ColumnSpec(
        name=name if name is not None else str(entry["name"]),
        dtype=entry["dtype"],
        role=entry["role"],
        source=str(entry["source"]),
        unit=str(entry.get("unit", "")),
        description=str(entry.get("description", "")),
        min=None if entry.get("min") is None else float(entry["min"]),
        max=None if entry.get("max") is None else float(entry["max"]),
        values=tuple(entry.get("values", ())),
        aliases=tuple(sorted((str(k), str(v)) for k, v in entry.get("aliases", {}).items())),
    )


@cache
def column_specs() -> dict[str, ColumnSpec]:
    """Every named canonical column, in spec order (truth columns of a pattern are not listed)."""
    return {str(entry["name"]): _column_from_json(entry) for entry in _spec_document()["columns"]}


@cache
def _patterns() -> tuple[_PatternSpec, ...]:
    return tuple(
        _PatternSpec(re.compile(entry["pattern"]), _column_from_json(entry, name=str(entry["pattern"])))
        for entry in _spec_document()["patterns"]
    )


def column_spec(name: str) -> ColumnSpec | None:
    """The spec of a canonical column (named or matching a pattern such as `true_risk_mof_10y`), else None."""
    spec = column_specs().get(name)
    if spec is not None:
        return spec
    for pattern in _patterns():
        if pattern.pattern.match(name):
            t = pattern.template
            return ColumnSpec(name, t.dtype, t.role, t.source, t.unit, t.description, t.min, t.max, t.values)
    return None


def canonical_feature_names() -> tuple[str, ...]:
    """Canonical feature columns in spec order (clinical, then DXA, then imaging)."""
    return tuple(name for name, spec in column_specs().items() if spec.role == "feature")


def required_columns(use: Use) -> tuple[str, ...]:
    """The columns a use needs (see the `uses` section of the spec)."""
    uses: dict[str, Any] = _spec_document()["uses"]
    if use not in uses:
        raise CohortError(f"unknown cohort use {use!r}; known: {', '.join(sorted(uses))}", reason="UNKNOWN_USE")
    return tuple(uses[use]["required"])


def feature_columns(df: pd.DataFrame) -> list[str]:
    """The canonical feature columns present in `df`, in spec order (clinical, DXA, imaging)."""
    present = set(df.columns)
    return [name for name in canonical_feature_names() if name in present]


def truth_columns(df: pd.DataFrame) -> list[str]:
    """The truth columns present in `df` (synthetic cohorts): latent values and `true_risk_*`."""
    return [c for c in df.columns if (s := column_spec(str(c))) is not None and s.role == "truth"]


def true_risk_column(outcome: Literal["mof", "hip"], horizon_years: float) -> str:
    """Name of the true cumulative-incidence column, e.g. `true_risk_mof_10y`."""
    return f"true_risk_{outcome}_{_horizon_label(horizon_years)}y"


def _horizon_label(horizon_years: float) -> str:
    return f"{horizon_years:g}"


# --- validation ---------------------------------------------------------------------------------------


def _example(series: pd.Series, bad: np.ndarray) -> str:
    """`row 17: '-4.0'` for the first offending row (position in the table, 0-based)."""
    position = int(np.flatnonzero(bad)[0])
    raw = series.iloc[position]
    value = repr(raw.item() if isinstance(raw, np.generic) else raw)
    if len(value) > _MAX_EXAMPLE_CHARS:
        value = value[:_MAX_EXAMPLE_CHARS] + "..."
    return f"row {position}: {value}"


def _fail(column: str, bad: np.ndarray, series: pd.Series, problem: str, fix: str, reason: str) -> None:
    count = int(np.count_nonzero(bad))
    raise CohortError(
        f"column {column!r}: {count} of {len(series)} rows {problem} (e.g. {_example(series, bad)}); {fix}",
        reason=reason,
    )


def _coerce_float(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        _fail(
            spec.name,
            np.ones(len(series), bool),
            series,
            "are booleans",
            f"expected numbers in {spec.unit}",
            "BAD_DTYPE",
        )
    numeric = pd.to_numeric(series, errors="coerce").astype("float64")
    bad = (numeric.isna() & series.notna()).to_numpy() & ~_blank(series)
    if bad.any():
        _fail(
            spec.name, bad, series, "are not numbers", f"expected numbers in {spec.unit or 'units of 1'}", "BAD_DTYPE"
        )
    values = numeric.to_numpy()
    infinite = np.isinf(values)
    if infinite.any():
        _fail(spec.name, infinite, series, "are infinite", "use an empty cell for a missing value", "BAD_VALUE")
    return numeric


def _blank(series: pd.Series) -> np.ndarray:
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        stripped = series.astype("string").str.strip()
        return (stripped.fillna("") == "").to_numpy(dtype=bool) | series.isna().to_numpy()
    return series.isna().to_numpy()


def _check_range(values: pd.Series, original: pd.Series, spec: ColumnSpec) -> None:
    array = values.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        low = array < spec.min if spec.min is not None else np.zeros(len(array), bool)
        high = array > spec.max if spec.max is not None else np.zeros(len(array), bool)
    bad = low | high
    if bad.any():
        unit = f" {spec.unit}" if spec.unit else ""
        hint = _unit_hint(spec, array[bad])
        _fail(
            spec.name,
            bad,
            original,
            f"lie outside the allowed range [{spec.min:g}, {spec.max:g}]{unit}",
            f"check the unit ({spec.description}){hint}",
            "OUT_OF_RANGE",
        )


def _unit_hint(spec: ColumnSpec, bad_values: np.ndarray) -> str:
    if spec.name == "height_cm" and np.nanmedian(bad_values) < 3:
        return "; these look like metres: multiply by 100"
    if spec.name == "weight_kg" and np.nanmedian(bad_values) > 350:
        return "; these look like grams or pounds"
    if spec.name.endswith("_years") and np.nanmedian(bad_values) > 365:
        return "; these look like days: divide by 365.25"
    return ""


def _coerce_bool(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    blank = _blank(series)
    if pd.api.types.is_bool_dtype(series):
        return series.astype("Int8")
    if pd.api.types.is_numeric_dtype(series):
        numeric = pd.to_numeric(series, errors="coerce")
        bad = ~numeric.isin([0, 1]).to_numpy() & ~blank
        if bad.any():
            _fail(spec.name, bad, series, "are not 0/1", "booleans are 0/1 (empty = missing)", "BAD_VALUE")
        return numeric.astype("Int8")
    numeric = pd.to_numeric(series, errors="coerce")
    text = series.astype("string").str.strip().str.lower()
    true = (text.isin(_TRUE_STRINGS).fillna(False) | (numeric == 1)).to_numpy(dtype=bool)
    false = (text.isin(_FALSE_STRINGS).fillna(False) | (numeric == 0)).to_numpy(dtype=bool)
    bad = ~(true | false | blank)
    if bad.any():
        problem = "are not 0/1" if numeric[bad].notna().all() else "are not booleans"
        _fail(spec.name, bad, series, problem, "use 0/1, true/false or yes/no (empty = missing)", "BAD_VALUE")
    out = pd.Series(pd.array([pd.NA] * len(series), dtype="Int8"), index=series.index)
    out[true] = 1
    out[false] = 0
    return out


def _coerce_category(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    allowed = [str(v) for v in spec.values]
    aliases = dict(spec.aliases)
    text = series.astype("string").str.strip().str.lower()
    mapped = text.map(lambda v: aliases.get(v, v) if isinstance(v, str) else v)
    blank = _blank(series)
    bad = ~mapped.isin(allowed).fillna(False).to_numpy(dtype=bool) & ~blank
    if bad.any():
        _fail(spec.name, bad, series, "hold unknown values", f"use one of {', '.join(allowed)}", "BAD_VALUE")
    return pd.Series(pd.Categorical(mapped.where(~blank), categories=allowed), index=series.index)


def _coerce_event(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    numeric = pd.to_numeric(series, errors="coerce")
    blank = _blank(series)
    allowed = [int(v) for v in spec.values]
    bad = ~numeric.isin(allowed).to_numpy() & ~blank
    if bad.any():
        _fail(
            spec.name,
            bad,
            series,
            "hold an unknown event code",
            "codes are 0 censored, 1 fracture, 2 death without that fracture",
            "BAD_EVENT_CODE",
        )
    return numeric.astype("Int8")


def _coerce_int(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    numeric = _coerce_float(series, spec)
    values = numeric.to_numpy()
    bad = np.isfinite(values) & (values != np.round(values))
    if bad.any():
        _fail(spec.name, bad, series, "are not whole numbers", "expected integers", "BAD_DTYPE")
    return numeric.round().astype("Int16")


def _coerce_string(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    blank = _blank(series)
    if blank.any():
        _fail(spec.name, blank, series, "are empty", "every row needs an identifier", "MISSING_VALUE")
    if pd.api.types.is_float_dtype(series):
        whole = series.to_numpy() == np.round(series.to_numpy())
        if whole.all():
            series = series.astype("int64")
    return series.astype(str).str.strip().astype(object)


def _coerce_date(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_localize(None)
    else:
        parsed = pd.to_datetime(series.astype("string"), errors="coerce", format="mixed")
    blank = _blank(series)
    bad = parsed.isna().to_numpy() & ~blank
    if bad.any():
        _fail(spec.name, bad, series, "are not dates", "use ISO dates YYYY-MM-DD", "BAD_DTYPE")
    return parsed.dt.normalize().astype("datetime64[ns]")


_COERCERS = {
    "float": _coerce_float,
    "bool": _coerce_bool,
    "category": _coerce_category,
    "event": _coerce_event,
    "int": _coerce_int,
    "string": _coerce_string,
    "date": _coerce_date,
}


def _apply_column_map(df: pd.DataFrame, column_map: Mapping[str, str]) -> pd.DataFrame:
    missing = [source for source in column_map if source not in df.columns]
    if missing:
        raise CohortError(
            f"column_map names columns the table lacks: {', '.join(map(repr, missing))}; "
            f"the table has: {', '.join(map(str, df.columns[:40]))}",
            reason="MISSING_COLUMN",
        )
    targets = list(column_map.values())
    duplicated = sorted({t for t in targets if targets.count(t) > 1})
    if duplicated:
        raise CohortError(f"column_map maps several columns to {', '.join(duplicated)}", reason="BAD_COLUMN_MAP")
    clashes = [t for s, t in column_map.items() if t in df.columns and t not in column_map and t != s]
    if clashes:
        raise CohortError(
            f"column_map would overwrite existing columns {', '.join(map(repr, clashes))}; drop or map them first",
            reason="BAD_COLUMN_MAP",
        )
    return df.rename(columns=dict(column_map))


def _uses(require: Iterable[Use] | Use) -> tuple[Use, ...]:
    return (require,) if isinstance(require, str) else tuple(require)


def validate_cohort(
    df: pd.DataFrame,
    *,
    require: Iterable[Use] | Use = ("features",),
    column_map: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Check a table against the canonical spec and return a copy with canonical dtypes.

    - `column_map` ({foreign: canonical}) renames columns first (e.g. GLOW500's AGE -> age_years).
    - Every `require`d use (features, mof, hip, survival, diagnosis) must find its columns, without
      missing values in its outcome columns (a label may be missing in some rows: those are unlabelled, e.g.
      no DXA); `features` also needs at least one feature column.
    - Known columns are coerced to their dtype (floats, 0/1 Int8 booleans, categories, Int8 event
      codes, dates) and range-checked; negative times, unknown event codes and impossible values raise.
    - Outcomes must agree: a hip fracture is a major osteoporotic fracture, so `hip_event == 1`
      needs `event == 1` at or before `hip_time_years`, and death without MOF (`event == 2`) means
      death without hip fracture at the same time.
    - `osteoporosis` is derived from `dxa_t_score_min` (T <= -2.5) when absent and the T-score is present.
    - (patient_id, index_date) must be unique.

    Raises `CohortError` naming the column, how many rows are wrong and an example row.
    """
    if not isinstance(df, pd.DataFrame):
        raise CohortError(f"a cohort must be a pandas DataFrame, not {type(df).__name__}", reason="BAD_TABLE")
    uses = _uses(require)
    table = _apply_column_map(df, column_map) if column_map else df.copy()
    table.columns = [str(c) for c in table.columns]
    duplicate_names = sorted({c for c in table.columns if list(table.columns).count(c) > 1})
    if duplicate_names:
        raise CohortError(f"duplicate column names: {', '.join(duplicate_names)}", reason="DUPLICATE_COLUMN")

    for name in list(table.columns):
        spec = column_spec(name)
        if spec is None:
            continue
        original = table[name]
        coerced = _COERCERS[spec.dtype](original, spec)
        if spec.min is not None or spec.max is not None:
            _check_range(coerced, original, spec)
        table[name] = coerced

    if "osteoporosis" not in table.columns and "dxa_t_score_min" in table.columns:
        t_score = table["dxa_t_score_min"]
        values = t_score.to_numpy(dtype="float64", na_value=np.nan)
        label = pd.array(np.where(values <= OSTEOPOROSIS_T_SCORE, 1, 0), dtype="Int8")
        label[np.isnan(values)] = pd.NA
        table["osteoporosis"] = label

    for use in uses:
        needed = required_columns(use)
        absent = [c for c in needed if c not in table.columns]
        if absent:
            raise CohortError(
                f"a cohort for {use!r} needs the columns {', '.join(needed)}; missing: {', '.join(absent)} "
                "(rename foreign columns with column_map)",
                reason="MISSING_COLUMN",
            )
        for name in needed:
            spec = column_specs()[name]
            missing = table[name].isna().to_numpy()
            if spec.role == "outcome" and missing.any():
                _fail(name, missing, table[name], "are missing", f"every row needs {name} for {use!r}", "MISSING_VALUE")
            if spec.role == "label" and missing.all():
                raise CohortError(
                    f"column {name!r}: no row has a label; {use!r} needs labelled rows (unlabelled rows are skipped)",
                    reason="MISSING_VALUE",
                )
        if use == "features" and not feature_columns(table):
            raise CohortError(
                "the cohort has no canonical feature column (e.g. age_years, sex, l1_hu); rename with column_map",
                reason="MISSING_COLUMN",
            )

    _check_outcome_consistency(table)
    _check_unique_rows(table)
    return table


def _check_outcome_consistency(table: pd.DataFrame) -> None:
    names = ("time_years", "event", "hip_time_years", "hip_event")
    if not all(n in table.columns for n in names):
        return
    time = table["time_years"].to_numpy(dtype="float64", na_value=np.nan)
    hip_time = table["hip_time_years"].to_numpy(dtype="float64", na_value=np.nan)
    event = table["event"].to_numpy(dtype="float64", na_value=np.nan)
    hip_event = table["hip_event"].to_numpy(dtype="float64", na_value=np.nan)
    tolerance = 1e-6
    with np.errstate(invalid="ignore"):
        hip_not_mof = (hip_event == 1) & ((event != 1) | (time > hip_time + tolerance))
        if hip_not_mof.any():
            _fail(
                "hip_event",
                hip_not_mof,
                table["hip_event"],
                "record a hip fracture without a major osteoporotic fracture (event == 1) at or before it",
                "a hip fracture is a major osteoporotic fracture: fix event/time_years",
                "INCONSISTENT_OUTCOMES",
            )
        death_mismatch = (event == 2) & ((hip_event != 2) | (np.abs(time - hip_time) > tolerance))
        if death_mismatch.any():
            _fail(
                "event",
                death_mismatch,
                table["event"],
                "record death without fracture (2) but hip_event/hip_time_years disagree",
                "death without any MOF is also death without hip fracture at the same time",
                "INCONSISTENT_OUTCOMES",
            )
        hip_before_mof = hip_time < time - tolerance
        if hip_before_mof.any():
            _fail(
                "hip_time_years",
                hip_before_mof,
                table["hip_time_years"],
                "end before time_years",
                "follow-up for hip fracture lasts at least as long as for the first MOF",
                "INCONSISTENT_OUTCOMES",
            )


def _check_unique_rows(table: pd.DataFrame) -> None:
    if "patient_id" not in table.columns:
        return
    keys = ["patient_id", "index_date"] if "index_date" in table.columns else ["patient_id"]
    duplicated = table.duplicated(subset=keys, keep="first").to_numpy()
    if duplicated.any():
        _fail(
            "patient_id",
            duplicated,
            table["patient_id"],
            f"repeat a ({', '.join(keys)}) key",
            "a cohort table has one row per patient and index date",
            "DUPLICATE_ROW",
        )


# --- files --------------------------------------------------------------------------------------------


def _format(path: Path) -> Literal["parquet", "csv", "tsv"]:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith(".tsv"):
        return "tsv"
    raise CohortError(
        f"{path.name}: unknown cohort file type; use one of {', '.join(_SUPPORTED_SUFFIXES)}",
        reason="UNSUPPORTED_FORMAT",
    )


def read_cohort(
    path: str | Path,
    *,
    require: Iterable[Use] | Use = ("features",),
    column_map: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Read a cohort table (Parquet, or CSV/TSV by suffix) and validate it (see `validate_cohort`).

    Identifiers are read as text (leading zeros kept). Raises `CohortError` for an unreadable file
    and every validation failure; `FileNotFoundError` when the file does not exist.
    """
    path = Path(path)
    kind = _format(path)
    if not path.exists():
        raise FileNotFoundError(f"cohort file not found: {path}")
    if path.is_dir():
        raise CohortError(f"{path}: is a directory, not a cohort file", reason="BAD_TABLE")
    id_names = {"patient_id"} | {src for src, dst in (column_map or {}).items() if dst == "patient_id"}
    try:
        if kind == "parquet":
            df = pd.read_parquet(path)
        else:
            sep = "\t" if kind == "tsv" else ","
            df = pd.read_csv(path, sep=sep, dtype={name: str for name in id_names}, keep_default_na=True)
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        message = " ".join(str(exc).split())[:200]
        raise CohortError(f"{path.name}: cannot read as {kind}: {message}", reason="UNREADABLE_TABLE") from exc
    except Exception as exc:  # pyarrow raises its own ArrowInvalid (a ValueError subclass) and friends
        message = " ".join(str(exc).split())[:200]
        raise CohortError(f"{path.name}: cannot read as {kind}: {message}", reason="UNREADABLE_TABLE") from exc
    if df.empty:
        raise CohortError(f"{path.name}: the cohort table has no rows", reason="EMPTY_TABLE")
    return validate_cohort(df, require=require, column_map=column_map)


def write_cohort(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a cohort table (Parquet or CSV by suffix) after validating it; returns the path.

    Dates are written as YYYY-MM-DD in CSV; booleans as 0/1; missing values as empty cells.
    """
    path = Path(path)
    kind = _format(path)
    table = validate_cohort(df, require=())
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        table.to_parquet(path, index=False)
    else:
        out = table.copy()
        if "index_date" in out.columns:
            out["index_date"] = out["index_date"].dt.strftime("%Y-%m-%d")
        out.to_csv(path, index=False, sep="\t" if kind == "tsv" else ",", float_format="%.10g")
    return path


def describe_columns(names: Iterable[str] | None = None) -> pd.DataFrame:
    """The column spec as a table (name, dtype, unit, min, max, role, source, description)."""
    specs = column_specs()
    chosen = [specs[n] for n in names] if names is not None else list(specs.values())
    return pd.DataFrame(
        [
            {
                "name": s.name,
                "dtype": s.dtype,
                "unit": s.unit,
                "min": s.min,
                "max": s.max,
                "role": s.role,
                "source": s.source,
                "description": s.description,
            }
            for s in chosen
        ]
    )
