"""The cohort report: survival by predicted risk group and by screening flag, hazard ratios, calibration,
score and missingness distributions, as PNG figures and ONE self-contained HTML file.

    >>> build_report("scores.parquet", "report/")     # report/report.html + report/*.png

Input: the output of `cohort score` (`fusion.cohort.scoring`); survival sections need the outcome columns
(`time_years`, `event`, and `hip_time_years`, `hip_event` for hip fracture; coding 0 censored, 1 fracture,
2 death without it), which scoring carries through by default. Rows whose status is not "scored" are left
out of every risk-based analysis (they are counted in the overview).

Methods (results are tables; rendering is separate):
- risk groups: tertiles of the predicted `horizon`-year MOF risk, or the treatment threshold of
  `fusion/data/thresholds.json` (10-year MOF risk >= 20%, BHOF: LeBoff et al. 2022,
  doi:10.1007/s00198-021-05900-y);
- Kaplan-Meier (Kaplan & Meier 1958, doi:10.1080/01621459.1958.10501452; lifelines `KaplanMeierFitter`)
  of freedom from MOF with death censored: the cause-specific view, which overstates absolute risk when
  deaths are common;
- Aalen-Johansen cumulative incidence (Aalen & Johansen 1978; `fusion.metrics.aalen_johansen`) with
  death as a competing risk, 95% intervals on the log(-log) scale: the absolute risk the model predicts;
- Cox proportional hazards (Cox 1972, doi:10.1111/j.2517-6161.1972.tb00899.x; lifelines `CoxPHFitter`,
  Efron ties) of the cause-specific MOF hazard, h(t|x) = h0(t) exp(x'b): by risk group; for each flag
  adjusted for age and sex; and for key covariates together (complete cases). Fitted on a seeded random
  sample of at most `cox_max_rows` rows (the hazard ratios' intervals reflect the sample size);
- calibration by decile of predicted risk: mean predicted risk against the Aalen-Johansen observed
  incidence at the horizon (`fusion.metrics.calibration_table`), and observed/expected for the cohort;
  shown only where follow-up reaches the horizon.
"""

from __future__ import annotations

import base64
import html
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow.parquet as pq
from scipy import stats

from fusion.artifacts import horizon_label
from fusion.cohort import plots
from fusion.cohort.flags import FLAG_PREFIX
from fusion.cohort.scoring import read_scores_metadata
from fusion.cohort_table import canonical_feature_names
from fusion.errors import CohortError
from fusion.metrics import aalen_johansen, calibration_table, observed_expected
from fusion.rules import thresholds

FloatArray = npt.NDArray[np.float64]
GroupMethod = Literal["tertiles", "treatment"]
HTML_NAME: Final = "report.html"
MIN_FLAGGED: Final = 20
"""A flag is analysed only when at least this many patients have it and at least this many do not."""
MAX_FLAG_PANELS: Final = 6
OUTCOME_COLUMNS: Final = {"mof": ("time_years", "event"), "hip": ("hip_time_years", "hip_event")}
OUTCOME_NAMES: Final = {"mof": "major osteoporotic fracture", "hip": "hip fracture"}
KEY_COVARIATES: Final = (
    ("age_years", "age (per 10 years)", 10.0),
    ("sex", "female sex", None),
    ("prior_fragility_fracture", "prior fragility fracture", None),
    ("glucocorticoids", "oral glucocorticoids", None),
    ("current_smoker", "current smoker", None),
    ("mean_hu_l1_l4", "L1-L4 attenuation (per 50 HU lower)", -50.0),
)


@dataclass
class ReportSummary:
    html: Path
    rows: int = 0
    analysed: int = 0
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "html": str(self.html),
            "rows": self.rows,
            "analysed": self.analysed,
            "figures": [str(f) for f in self.figures],
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


# --- analysis: pure functions returning tables ----------------------------------------------------------------


def risk_groups(risk: FloatArray, method: GroupMethod, *, threshold: float | None = None) -> pd.Categorical:
    """Group labels: tertiles of `risk` (labels show their ranges) or below/above `threshold`."""
    risk = np.asarray(risk, dtype=np.float64)
    if method == "treatment":
        if threshold is None:
            raise CohortError("treatment groups need a threshold", reason="BAD_REPORT_OPTION")
        labels = [f"< {threshold:.0%}", f">= {threshold:.0%}"]
        return pd.Categorical.from_codes((risk >= threshold).astype(int).tolist(), categories=pd.Index(labels))
    ranks = pd.Series(risk).rank(method="first").to_numpy()
    codes = np.minimum((3 * (ranks - 1) / max(len(risk), 1)).astype(int), 2)
    edges = [float(np.max(risk[codes == g])) if (codes == g).any() else np.nan for g in range(3)]
    labels = [f"low (<= {edges[0]:.1%})", f"middle (<= {edges[1]:.1%})", f"high (> {edges[1]:.1%})"]
    return pd.Categorical.from_codes(codes.tolist(), categories=pd.Index(labels))


