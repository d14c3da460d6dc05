"""Calibration and discrimination plots (matplotlib; each function takes an `ax` and returns it).

Rendering only: the numbers come from `fusion.metrics` (results are data, plotting is separate).
Call `use_headless_backend()` before pyplot is imported anywhere in a server or CLI process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fusion.metrics.survival import CalibrationCurve


def use_headless_backend() -> None:
    """Select matplotlib's Agg backend (no display needed); harmless when already selected."""
    import matplotlib

    matplotlib.use("Agg", force=True)


def plot_calibration(
    ax: Any,
    table: pd.DataFrame,
    *,
    curve: CalibrationCurve | None = None,
    title: str = "",
    label: str = "model",
) -> Any:
    """Observed (Aalen-Johansen, 95% interval) against mean predicted risk per group (`calibration_table`
    or `reliability_curve` output: columns predicted, observed, observed_lo, observed_hi), the smoothed
    curve when given, and the diagonal of perfect calibration. Axes in percent."""
    upper = float(np.nanmax([table["predicted"].max(), table["observed_hi"].max(), 1e-3])) if len(table) else 1.0
    if curve is not None and curve.observed.size:
        upper = max(upper, float(np.nanmax(curve.predicted)), float(np.nanmax(curve.observed)))
    upper = min(1.0, upper * 1.08)
    ax.plot([0, upper * 100], [0, upper * 100], color="0.6", linestyle="--", linewidth=1, label="ideal")
    if curve is not None and curve.observed.size:
        ax.plot(curve.predicted * 100, curve.observed * 100, color="C1", linewidth=1.5, label="smoothed")
    if len(table):
        lower_err = (table["observed"] - table["observed_lo"]).clip(lower=0) * 100
        upper_err = (table["observed_hi"] - table["observed"]).clip(lower=0) * 100
        ax.errorbar(
            table["predicted"] * 100,
            table["observed"] * 100,
            yerr=[lower_err, upper_err],
            fmt="o",
            color="C0",
            markersize=4,
            capsize=2,
            label=f"{label} by group (95% CI)",
        )
    ax.set_xlim(0, upper * 100)
    ax.set_ylim(0, upper * 100)
    ax.set_xlabel("predicted risk (%)")
    ax.set_ylabel("observed risk (%)")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    ax.grid(alpha=0.3)
    return ax


def plot_roc(ax: Any, label: np.ndarray, score: np.ndarray, *, title: str = "", name: str = "score") -> Any:
    """ROC curve of SCORES (higher = positive) against 0/1 labels, with the AUC in the legend."""
    from fusion.metrics.classification import roc_auc

    y = np.asarray(label, dtype=np.int64)
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    ys = y[order]
    tpr = np.concatenate([[0.0], np.cumsum(ys) / max(int(ys.sum()), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(1 - ys) / max(int((1 - ys).sum()), 1)])
    ax.plot(fpr, tpr, color="C0", label=f"{name} (AUC {roc_auc(y, s):.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    if title:
        ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small", frameon=False)
    ax.grid(alpha=0.3)
    return ax
