"""Vertebral body heights on the mid-sagittal plane, and the Genant semi-quantitative grade.

Heights are measured on the body's mid-sagittal plane in the body's own frame (its superior axis follows
the local spine axis, so lordosis and kyphosis do not lengthen them): the body mask is resampled on a
0.5 mm grid of that plane (linear interpolation, threshold 0.5), and the height at an antero-posterior
position is the longest run of body along the superior axis. A quadratic h(t) is fitted (least squares)
to the heights measured from 10 % to 90 % of the body's depth (t = 0 at the posterior margin, 1 at the
anterior margin; the margins are where the height first reaches half its median, and `FIT_MARGIN` keeps
the rounded corners and osteophytes out; columns off the first fit by more than max(2 mm, 3 MAD) are
dropped and the fit repeated), and the posterior, middle and
anterior heights are h(0), h(0.5) and h(1): exact for a normal body, a wedge, a crush and a parabolic
(biconcave) endplate depression. Each is the median over three parallel planes (the mid-sagittal one and
+-2 mm).

Grades follow Genant et al., J Bone Miner Res 1993;8(9):1137-1148, doi:10.1002/jbmr.5650080915, with
the thresholds and the height-loss rule of `imaging/data/genant.json` (see `genant_grade`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from imaging.measure.body import BodyAxes, VertebralBody, largest_component

_STEP_MM = 0.5
_HALF_SPAN_MM = 60.0
_PLANE_OFFSETS_MM = (-2.0, 0.0, 2.0)
FIT_MARGIN = 0.1
MAX_FIT_RMS_MM = 1.5
MAX_FIT_RMS_FRACTION = 0.06


@dataclass(frozen=True)
class Heights:
    """Anterior, middle and posterior heights (mm) and depth (mm) of a vertebral body.

    `fit_rms_mm` is the RMS residual of the height profile around its quadratic fit: an irregular profile
    (a coarse or ragged mask) makes the heights unreliable (`reliable`).

    `segments` holds, for drawing, the three height lines (anterior, middle, posterior) on the mid-sagittal
    plane as (start, end) volume indices (fractional).
    """

    anterior_mm: float
    middle_mm: float
    posterior_mm: float
    depth_mm: float
    fit_rms_mm: float = 0.0
    segments: tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...] = ()


def _longest_run(column: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """(start, stop) of the longest run of True in a 1-D array; (0, 0) when none."""
    if not column.any():
        return (0, 0)
    padded = np.concatenate([[False], column, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, stops = edges[0::2], edges[1::2]
    best = int(np.argmax(stops - starts))
    return (int(starts[best]), int(stops[best]))


def _plane_profile(
    body: VertebralBody, axes: BodyAxes, offset_mm: float, grid: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """Body mask sampled on a sagittal plane: array (anterior position, superior position)."""
    a, s = np.meshgrid(grid, grid, indexing="ij")
    points = (
        body.centroid_mm[:, None, None]
        + offset_mm * axes.right[:, None, None]
        + a[None] * axes.anterior[:, None, None]
        + s[None] * axes.superior[:, None, None]
    )
    index = points / np.asarray(body.spacing)[:, None, None]
    sampled = ndimage.map_coordinates(body.body.astype(np.float32), index, order=1, mode="constant", cval=0.0)
    return largest_component(sampled >= 0.5)


def heights_reliable(heights: Heights) -> bool:
    """True when the height profile fits its quadratic within max(1.5 mm, 6 % of the posterior height)."""
    return heights.fit_rms_mm <= max(MAX_FIT_RMS_MM, MAX_FIT_RMS_FRACTION * heights.posterior_mm)


def _column_heights(profile: npt.NDArray[np.bool_], columns: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    runs = [_longest_run(profile[c]) for c in columns]
    return np.array([(stop - start) * _STEP_MM for start, stop in runs], dtype=np.float64)


def _robust_quadratic(t: npt.NDArray[np.float64], h: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], float]:
    """Least-squares quadratic, refitted once without the columns off by more than max(2 mm, 3 MAD);
    returns the coefficients and the RMS residual (mm) over all the columns."""
    coeffs = np.polyfit(t, h, 2)
    residuals = h - np.polyval(coeffs, t)
    mad = float(np.median(np.abs(residuals - np.median(residuals))))
    keep = np.abs(residuals) <= max(2.0, 3.0 * 1.4826 * mad)
    if keep.sum() >= 5 and not keep.all():
        coeffs = np.polyfit(t[keep], h[keep], 2)
    out: npt.NDArray[np.float64] = coeffs
    return out, float(np.sqrt(np.mean((h - np.polyval(coeffs, t)) ** 2)))


def measure_heights(body: VertebralBody, axes: BodyAxes) -> Heights | None:
    """Heights of the body (see the module docstring); None when the plane shows no body."""
    grid = np.arange(-_HALF_SPAN_MM, _HALF_SPAN_MM + _STEP_MM / 2, _STEP_MM)
    per_plane: list[tuple[float, float, float, float, float]] = []
    segments: list[tuple[tuple[float, float, float], tuple[float, float, float]]] = []
    for offset in _PLANE_OFFSETS_MM:
        profile = _plane_profile(body, axes, offset, grid)
        columns = np.flatnonzero(profile.any(axis=1))
        if columns.size < 8:
            continue
        all_heights = _column_heights(profile, columns)
        # the body's extent: columns at least half the median height (drops thin rims and remnants at the ends)
        solid = columns[all_heights >= 0.5 * float(np.median(all_heights))]
        first, last = int(solid[0]), int(solid[-1])  # posterior and anterior margins
        depth_cols = last - first + 1
        inner = np.arange(first + round(FIT_MARGIN * depth_cols), last - round(FIT_MARGIN * depth_cols) + 1)
        if inner.size < 5:
            continue
        t = (inner - first) / float(last - first)
        coeffs, rms = _robust_quadratic(t, _column_heights(profile, inner))
        h_post, h_mid, h_ant = (max(0.0, float(np.polyval(coeffs, x))) for x in (0.0, 0.5, 1.0))
        per_plane.append((h_ant, h_mid, h_post, depth_cols * _STEP_MM, rms))
        if offset == 0.0:
            for pos in (int(inner[-1]), (first + last) // 2, int(inner[0])):
                start, stop = _longest_run(profile[pos])
                ends = []
                for s_index in (start, max(start, stop - 1)):
                    mm = body.centroid_mm + grid[pos] * axes.anterior + grid[s_index] * axes.superior
                    idx = body.offset + mm / np.asarray(body.spacing)
                    ends.append((float(idx[0]), float(idx[1]), float(idx[2])))
                segments.append((ends[0], ends[1]))
    if not per_plane:
        return None
    med = np.median(np.asarray(per_plane), axis=0)
    return Heights(
        anterior_mm=float(med[0]),
        middle_mm=float(med[1]),
        posterior_mm=float(med[2]),
        depth_mm=float(med[3]),
        fit_rms_mm=float(med[4]),
        segments=tuple(segments),
    )


@cache
def _genant_table() -> tuple[tuple[int, float], ...]:
    text = resources.files("imaging").joinpath("data/genant.json").read_text()
    grades = json.loads(text)["grades"]
    return tuple(sorted((int(g["grade"]), float(g["min_height_loss"])) for g in grades))


def grade_for_loss(loss: float) -> int:
    """Genant grade (0-3) of a fractional height loss, thresholds from `imaging/data/genant.json`."""
    grade = 0
    for candidate, threshold in _genant_table():
        if loss >= threshold:
            grade = candidate
    return grade


@dataclass(frozen=True)
class GenantResult:
    """A level's grade, its height loss (0..1) and which comparison gave it."""

    grade: int
    height_loss: float
    basis: str


