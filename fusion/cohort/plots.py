"""Plots of the cohort report. Every function draws on the `ax` it is given and returns it (no pyplot
state): the caller makes the figure (with `matplotlib.figure.Figure`, Agg canvas) and saves it.

Axis labels carry units; risks are shown in percent; curves have legends; Kaplan-Meier and
cumulative-incidence plots can carry the numbers at risk under the time axis (`add_numbers_at_risk`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, PercentFormatter

FloatArray = npt.NDArray[np.float64]
PALETTE = ("#1b6ca8", "#e08214", "#c0392b", "#2e8b57", "#7b4ea3", "#8c564b", "#d4a017", "#555555")


def percent_axis(ax: Axes, axis: str = "y", decimals: int = 0) -> Axes:
    formatter = PercentFormatter(xmax=1.0, decimals=decimals)
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(formatter)
    return ax


def plot_step_curves(
    ax: Axes,
    curves: Mapping[str, pd.DataFrame],
    *,
    title: str,
    ylabel: str,
    max_years: float,
    percent: bool = True,
) -> Axes:
    """Step curves with 95% bands: each frame has columns time, estimate, lo, hi (one per group)."""
    for k, (label, curve) in enumerate(curves.items()):
        color = PALETTE[k % len(PALETTE)]
        ax.step(curve["time"], curve["estimate"], where="post", color=color, lw=1.8, label=label)
        if "lo" in curve and curve["lo"].notna().any():
            ax.fill_between(curve["time"], curve["lo"], curve["hi"], step="post", color=color, alpha=0.15, lw=0)
    ax.set_xlim(0, max_years)
    ax.set_xlabel("Years since index date")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if percent:
        percent_axis(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return ax


def add_numbers_at_risk(
    ax: Axes, at_risk: Mapping[str, Sequence[int]], ticks: Sequence[float], *, title: str = "Number at risk"
) -> Axes:
    """A numbers-at-risk table under the time axis: one row per group, one column per tick (years)."""
    ax.set_xticks(list(ticks))
    transform = ax.get_xaxis_transform()  # x in data, y in axes coordinates
    top = -0.2
    ax.text(0.0, top, title, transform=ax.transAxes, ha="left", va="top", fontsize=8, fontweight="bold")
    for row, (label, counts) in enumerate(at_risk.items(), start=1):
        y = top - 0.075 * row
        color = PALETTE[(row - 1) % len(PALETTE)]
        for tick, count in zip(ticks, counts, strict=True):
            ax.text(tick, y, f"{count:,}", transform=transform, ha="center", va="top", fontsize=7, color=color)
        ax.text(-0.05, y, _short(label), transform=ax.transAxes, ha="right", va="top", fontsize=7, color=color)
    return ax


def _short(label: str, width: int = 16) -> str:
    """A row label for the at-risk table: the text before any parenthesis, at most `width` characters."""
    head = label.split(" (", 1)[0]
    return head if len(head) <= width else head[: width - 1] + "…"


def plot_forest(ax: Axes, table: pd.DataFrame, *, title: str) -> Axes:
    """Hazard ratios with 95% intervals on a log axis, values written on the right: columns term, hr, lo, hi
    (top row first)."""
    y = np.arange(len(table))[::-1]
    ax.errorbar(
        table["hr"],
        y,
        xerr=[table["hr"] - table["lo"], table["hi"] - table["hr"]],
        fmt="s",
        color=PALETTE[0],
        ecolor=PALETTE[0],
        capsize=3,
        ms=5,
    )
    ax.axvline(1.0, color="#555555", lw=1, ls="--")
    ax.set_xscale("log")
    low = float(np.nanmin(table["lo"])) if len(table) else 0.5
    high = float(np.nanmax(table["hi"])) if len(table) else 2.0
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50) if low / 1.5 <= t <= high * 1.5]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_yticks(y)
    ax.set_yticklabels(table["term"], fontsize=8)
    transform = ax.get_yaxis_transform()  # x in axes, y in data coordinates
    for row, (hr, lo, hi) in zip(y, table[["hr", "lo", "hi"]].to_numpy(), strict=True):
        ax.text(1.02, row, f"{hr:.2f} ({lo:.2f}-{hi:.2f})", transform=transform, va="center", fontsize=7)
    if len(table):
        ax.set_ylim(-0.7, len(table) - 0.1)
        ax.text(1.02, len(table) - 0.45, "HR (95% CI)", transform=transform, va="center", fontsize=7, fontweight="bold")
    ax.set_xlabel("Hazard ratio (95% interval, log scale)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_calibration(ax: Axes, table: pd.DataFrame, *, title: str) -> Axes:
    """Observed (Aalen-Johansen, 95% interval) against mean predicted risk per group (deciles)."""
    top = float(np.nanmax([table["predicted"].max(), table["observed_hi"].max(), 0.01])) * 1.08
    ax.plot([0, top], [0, top], color="#555555", lw=1, ls="--", label="ideal")
    ax.errorbar(
        table["predicted"],
        table["observed"],
        yerr=[table["observed"] - table["observed_lo"], table["observed_hi"] - table["observed"]],
        fmt="o",
        color=PALETTE[0],
        capsize=3,
        label="deciles of predicted risk",
    )
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("Mean predicted risk (%)")
    ax.set_ylabel("Observed risk, Aalen-Johansen (%)")
    percent_axis(ax, "x", 1 if top < 0.1 else 0)
    percent_axis(ax, "y", 1 if top < 0.1 else 0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return ax


def plot_risk_histogram(
    ax: Axes, risks: Mapping[str, FloatArray], *, title: str, xlabel: str, thresholds: Mapping[str, float] | None = None
) -> Axes:
    """Distributions of predicted risks (percent of patients per bin), with treatment thresholds."""
    values = [v[np.isfinite(v)] for v in risks.values()]
    top = max((float(np.quantile(v, 0.995)) for v in values if v.size), default=1.0)
    bins = [float(b) for b in np.linspace(0.0, max(top, 1e-3), 50)]
    for k, (label, v) in enumerate(zip(risks, values, strict=True)):
        if v.size:
            weights = np.full(v.size, 1.0 / v.size)
            ax.hist(
                np.clip(v, 0, bins[-1]),
                bins=bins,
                weights=weights,
                histtype="stepfilled",
                alpha=0.35,
                color=PALETTE[k % len(PALETTE)],
                label=f"{label} (median {np.median(v):.1%})",
            )
    for k, (label, value) in enumerate((thresholds or {}).items()):
        ax.axvline(value, color=PALETTE[(k + 2) % len(PALETTE)], lw=1.2, ls="--", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Patients (%)")
    percent_axis(ax, "x")
    percent_axis(ax, "y", 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return ax


def plot_bars(
    ax: Axes, values: pd.Series, *, title: str, xlabel: str, percent: bool = True, annotate: bool = True
) -> Axes:
    """Horizontal bars (largest on top), e.g. missing fractions or flag prevalence."""
    series = values.sort_values()
    bars = ax.barh(np.arange(len(series)), series.to_numpy(), color=PALETTE[0])
    ax.set_yticks(np.arange(len(series)))
    ax.set_yticklabels([str(i) for i in series.index], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if percent:
        percent_axis(ax, "x")
        ax.set_xlim(0, max(0.05, float(series.max()) * 1.18) if len(series) else 1)
    if annotate:
        for bar, value in zip(bars, series.to_numpy(), strict=True):
            text = f"{value:.1%}" if percent else f"{value:,.0f}"
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {text}", va="center", fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_counts(ax: Axes, counts: pd.Series, *, title: str, xlabel: str, ylabel: str) -> Axes:
    """Vertical bars of counts per integer value (e.g. imputed inputs per patient)."""
    total = max(int(counts.sum()), 1)
    ax.bar(counts.index.astype(str), counts.to_numpy() / total, color=PALETTE[1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    percent_axis(ax, "y")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return ax


def figure(width: float = 7.0, height: float = 4.5, **kwargs: Any) -> tuple[Any, Axes]:
    """A figure with one axes on an Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, **kwargs)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    return fig, ax
