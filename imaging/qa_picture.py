"""The QA picture: one glance for a radiologist to check levels, ROIs, heights and reference tissues.

Layout: a header with the scan and the summary; on the left a mid-sagittal view of the spine with each
level's body outlined, its trabecular ROI, its height lines and a label (level, median HU, vBMD, Genant
grade; orange when flagged, red when excluded); on the right one axial view per level through the body's
centre (radiological convention: patient's right on the image's left, anterior up) with the body and the
ROI outlined and the values printed, and one axial view with the calibration's reference tissues.
Window: width 1000 HU, level 250 HU ([-250, 750] HU), which shows both soft tissue and trabecular bone.

Drawn on its own `matplotlib.figure.Figure` with the Agg canvas (no pyplot state: safe in threads).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from imaging.calibration import Tissue, TissueSample
from imaging.errors import ImageInputError
from imaging.measure.vertebra import LevelResult
from imaging.types import BoneFeatures, VertebraMeasurement, Volume

WINDOW_HU = (-250.0, 750.0)
_HALF_FOV_MM = 55.0
_TISSUE_COLOURS: dict[str, str] = {
    "air": "#4f81ff",
    "subcutaneous_fat": "#ffd23f",
    "visceral_fat": "#ff9f1c",
    "muscle": "#ff4f4f",
    "blood": "#d65cff",
}


def _colour(m: VertebraMeasurement) -> str:
    if m.excluded:
        return "#ff3b3b"
    return "#ffa500" if m.qc else "#7CFC00"


def _label(m: VertebraMeasurement) -> str:
    hu = f"{m.hu_median:.0f} HU" if m.hu_median is not None else "no HU"
    parts = [m.level, hu]
    if m.vbmd_mg_cm3 is not None:
        parts.append(f"{m.vbmd_mg_cm3:.0f} mg/cm³")
    if m.genant_grade is not None:
        parts.append(f"G{m.genant_grade}")
    if m.excluded:
        parts.append("EXCLUDED")
    return "  ".join(parts)


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}{unit}"


def _header(features: BoneFeatures) -> str:
    src, s, cal = features.source, features.summary, features.calibration
    line1 = (
        f"{src.kind.upper()}  series {src.series_uid or '?'}  kVp {_fmt(src.kvp)}  contrast {src.contrast}  "
        f"kernel {src.kernel or '?'}  voxel {' x '.join(f'{v:.2f}' for v in src.spacing_mm or ())} mm  "
        f"segmentation {features.segmentation.backend}"
    )
    cal_text = "no calibration" if cal is None else f"calibration {cal.status}"
    line2 = (
        f"L1 {_fmt(s.l1_hu, ' HU')}   mean L1-L4 {_fmt(s.mean_hu_l1_l4, ' HU')}   "
        f"vBMD L1-L2 {_fmt(s.vbmd_l1_l2_mg_cm3, ' mg/cm³')}   ACR {s.acr_category or '–'}   {cal_text}   "
        f"levels used {', '.join(s.levels_used) or 'none'}"
    )
    return f"{line1}\n{line2}"


def _show(ax: Axes, plane: npt.NDArray[np.generic], spacing: tuple[float, float], window: tuple[float, float]) -> None:
    """A 2-D plane (first axis horizontal) in millimetres, lower-left origin, grey window."""
    n0, n1 = plane.shape
    s0, s1 = spacing
    ax.imshow(
        plane.T,
        cmap="gray",
        vmin=window[0],
        vmax=window[1],
        origin="lower",
        extent=(-0.5 * s0, (n0 - 0.5) * s0, -0.5 * s1, (n1 - 0.5) * s1),
        interpolation="bilinear",
    )


def _sagittal(
    ax: Axes, volume: Volume, results: Sequence[LevelResult], measurements: Mapping[str, VertebraMeasurement]
) -> None:
    bodies = [r for r in results if r.body is not None]
    _, sy, sz = volume.spacing
    x_mid = round(float(np.median([r.body.centroid_index()[0] for r in bodies if r.body is not None])))
    x0, x1 = max(0, x_mid - 1), min(volume.shape[0], x_mid + 2)
    plane = volume.array[x0:x1].mean(axis=0)
    ny = plane.shape[0]
    _show(ax, plane, (sy, sz), WINDOW_HU)
    y_lo, y_hi = ny * sy, 0.0
    for r in bodies:
        body = r.body
        assert body is not None  # narrowed by the filter above
        xi = round(float(body.centroid_index()[0])) - int(body.offset[0])
        xi = min(max(xi, 0), body.body.shape[0] - 1)
        oy, oz = int(body.offset[1]), int(body.offset[2])
        by, bz = body.body.shape[1], body.body.shape[2]
        extent = ((oy - 0.5) * sy, (oy + by - 0.5) * sy, (oz - 0.5) * sz, (oz + bz - 0.5) * sz)
        m = measurements[r.info.level]
        colour = _colour(m)
        _contour(ax, body.body[xi], extent, "#ffe066", 0.8)
        if r.roi is not None and r.roi[xi].any():
            _contour(ax, r.roi[xi], extent, "#00e5ff", 1.2)
        if r.heights is not None:
            for start, end in r.heights.segments:
                ax.plot([start[1] * sy, end[1] * sy], [start[2] * sz, end[2] * sz], color="#39ff14", lw=1.0)
        ys = np.flatnonzero(body.body.any(axis=(0, 2)))
        anterior = (oy + ys[-1]) * sy
        y_lo, y_hi = min(y_lo, (oy + ys[0]) * sy), max(y_hi, anterior)
        cz = float(body.centroid_index()[2]) * sz
        ax.text(
            anterior + 6.0,
            cz,
            _label(m),
            color=colour,
            fontsize=8,
            va="center",
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5, "edgecolor": "none"},
        )
    ax.set_xlim(max(-0.5 * sy, y_lo - 60.0), min((ny - 0.5) * sy, y_hi + 110.0))
    ax.set_title("mid-sagittal (anterior to the right)", fontsize=9)
    ax.set_xlabel("mm")
    ax.set_ylabel("mm (superior up)")


def _contour(
    ax: Axes, mask: npt.NDArray[np.bool_], extent: tuple[float, float, float, float], colour: str, width: float
) -> None:
    if mask.any() and min(mask.shape) > 1:
        ax.contour(
            mask.T.astype(np.float32), levels=[0.5], colors=[colour], linewidths=width, extent=extent, origin="lower"
        )


def _axial(ax: Axes, volume: Volume, r: LevelResult, m: VertebraMeasurement) -> None:
    body = r.body
    assert body is not None  # the caller draws only measured bodies
    sx, sy, _ = volume.spacing
    centre = body.centroid_index()
    k = round(float(centre[2]))
    img = volume.array[:, :, k]
    _show(ax, img, (sx, sy), WINDOW_HU)
    kl = k - int(body.offset[2])
    ox, oy = int(body.offset[0]), int(body.offset[1])
    bx, by = body.body.shape[0], body.body.shape[1]
    extent = ((ox - 0.5) * sx, (ox + bx - 0.5) * sx, (oy - 0.5) * sy, (oy + by - 0.5) * sy)
    if 0 <= kl < body.body.shape[2]:
        _contour(ax, body.body[:, :, kl], extent, "#ffe066", 0.8)
        if r.roi is not None:
            _contour(ax, r.roi[:, :, kl], extent, "#00e5ff", 1.2)
    cx, cy = float(centre[0]) * sx, float(centre[1]) * sy
    # radiological convention: the patient's right (array +x) on the image's left
    ax.set_xlim(cx + _HALF_FOV_MM, cx - _HALF_FOV_MM)
    ax.set_ylim(cy - _HALF_FOV_MM, cy + _HALF_FOV_MM)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(m.level, color=_colour(m), fontsize=10, fontweight="bold")
    lines = [
        f"median {_fmt(m.hu_median)} HU (IQR {_fmt(m.hu_p25)}–{_fmt(m.hu_p75)})",
        f"vBMD {_fmt(m.vbmd_mg_cm3, ' mg/cm³')}   ROI {_fmt(m.roi_volume_ml, ' mL', 1)}",
        f"H a/m/p {_fmt(m.height_anterior_mm)}/{_fmt(m.height_middle_mm)}/{_fmt(m.height_posterior_mm)} mm"
        f"   Genant {_fmt(m.genant_grade)}",
    ]
    for i in range(0, len(m.qc), 2):
        lines.append(("QC " if i == 0 else "   ") + ", ".join(m.qc[i : i + 2]))
    ax.text(
        0.02,
        0.02,
        "\n".join(lines),
        transform=ax.transAxes,
        color="white",
        fontsize=6.5,
        va="bottom",
        bbox={"facecolor": "black", "alpha": 0.65, "pad": 2, "edgecolor": "none"},
    )


def _references(ax: Axes, volume: Volume, samples: Mapping[Tissue, TissueSample], features: BoneFeatures) -> None:
    sx, sy, _ = volume.spacing
    slices = np.concatenate([s.voxels[:, 2] for s in samples.values()]) if samples else np.array([], dtype=int)
    if slices.size == 0:
        ax.text(0.5, 0.5, "no reference tissue found", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    k = int(np.bincount(slices).argmax())
    img = volume.array[:, :, k]
    _show(ax, img, (sx, sy), (-250.0, 250.0))
    residuals = {
        ref.tissue: ref.residual_mg_cm3 for ref in (features.calibration.references if features.calibration else [])
    }
    for tissue, sample in samples.items():
        on_slice = sample.voxels[sample.voxels[:, 2] == k]
        used = f", residual {residuals[tissue]:+.0f} mg/cm³" if tissue in residuals else ", not used"
        ax.plot(
            on_slice[:, 0] * sx,
            on_slice[:, 1] * sy,
            ".",
            ms=1.2,
            color=_TISSUE_COLOURS[tissue],
            label=f"{tissue} {sample.hu:.0f} HU{used}",
        )
    ax.invert_xaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    cal = features.calibration
    title = "reference tissues" if cal is None else f"references: calibration {cal.status}"
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=5.5, markerscale=6, framealpha=0.7)


def draw_qa_picture(
    volume: Volume,
    results: Sequence[LevelResult],
    features: BoneFeatures,
    samples: Mapping[Tissue, TissueSample],
    path: Path,
) -> Path:
    """Write the QA picture (PNG) to `path` and return it."""
    measurements = {m.level: m for m in features.levels}
    measured = [r for r in results if r.body is not None]
    if not measured:
        raise ImageInputError("nothing to draw: no vertebral body was measured")
    n_tiles = len(measured) + 1
    cols = min(4, n_tiles)
    rows = max(2, math.ceil(n_tiles / cols))
    fig = Figure(figsize=(4.5 + 2.8 * cols, 0.9 + 2.8 * rows), dpi=130)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        rows, cols + 2, left=0.04, right=0.99, top=1 - 0.55 / (0.9 + 2.8 * rows), bottom=0.04, wspace=0.08, hspace=0.18
    )
    fig.suptitle(_header(features), fontsize=8.5, x=0.01, ha="left", y=0.995, va="top", family="monospace")
    _sagittal(fig.add_subplot(grid[:, :2]), volume, measured, measurements)
    for i, r in enumerate(measured):
        _axial(fig.add_subplot(grid[i // cols, 2 + i % cols]), volume, r, measurements[r.info.level])
    j = len(measured)
    _references(fig.add_subplot(grid[j // cols, 2 + j % cols]), volume, samples, features)
    path = Path(path)
    try:
        fig.savefig(path, format="png", facecolor="white")
    except OSError as exc:
        raise ImageInputError(f"cannot write the QA picture to {path}: {exc.strerror or exc}") from exc
    return path