def genant_grade(own: Heights, neighbours: list[Heights]) -> GenantResult:
    """Genant grade of a body from its heights and those of its adjacent measured levels.

    loss = max(1 - Ha/Hp, 1 - Hm/max(Ha, Hp), 1 - Hp/median(Hp of neighbours)); negative losses count as 0.
    """
    ha, hm, hp = own.anterior_mm, own.middle_mm, own.posterior_mm
    candidates: dict[str, float] = {}
    if hp > 0:
        candidates["anterior vs posterior height (wedge)"] = 1.0 - ha / hp
    if max(ha, hp) > 0:
        candidates["middle vs anterior/posterior height (biconcave)"] = 1.0 - hm / max(ha, hp)
    reference = [n.posterior_mm for n in neighbours if n.posterior_mm > 0]
    if reference:
        candidates["posterior height vs adjacent levels (crush)"] = 1.0 - hp / float(np.median(reference))
    if not candidates:
        return GenantResult(grade=0, height_loss=0.0, basis="no usable height")
    basis, loss = max(candidates.items(), key=lambda item: item[1])
    loss = max(0.0, loss)
    return GenantResult(grade=grade_for_loss(loss), height_loss=loss, basis=basis)


def grade_levels(heights: Mapping[str, Heights], order: list[str]) -> dict[str, GenantResult]:
    """Genant results of every level with reliable heights (`heights_reliable`); `order` lists the levels
    cranial to caudal (adjacency). Levels with unreliable heights get no grade and serve as no reference."""
    heights = {level: h for level, h in heights.items() if heights_reliable(h)}
    results: dict[str, GenantResult] = {}
    for i, level in enumerate(order):
        if level not in heights:
            continue
        neighbours = [heights[order[j]] for j in (i - 1, i + 1) if 0 <= j < len(order) and order[j] in heights]
        results[level] = genant_grade(heights[level], neighbours)
    return results