def cumulative_incidence_curve(time: FloatArray, event: FloatArray, *, cause: int, grid: FloatArray) -> pd.DataFrame:
    """Aalen-Johansen F(t) of `cause` with its 95% interval at the `grid` times (years).

    The interval is `CumulativeIncidence.confidence_interval` (Greenwood-type variance, log(-log) scale)
    evaluated at every grid time at once: expanding (F(t) - F_k)^2 turns each sum of the variance into
    cumulative sums over the event times, so the whole band costs one pass instead of one per time."""
    aj = aalen_johansen(time, event, cause=cause)
    estimate = np.asarray(aj(grid), dtype=np.float64)
    n, d, dc, s_prev, f_k = aj.at_risk, aj.events_any, aj.events_cause, aj.survival_before, aj.cif
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(n > d, d / (n * (n - d)), 0.0)
        b = np.where(n > 0, s_prev**2 * dc * (n - dc) / n**3, 0.0)
        c = np.where(n > 0, s_prev * dc / n**2, 0.0)
    sums = [np.concatenate([[0.0], np.cumsum(v)]) for v in (a, f_k * a, f_k**2 * a, b, c, f_k * c)]
    at = np.searchsorted(aj.times, grid, side="right")  # number of event times <= t
    sa, sfa, sffa, sb, sc, sfc = (v[at] for v in sums)
    f = estimate
    variance = np.maximum(f * f * sa - 2 * f * sfa + sffa + sb - 2 * (f * sc - sfc), 0.0)
    z = float(stats.norm.ppf(0.975))
    inside = (f > 0) & (f < 1)
    lo, hi = np.where(f >= 1, 1.0, 0.0), np.where(f >= 1, 1.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(variance) / (f * np.abs(np.log(f)))
        centre = np.log(-np.log(f))
        lo = np.where(inside, np.exp(-np.exp(centre + z * se)), lo)
        hi = np.where(inside, np.exp(-np.exp(centre - z * se)), hi)
    return pd.DataFrame({"time": grid, "estimate": estimate, "lo": lo, "hi": hi})


def kaplan_meier_curve(time: FloatArray, event_observed: FloatArray, *, grid: FloatArray) -> pd.DataFrame:
    """Kaplan-Meier survival (lifelines) with its 95% interval at the `grid` times."""
    from lifelines import KaplanMeierFitter

    km = KaplanMeierFitter().fit(time, event_observed)
    estimate = km.survival_function_at_times(grid).to_numpy()
    ci = km.confidence_interval_survival_function_
    at = ci.reindex(ci.index.union(grid)).ffill().bfill().loc[grid]
    return pd.DataFrame(
        {"time": grid, "estimate": estimate, "lo": at.iloc[:, 0].to_numpy(), "hi": at.iloc[:, 1].to_numpy()}
    )


def numbers_at_risk(time: FloatArray, ticks: Sequence[float]) -> list[int]:
    """Patients still followed (time >= tick) at each tick."""
    ordered = np.sort(np.asarray(time, dtype=np.float64))
    return [int(ordered.size - np.searchsorted(ordered, t, side="left")) for t in ticks]


def incidence_by_group(
    time: FloatArray, event: FloatArray, groups: pd.Categorical, predicted: FloatArray | None, *, horizon: float
) -> pd.DataFrame:
    """Per group: n, fractures, deaths, Aalen-Johansen incidence at the horizon (95% interval), mean predicted."""
    rows = []
    for label in groups.categories:
        members = np.asarray(groups == label)
        if not members.any():
            continue
        aj = aalen_johansen(time[members], event[members], cause=1)
        lo, hi = aj.confidence_interval(horizon)
        rows.append(
            {
                "group": str(label),
                "patients": int(members.sum()),
                "fractures": int((event[members] == 1).sum()),
                "deaths": int((event[members] == 2).sum()),
                "observed": float(aj(horizon)),
                "observed_lo": lo,
                "observed_hi": hi,
                "predicted": float(np.mean(predicted[members])) if predicted is not None else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _cox(frame: pd.DataFrame, terms: dict[str, str]) -> pd.DataFrame:
    """lifelines CoxPHFitter of (T, E) on the named columns; rows: term label, hr, lo, hi, p."""
    from lifelines import CoxPHFitter

    data = frame[["T", "E", *terms]].dropna()
    constant = [c for c in terms if data[c].nunique() < 2]
    if constant or data["E"].sum() < 5:
        return pd.DataFrame(columns=["term", "hr", "lo", "hi", "p", "n", "events"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitter = CoxPHFitter().fit(data, "T", "E")
    s = fitter.summary
    out = pd.DataFrame(
        {
            "term": [terms[c] for c in s.index],
            "hr": s["exp(coef)"].to_numpy(),
            "lo": s["exp(coef) lower 95%"].to_numpy(),
            "hi": s["exp(coef) upper 95%"].to_numpy(),
            "p": s["p"].to_numpy(),
        }
    )
    out["n"] = len(data)
    out["events"] = int(data["E"].sum())
    return out


def _binary(series: pd.Series) -> pd.Series:
    if isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object:
        return (series.astype("string") == "female").astype("float64").where(series.notna())
    return pd.to_numeric(series, errors="coerce").astype("float64")


def hazard_ratios(
    frame: pd.DataFrame, groups: pd.Categorical, flags: Sequence[str], *, max_rows: int, seed: int = 0
) -> tuple[pd.DataFrame, list[str]]:
    """Cause-specific Cox hazard ratios of MOF: risk group, each flag (age- and sex-adjusted), key covariates."""
    notes: list[str] = []
    base = pd.DataFrame({"T": frame["time_years"].to_numpy(), "E": (frame["event"] == 1).astype(int).to_numpy()})
    base["group"] = np.asarray(groups)
    if len(base) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(base), size=max_rows, replace=False))
        notes.append(f"Cox models fitted on a random sample of {max_rows:,} of {len(base):,} patients (seed {seed}).")
    else:
        keep = np.arange(len(base))
    sample = frame.iloc[keep].reset_index(drop=True)
    data = base.iloc[keep].reset_index(drop=True)
    tables = []
    # risk groups (reference: the lowest)
    terms: dict[str, str] = {}
    for k, label in enumerate(groups.categories[1:], start=1):
        column = f"g{k}"
        data[column] = (data["group"] == label).astype(float)
        terms[column] = f"risk group {label} vs {groups.categories[0]}"
    tables.append(_cox(data, terms).assign(model="risk group"))
    # each flag, adjusted for age and sex
    adjust: dict[str, str] = {}
    if "age_years" in sample:
        data["age10"] = pd.to_numeric(sample["age_years"], errors="coerce") / 10.0
        adjust["age10"] = "age (per 10 years)"
    if "sex" in sample:
        data["female"] = _binary(sample["sex"])
        adjust["female"] = "female sex"
    for flag in flags:
        data["flag"] = sample[flag].astype(float)
        label = f"{flag.removeprefix(FLAG_PREFIX)} (age-, sex-adjusted)"
        fit = _cox(data, {"flag": label, **adjust})
        tables.append(fit[fit["term"] == label].assign(model="flag, adjusted for age and sex"))
    # key covariates together
    terms = {}
    for column, label, scale in KEY_COVARIATES:
        if column not in sample:
            continue
        values = _binary(sample[column]) if scale is None else pd.to_numeric(sample[column], errors="coerce") / scale
        data[f"k_{column}"] = values
        terms[f"k_{column}"] = label
    if terms:
        tables.append(_cox(data, terms).assign(model="key covariates (complete cases)"))
    table = (
        pd.concat([t for t in tables if len(t)], ignore_index=True) if any(len(t) for t in tables) else pd.DataFrame()
    )
    return table, notes


def missingness(path: Path, columns: Sequence[str]) -> pd.Series:
    """Fraction missing of each column, counted batch by batch (the file is never read whole)."""
    present = [c for c in columns if c in pq.read_schema(path).names]
    if not present:
        return pd.Series(dtype="float64")
    file = pq.ParquetFile(path)
    nulls = dict.fromkeys(present, 0)
    rows = 0
    for batch in file.iter_batches(batch_size=262_144, columns=present):
        rows += batch.num_rows
        for name in present:
            column = batch.column(name)
            count = column.null_count
            if column.type in ("double", "float"):
                values = column.to_numpy(zero_copy_only=False)
                count = int(np.isnan(values).sum())
            nulls[name] += count
    return pd.Series({k: v / max(rows, 1) for k, v in nulls.items()}, dtype="float64")


# --- rendering -----------------------------------------------------------------------------------------------------


def _template() -> Template:
    text = resources.files("fusion.cohort").joinpath("data/report.html").read_text(encoding="utf-8")
    return Template(text)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    return path


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = html.escape(alt)
    return (
        f'<figure><img alt="{caption}" src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>'
    )


def _table(frame: pd.DataFrame, *, percent: Sequence[str] = (), digits: int = 2) -> str:
    shown = frame.copy()
    for column in shown.columns:
        if column in percent:
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
        elif pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    return str(shown.to_html(index=False, escape=True, border=0, classes="data"))


def _section(title: str, *parts: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{''.join(parts)}</section>"


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


class _Figures:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.paths: list[Path] = []

    def save(self, fig: Any, name: str, caption: str) -> str:
        path = _save(fig, self.out_dir / f"{len(self.paths) + 1:02d}_{name}.png")
        self.paths.append(path)
        return _img(path, caption)


# --- the report -----------------------------------------------------------------------------------------------------


def _columns_to_read(names: Sequence[str], horizon_tag: str) -> list[str]:
    wanted = [
        f"risk_mof_{horizon_tag}y",
        f"risk_hip_{horizon_tag}y",
        "status",
        "diagnosis_category",
        "diagnosis_method",
        "imputed_inputs",
        "time_years",
        "event",
        "hip_time_years",
        "hip_event",
        *(column for column, _, _ in KEY_COVARIATES),
    ]
    wanted += [n for n in names if n.startswith(FLAG_PREFIX)]
    return [n for n in dict.fromkeys(wanted) if n in names]


def _pick_horizon(names: Sequence[str], horizon: float | None) -> float:
    available = sorted(float(n[len("risk_mof_") : -1]) for n in names if n.startswith("risk_mof_") and n.endswith("y"))
    if not available:
        raise CohortError(
            "the file has no risk_mof_<h>y columns: is it the output of `cohort score`?", reason="NOT_SCORED"
        )
    if horizon is None:
        preferred = thresholds().treatment_horizon_years
        return preferred if preferred in available else available[-1]
    if float(horizon) not in available:
        raise CohortError(
            f"no predictions at {horizon:g} years in the file (available: {', '.join(f'{h:g}' for h in available)})",
            reason="BAD_REPORT_OPTION",
        )
    return float(horizon)


def build_report(
    source: str | Path,
    out_dir: str | Path,
    *,
    horizon: float | None = None,
    groups: GroupMethod = "tertiles",
    cox_max_rows: int = 20_000,
    seed: int = 0,
) -> ReportSummary:
    """Write `out_dir/report.html` and its PNG figures for a scored cohort (module docstring)."""
    started = time.perf_counter()
    source, out_dir = Path(source), Path(out_dir)
    if not source.is_file():
        raise FileNotFoundError(f"scored cohort not found: {source}")
    try:
        names = list(pq.read_schema(source).names)
    except Exception as exc:
        raise CohortError(f"{source.name}: not a Parquet file ({exc})", reason="UNREADABLE_TABLE") from exc
    h = _pick_horizon(names, horizon)
    tag = horizon_label(h)
    th = thresholds()
    if groups == "treatment" and h != th.treatment_horizon_years:
        raise CohortError(
            f"treatment groups are defined on {th.treatment_horizon_years:g}-year risk; use --horizon "
            f"{th.treatment_horizon_years:g} or --groups tertiles",
            reason="BAD_REPORT_OPTION",
        )
    meta = read_scores_metadata(source)
    frame = pq.read_table(source, columns=_columns_to_read(names, tag)).to_pandas()
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = _Figures(out_dir)
    summary = ReportSummary(html=out_dir / HTML_NAME, rows=len(frame))
    mof, hip = f"risk_mof_{tag}y", f"risk_hip_{tag}y"
    scored = frame["status"].astype(str).eq("scored").to_numpy() if "status" in frame else frame[mof].notna().to_numpy()
    data = frame[scored & frame[mof].notna().to_numpy()].reset_index(drop=True)
    summary.analysed = len(data)
    if data.empty:
        raise CohortError(f"{source.name}: no scored rows to report on", reason="EMPTY_TABLE")
    flags = [c for c in data.columns if c.startswith(FLAG_PREFIX)]
    sections = [
        _overview(frame, data, meta, h),
        _distributions(data, figures, h, mof, hip, flags),
        _missing_section(source, meta, data, figures),
    ]
    has_outcomes = {"time_years", "event"} <= set(data.columns) and data["time_years"].notna().any()
    if has_outcomes:
        followed = data.dropna(subset=["time_years", "event"]).reset_index(drop=True)
        method: GroupMethod = groups
        grouping = risk_groups(followed[mof].to_numpy(), method, threshold=th.mof_10y)
        sections.append(_survival_section(followed, grouping, figures, h, mof, hip))
        sections.append(_flag_section(followed, flags, figures, h))
        hr, notes = hazard_ratios(followed, grouping, _analysable(followed, flags), max_rows=cox_max_rows, seed=seed)
        summary.notes += notes
        sections.append(_cox_section(hr, figures, notes))
        sections.append(_calibration_section(followed, figures, h, mof, hip, summary.notes))
    else:
        summary.notes.append(
            "No outcome columns (time_years, event): survival, hazard ratio and calibration sections are left out; "
            "score with the outcomes carried (cohort score --columns all)."
        )
    sections.append(_section("Notes and methods", *(_p(n) for n in summary.notes), _methods()))
    page = _template().substitute(
        title=html.escape(f"osteorisk cohort report: {source.name}"),
        generated=html.escape(datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        banner=_banner(meta),
        body="\n".join(sections),
    )
    tmp = summary.html.with_name(f".{HTML_NAME}.tmp-{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, summary.html)
    summary.figures = figures.paths
    summary.seconds = time.perf_counter() - started
    return summary


def _banner(meta: dict[str, Any]) -> str:
    model = meta.get("model") or {}
    if not model:
        return _p("The file carries no model metadata (it was not written by osteorisk cohort score).")
    said = "not for clinical use" in str(model.get("intended_use", "")).lower()
    warning = " NOT FOR CLINICAL USE." if model.get("not_for_clinical_use") and not said else ""
    return (
        f'<div class="banner"><strong>Model {html.escape(str(model.get("id")))} '
        f"{html.escape(str(model.get('version')))}</strong> "
        f"(sha256 {html.escape(str(model.get('sha256', ''))[:16])}...): "
        f"trained on {html.escape(str(model.get('trained_on')))}. {html.escape(str(model.get('intended_use')))}"
        f"{html.escape(warning)}</div>"
    )


def _overview(frame: pd.DataFrame, data: pd.DataFrame, meta: dict[str, Any], h: float) -> str:
    status = frame["status"].astype(str).value_counts() if "status" in frame else pd.Series(dtype=int)
    rows = [
        ("patients in the file", f"{len(frame):,}"),
        ("scored", f"{int(status.get('scored', len(data))):,}"),
        ("refused (an input out of range or a required input missing)", f"{int(status.get('refused', 0)):,}"),
        ("no clinical record (FHIR export)", f"{int(status.get('no_record', 0)):,}"),
        ("horizon of this report", f"{h:g} years"),
        ("thresholds version", str(meta.get("thresholds_version", "?"))),
        ("input", str(meta.get("input", "?"))),
    ]
    if "time_years" in data and data["time_years"].notna().any():
        t = data["time_years"].dropna()
        rows += [
            ("follow-up, median (max)", f"{t.median():.1f} ({t.max():.1f}) years"),
            ("major osteoporotic fractures", f"{int((data['event'] == 1).sum()):,}"),
            ("deaths before a major osteoporotic fracture", f"{int((data['event'] == 2).sum()):,}"),
        ]
        if "hip_event" in data:
            rows.append(("hip fractures", f"{int((data['hip_event'] == 1).sum()):,}"))
    table = pd.DataFrame(rows, columns=["", "value"])
    return _section("Overview", _table(table))


def _distributions(data: pd.DataFrame, figures: _Figures, h: float, mof: str, hip: str, flags: list[str]) -> str:
    th = thresholds()
    parts = []
    for column, outcome, limit in ((mof, "mof", th.mof_10y), (hip, "hip", th.hip_10y)):
        fig, ax = plots.figure(7, 4)
        lines = {f"treatment threshold {limit:.0%} (BHOF)": limit} if h == th.treatment_horizon_years else {}
        risks: dict[str, FloatArray] = {}
        if "sex" in data:
            for sex in ("female", "male"):
                members = data["sex"].astype(str) == sex
                if members.any():
                    risks[sex] = data.loc[members, column].to_numpy(dtype=np.float64)
        if not risks:
            risks["all"] = data[column].to_numpy(dtype=np.float64)
        plots.plot_risk_histogram(
            ax,
            risks,
            title=f"Predicted {h:g}-year risk of {OUTCOME_NAMES[outcome]}",
            xlabel=f"Predicted {h:g}-year cumulative incidence (%)",
            thresholds=lines,
        )
        parts.append(
            figures.save(
                fig, f"risk_{outcome}", f"Distribution of the predicted {h:g}-year {OUTCOME_NAMES[outcome]} risk by sex"
            )
        )
    quantiles = pd.DataFrame(
        {
            "risk": [f"{OUTCOME_NAMES[o]} at {h:g} years" for o in ("mof", "hip")],
            **{
                q: [float(data[c].quantile(v)) for c in (mof, hip)]
                for q, v in (("p10", 0.1), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("p90", 0.9))
            },
            "mean": [float(data[c].mean()) for c in (mof, hip)],
        }
    )
    parts.append(_table(quantiles, percent=["p10", "p25", "median", "p75", "p90", "mean"]))
    if "diagnosis_category" in data:
        counts = pd.crosstab(
            data["diagnosis_category"].astype(str),
            data["diagnosis_method"].astype(str),
            margins=True,
            margins_name="all",
        )
        parts.append("<h3>Diagnosis category by method</h3>" + str(counts.to_html(border=0, classes="data")))
    if flags:
        prevalence = pd.Series({f.removeprefix(FLAG_PREFIX): float(data[f].mean()) for f in flags})
        fig, ax = plots.figure(7, 4.2)
        plots.plot_bars(ax, prevalence, title="Screening flags", xlabel="Patients flagged (%)")
        parts.append(figures.save(fig, "flag_prevalence", "Share of scored patients with each screening flag"))
    return _section("Predicted risks, diagnoses and flags", *parts)


def _missing_section(source: Path, meta: dict[str, Any], data: pd.DataFrame, figures: _Figures) -> str:
    model_inputs = list((meta.get("model") or {}).get("features", []))
    columns = list(dict.fromkeys([*model_inputs, *canonical_feature_names()]))
    fractions = missingness(source, columns)
    parts = []
    if len(fractions):
        fig, ax = plots.figure(7, max(3.0, 0.22 * len(fractions) + 1))
        labels = {c: (f"{c} *" if c in model_inputs else c) for c in fractions.index}
        plots.plot_bars(
            ax, fractions.rename(index=labels), title="Missing inputs (* = model input)", xlabel="Rows missing (%)"
        )
        parts.append(
            figures.save(
                fig,
                "missingness",
                "Share of rows missing each input (model inputs marked *); missing model inputs are imputed and "
                "named in each row's warnings",
            )
        )
    if "imputed_inputs" in data:
        counts = data["imputed_inputs"].value_counts().sort_index()
        fig, ax = plots.figure(6, 3.6)
        plots.plot_counts(
            ax,
            counts,
            title="Imputed model inputs per patient",
            xlabel="Number of imputed inputs",
            ylabel="Patients (%)",
        )
        parts.append(figures.save(fig, "imputed_per_patient", "How many model inputs were imputed per scored patient"))
    if not parts:
        parts.append(_p("The file carries no input columns: missingness cannot be shown (score with --columns all)."))
    return _section("Missing inputs", *parts)


def _grid(max_years: float) -> FloatArray:
    return np.linspace(0.0, max_years, 401)


def _ticks(max_years: float) -> list[float]:
    step = 2.0 if max_years > 6 else 1.0
    return [float(t) for t in np.arange(0.0, max_years + 1e-9, step)]


def _survival_section(
    data: pd.DataFrame, grouping: pd.Categorical, figures: _Figures, h: float, mof: str, hip: str
) -> str:
    time_ = data["time_years"].to_numpy(dtype=np.float64)
    event = data["event"].to_numpy(dtype=np.float64)
    max_years = float(min(np.quantile(time_, 0.99), max(h, 1.0) * 1.2))
    grid, ticks = _grid(max_years), _ticks(max_years)
    parts = [_p(f"Risk groups: {', '.join(map(str, grouping.categories))} of the predicted {h:g}-year MOF risk.")]
    km: dict[str, pd.DataFrame] = {}
    cif: dict[str, pd.DataFrame] = {}
    at_risk: dict[str, list[int]] = {}
    for label in grouping.categories:
        members = np.asarray(grouping == label)
        if not members.any():
            continue
        km[str(label)] = kaplan_meier_curve(time_[members], (event[members] == 1).astype(float), grid=grid)
        cif[str(label)] = cumulative_incidence_curve(time_[members], event[members], cause=1, grid=grid)
        at_risk[str(label)] = numbers_at_risk(time_[members], ticks)
    fig, ax = plots.figure(7.5, 5.6)
    plots.plot_step_curves(
        ax,
        km,
        title="Kaplan-Meier: free of major osteoporotic fracture (deaths censored)",
        ylabel="Fracture-free (%)",
        max_years=max_years,
    )
    plots.add_numbers_at_risk(ax, at_risk, ticks)
    parts.append(
        figures.save(
            fig, "km_mof_by_group", "Kaplan-Meier fracture-free survival by risk group, 95% bands, numbers at risk"
        )
    )
    fig, ax = plots.figure(7.5, 5.6)
    plots.plot_step_curves(
        ax,
        cif,
        title="Cumulative incidence of major osteoporotic fracture (death competing)",
        ylabel="Cumulative incidence (%)",
        max_years=max_years,
    )
    plots.add_numbers_at_risk(ax, at_risk, ticks)
    parts.append(
        figures.save(
            fig,
            "cif_mof_by_group",
            "Aalen-Johansen cumulative incidence of MOF by risk group, 95% bands, numbers at risk",
        )
    )
    table = incidence_by_group(time_, event, grouping, data[mof].to_numpy(dtype=np.float64), horizon=h)
    parts.append(
        _table(
            table.rename(columns={"predicted": "mean predicted"}),
            percent=["observed", "observed_lo", "observed_hi", "mean predicted"],
        )
    )
    if {"hip_time_years", "hip_event"} <= set(data.columns):
        hip_data = data.dropna(subset=["hip_time_years", "hip_event"])
        if len(hip_data):
            hip_groups = pd.Categorical(np.asarray(grouping)[hip_data.index.to_numpy()], categories=grouping.categories)
            ht = hip_data["hip_time_years"].to_numpy(dtype=np.float64)
            he = hip_data["hip_event"].to_numpy(dtype=np.float64)
            curves = {}
            hip_at_risk = {}
            for label in hip_groups.categories:
                members = np.asarray(hip_groups == label)
                if members.any():
                    curves[str(label)] = cumulative_incidence_curve(ht[members], he[members], cause=1, grid=grid)
                    hip_at_risk[str(label)] = numbers_at_risk(ht[members], ticks)
            fig, ax = plots.figure(7.5, 5.6)
            plots.plot_step_curves(
                ax,
                curves,
                title="Cumulative incidence of hip fracture (death competing)",
                ylabel="Cumulative incidence (%)",
                max_years=max_years,
            )
            plots.add_numbers_at_risk(ax, hip_at_risk, ticks)
            parts.append(
                figures.save(
                    fig, "cif_hip_by_group", "Aalen-Johansen cumulative incidence of hip fracture by MOF risk group"
                )
            )
            hip_table = incidence_by_group(ht, he, hip_groups, hip_data[hip].to_numpy(dtype=np.float64), horizon=h)
            parts.append(
                "<h3>Hip fracture by risk group</h3>"
                + _table(
                    hip_table.rename(columns={"fractures": "hip fractures", "predicted": "mean predicted hip"}),
                    percent=["observed", "observed_lo", "observed_hi", "mean predicted hip"],
                )
            )
    return _section(f"Survival by predicted risk group ({h:g}-year MOF risk)", *parts)


def _analysable(data: pd.DataFrame, flags: Sequence[str]) -> list[str]:
    """Flags with at least MIN_FLAGGED patients on each side and a fracture in each."""
    out = []
    for flag in flags:
        on = data[flag].to_numpy(dtype=bool)
        events = data["event"].to_numpy() == 1
        if MIN_FLAGGED <= on.sum() <= len(on) - MIN_FLAGGED and events[on].any() and events[~on].any():
            out.append(flag)
    return out


def _flag_section(data: pd.DataFrame, flags: Sequence[str], figures: _Figures, h: float) -> str:
    usable = _analysable(data, flags)
    if not usable:
        return _section("Survival by screening flag", _p(f"No flag has {MIN_FLAGGED} patients on each side."))
    time_ = data["time_years"].to_numpy(dtype=np.float64)
    event = data["event"].to_numpy(dtype=np.float64)
    max_years = float(min(np.quantile(time_, 0.99), max(h, 1.0) * 1.2))
    grid = _grid(max_years)
    ranked = sorted(usable, key=lambda f: -float(data[f].mean()))[:MAX_FLAG_PANELS]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = 3 if len(ranked) > 2 else len(ranked)
    rows_n = -(-len(ranked) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.6 * rows_n), dpi=110)
    FigureCanvasAgg(fig)
    rows = []
    for k, flag in enumerate(ranked):
        ax = fig.add_subplot(rows_n, cols, k + 1)
        on = data[flag].to_numpy(dtype=bool)
        curves = {
            f"flagged (n={on.sum():,})": cumulative_incidence_curve(time_[on], event[on], cause=1, grid=grid),
            f"not flagged (n={(~on).sum():,})": cumulative_incidence_curve(time_[~on], event[~on], cause=1, grid=grid),
        }
        plots.plot_step_curves(
            ax, curves, title=flag.removeprefix(FLAG_PREFIX), ylabel="MOF incidence (%)", max_years=max_years
        )
    for flag in usable:
        on = data[flag].to_numpy(dtype=bool)
        row: dict[str, Any] = {"flag": flag.removeprefix(FLAG_PREFIX), "flagged": int(on.sum())}
        for side, members in (("flagged", on), ("not flagged", ~on)):
            aj = aalen_johansen(time_[members], event[members], cause=1)
            lo, hi = aj.confidence_interval(h)
            row[f"{side} {h:g}y"] = float(aj(h))
            row[f"{side} 95% interval"] = f"{lo:.1%}-{hi:.1%}"
        rows.append(row)
    caption = f"Aalen-Johansen cumulative incidence of MOF with and without each flag (the {len(ranked)} most common)"
    figure_html = figures.save(fig, "cif_mof_by_flag", caption)
    table = pd.DataFrame(rows)
    return _section(
        "Survival by screening flag", figure_html, _table(table, percent=[f"flagged {h:g}y", f"not flagged {h:g}y"])
    )


def _cox_section(table: pd.DataFrame, figures: _Figures, notes: list[str]) -> str:
    if table.empty:
        return _section("Hazard ratios (Cox)", _p("Too few fractures to fit Cox models."))
    fig, ax = plots.figure(9.0, max(3.0, 0.32 * len(table) + 1.4))
    plots.plot_forest(ax, table, title="Cause-specific hazard ratios of major osteoporotic fracture")
    figure_html = figures.save(fig, "hazard_ratios", "Cox hazard ratios of MOF with 95% intervals (log scale)")
    shown = table[["model", "term", "hr", "lo", "hi", "p", "n", "events"]].rename(
        columns={"hr": "hazard ratio", "lo": "95% lower", "hi": "95% upper"}
    )
    shown["p"] = shown["p"].map(lambda v: f"{v:.2g}" if v >= 1e-4 else "< 0.0001")
    return _section("Hazard ratios (Cox)", figure_html, _table(shown))


def _calibration_section(data: pd.DataFrame, figures: _Figures, h: float, mof: str, hip: str, notes: list[str]) -> str:
    parts = []
    for outcome, column in (("mof", mof), ("hip", hip)):
        time_col, event_col = OUTCOME_COLUMNS[outcome]
        if not {time_col, event_col} <= set(data.columns):
            continue
        sub = data.dropna(subset=[time_col, event_col, column])
        t = sub[time_col].to_numpy(dtype=np.float64)
        e = sub[event_col].to_numpy(dtype=np.float64)
        p = sub[column].to_numpy(dtype=np.float64)
        if t.size == 0 or float(t.max()) < h:
            notes.append(f"Calibration of {OUTCOME_NAMES[outcome]} at {h:g} years left out: follow-up ends before it.")
            continue
        table = calibration_table(t, e, p, horizon=h, cause=1, groups=10)
        oe = observed_expected(t, e, p, horizon=h, cause=1)
        fig, ax = plots.figure(5.6, 5.2)
        plots.plot_calibration(ax, table, title=f"{OUTCOME_NAMES[outcome].capitalize()} at {h:g} years")
        parts.append(
            figures.save(
                fig,
                f"calibration_{outcome}",
                f"Calibration by decile of predicted {h:g}-year {OUTCOME_NAMES[outcome]} risk",
            )
        )
        parts.append(
            _p(
                f"{OUTCOME_NAMES[outcome].capitalize()}: observed {oe.observed:.2%} (95% {oe.observed_ci[0]:.2%}-"
                f"{oe.observed_ci[1]:.2%}), expected {oe.expected:.2%}, O/E {oe.ratio:.2f} "
                f"({oe.ratio_ci[0]:.2f}-{oe.ratio_ci[1]:.2f}); O/E > 1: the model under-predicts."
            )
        )
        parts.append(_table(table, percent=["predicted", "observed", "observed_lo", "observed_hi"]))
    if not parts:
        parts.append(_p("No outcome reaches the horizon: calibration cannot be assessed."))
    return _section(f"Calibration at {h:g} years", *parts)


def _methods() -> str:
    doc = (__doc__ or "").split("Methods (results are tables; rendering is separate):", 1)[-1]
    items = [" ".join(chunk.split()) for chunk in doc.split("\n- ") if chunk.strip()]
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"
