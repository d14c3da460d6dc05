"""Intervertebral discs along the body column, at full resolution, and the vertebral segments between them.

The body column is sampled at native resolution in a "tube": a window that follows the body centre slice by
slice. In each slice, the share of dense voxels (cortical shell and endplates, above `dense_hu`) inside the
body's ellipse is high through a vertebral body (the shell; the endplates) and near zero through a disc,
whatever the trabecular density (osteoporotic bodies of ~50 HU are darker than the disc, but their shell is
not). A disc is a run of slices whose share falls below `disc_ratio` times the running median of the column.
Candidate discs are then thinned and completed so that consecutive discs lie one vertebra apart
(`vertebra_period_mm`); a disc inserted to fill a gap is marked weak.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from imaging.segmentation.builtin.grid import F32, F64, CoarseGrid
from imaging.segmentation.builtin.parameters import BuiltinParameters
from imaging.segmentation.builtin.spine import SpineTrack, straightened

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Tube:
    """Native HU around the body column: `values[u, v, k]` is voxel (origin_x[k] + u, origin_y[k] + v, k)."""

    values: F32
    origin_x: I64
    origin_y: I64
    centre_u: F64
    centre_v: F64
    canal_v: F64
    half_width_mm: F64
    half_depth_mm: F64
    spacing: tuple[float, float, float]

    def ellipse(self, margin_mm: float) -> npt.NDArray[np.bool_]:
        """Per slice, the voxels inside the body's ellipse grown by `margin_mm`."""
        su, sv, _ = self.spacing
        u = np.arange(self.values.shape[0], dtype=np.float64)[:, None, None]
        v = np.arange(self.values.shape[1], dtype=np.float64)[None, :, None]
        du = (u - self.centre_u[None, None, :]) * su / (self.half_width_mm[None, None, :] + margin_mm)
        dv = (v - self.centre_v[None, None, :]) * sv / (self.half_depth_mm[None, None, :] + margin_mm)
        inside: npt.NDArray[np.bool_] = du * du + dv * dv <= 1.0
        return inside


def build_tube(array: npt.NDArray[np.generic], grid: CoarseGrid, track: SpineTrack) -> Tube:
    """Sample the native CT around the body column (body half-sizes + margins that include the canal)."""
    sx, sy, _ = grid.native_spacing
    nz = grid.native_shape[2]
    kc = grid.to_coarse(np.arange(nz), 2)
    coarse_z = np.arange(grid.shape[2], dtype=np.float64)
    bx = grid.to_native(np.interp(kc, coarse_z, track.body_x), 0)
    by = grid.to_native(np.interp(kc, coarse_z, track.body_y), 1)
    cy = grid.to_native(np.interp(kc, coarse_z, track.canal_y), 1)
    hw = np.interp(kc, coarse_z, track.body_half_width_mm)
    hd = np.interp(kc, coarse_z, track.body_half_depth_mm)
    half = (int(np.ceil((hw.max() + 14.0) / sx)), int(np.ceil((hd.max() + 16.0) / sy)))
    values, ox, oy = straightened(np.asarray(array), bx, by, half, fill=-1000.0)
    return Tube(
        values=np.asarray(values, dtype=np.float32),
        origin_x=ox,
        origin_y=oy,
        centre_u=bx - ox,
        centre_v=by - oy,
        canal_v=cy - oy,
        half_width_mm=hw,
        half_depth_mm=hd,
        spacing=grid.native_spacing,
    )


def dense_profile(tube: Tube, params: BuiltinParameters) -> F64:
    """Per native slice, the share of voxels above `dense_hu` inside the body's ellipse (+2 mm)."""
    inside = tube.ellipse(2.0)
    dense = (tube.values > params.dense_hu) & inside
    count = inside.sum(axis=(0, 1)).astype(np.float64)
    profile: F64 = dense.sum(axis=(0, 1)) / np.maximum(count, 1.0)
    return profile


def core_profile(tube: Tube) -> F64:
    """Per native slice, the median HU of the body's core (its ellipse shrunk by 45% of its half-depth)."""
    shrink = -0.45 * float(np.median(tube.half_depth_mm))
    inside = tube.ellipse(shrink)
    values = np.where(inside, tube.values, np.nan).reshape(-1, tube.values.shape[2])
    empty = ~inside.reshape(-1, tube.values.shape[2]).any(axis=0)
    values[:, empty] = -1000.0
    profile: F64 = np.nanmedian(values, axis=0).astype(np.float64)
    return profile


@dataclass(frozen=True)
class Disc:
    """A disc centred at native slice `z` (fractional); `strength` 0..1; `inserted` when it filled a gap."""

    z: float
    low: int
    high: int
    strength: float
    inserted: bool = False


@dataclass(frozen=True)
class Segment:
    """The native slices `low..high` (inclusive) between two discs (or a disc and the scan edge)."""

    low: int
    high: int
    cut_below: bool
    cut_above: bool
    disc_below: Disc | None
    disc_above: Disc | None

    @property
    def centre(self) -> float:
        return (self.low + self.high) / 2.0

    def weak(self) -> bool:
        """True when a bounding disc was weakly detected or inserted."""
        return any(d is not None and (d.inserted or d.strength < 0.5) for d in (self.disc_below, self.disc_above))


def _odd(n: float) -> int:
    return max(1, round(n)) | 1


def find_discs(core: F64, dense: F64, slice_mm: float, params: BuiltinParameters) -> tuple[list[Disc], F64]:
    """Discs along the column (caudal to cranial) and the disc score profile used to find them.

    A disc is a narrow trough of the core's HU between two endplates: the black top-hat of the core profile
    (grey closing over `disc_window_mm` minus the profile) is high across a disc, whatever the trabecular
    density, and near zero inside a body taller than the window. A trough in slices that keep a dense
    cortical ring (a crushed body's interior) counts less: the score is halved where the ring's share reaches
    the column's median, and left whole below half of it (a disc; endplates blur into it at 3-5 mm).
    """
    n = len(core)
    size = max(3, round(params.disc_window_mm / slice_mm)) | 1
    tophat = ndimage.grey_closing(core, size=size, mode="nearest") - core
    rim = dense / max(float(np.median(dense)), 0.02)
    score: F64 = tophat * (1.0 - 0.5 * np.clip(2.0 * rim - 1.0, 0.0, 1.0))
    runs, count = ndimage.label(score >= params.disc_min_contrast_hu)
    discs: list[Disc] = []
    for label in range(1, count + 1):
        idx = np.nonzero(runs == label)[0]
        weights = score[idx]
        centre = float(np.sum(idx * weights) / max(float(np.sum(weights)), 1e-9))
        peak = float(score[idx].max())
        strength = float(np.clip(peak / (2.0 * params.disc_min_contrast_hu), 0.0, 1.0))
        # the run of a trough is widened by the closing window: keep at most 4 mm either side of its centre
        half = 4.0 / slice_mm
        low = max(int(idx.min()), int(np.ceil(centre - half)))
        high = min(int(idx.max()), int(np.floor(centre + half)))
        low, high = min(low, round(centre)), max(high, round(centre))
        discs.append(Disc(z=centre, low=low, high=high, strength=strength))
    discs = _thin(discs, slice_mm, params.vertebra_period_mm[0])
    discs = _fill_gaps(discs, -score, slice_mm, params.vertebra_period_mm, n)
    return discs, score


def _thin(discs: list[Disc], slice_mm: float, min_period_mm: float) -> list[Disc]:
    """Drop the weaker of two discs closer than one minimal vertebra (a fracture line, a vein, noise)."""
    kept = sorted(discs, key=lambda d: d.z)
    changed = True
    while changed and len(kept) > 1:
        changed = False
        for a, b in itertools.pairwise(kept):
            if (b.z - a.z) * slice_mm < min_period_mm:
                kept.remove(a if a.strength < b.strength else b)
                changed = True
                break
    return kept


def _fill_gaps(discs: list[Disc], ratio: F64, slice_mm: float, period_mm: tuple[float, float], n: int) -> list[Disc]:
    """Insert weak discs at the deepest minima of a gap longer than one vertebra can be."""
    if len(discs) < 2:
        return discs
    gaps = [(b.z - a.z) * slice_mm for a, b in itertools.pairwise(discs)]
    normal = [g for g in gaps if g <= period_mm[1]]
    typical = float(np.median(normal)) if normal else 0.5 * (period_mm[0] + period_mm[1])
    out = [discs[0]]
    for a, b, gap in zip(discs, discs[1:], gaps, strict=False):
        if gap > period_mm[1]:
            missing = max(1, round(gap / typical) - 1)
            lo, hi = int(np.ceil(a.z)) + 1, int(np.floor(b.z))
            minima = [k for k in range(lo + 1, hi) if ratio[k] <= ratio[k - 1] and ratio[k] <= ratio[k + 1]]
            minima.sort(key=lambda k: ratio[k])
            chosen: list[int] = []
            for k in minima:
                spaced = all(abs(k - c) * slice_mm >= period_mm[0] for c in (*chosen, a.z, b.z))
                if spaced:
                    chosen.append(k)
                if len(chosen) == missing:
                    break
            if not chosen:  # no minimum: split the gap evenly
                chosen = [round(a.z + (b.z - a.z) * (i + 1) / (missing + 1)) for i in range(missing)]
            for k in sorted(chosen):
                out.append(Disc(z=float(k), low=int(k), high=int(k), strength=0.0, inserted=True))
        out.append(b)
    return sorted(out, key=lambda d: d.z)


def segments_between(discs: list[Disc], n: int, slice_mm: float, min_height_mm: float = 8.0) -> list[Segment]:
    """Vertebral segments between consecutive discs, and at both ends between a disc and the scan edge."""
    segments: list[Segment] = []
    bounds: list[Disc | None] = [None, *discs, None]
    for below, above in itertools.pairwise(bounds):
        low = below.high + 1 if below is not None else 0
        high = above.low - 1 if above is not None else n - 1
        if high < low or (high - low + 1) * slice_mm < min_height_mm:
            continue
        segments.append(
            Segment(
                low=low,
                high=high,
                cut_below=below is None,
                cut_above=above is None,
                disc_below=below,
                disc_above=above,
            )
        )
    return segments


def disc_near(
    discs: list[Disc], score: F64, low: float, high: float, slice_mm: float, min_period_mm: float
) -> tuple[list[Disc], Disc]:
    """The disc whose centre lies in native slices [low, high] (the highest one), inserting a weak disc at the
    strongest score there when none was found (e.g. the oblique L5/S1 disc just above the sacrum)."""
    inside = [d for d in discs if low <= d.z <= high]
    if inside:
        return discs, max(inside, key=lambda d: d.z)
    lo, hi = max(0, int(np.floor(low))), min(len(score) - 1, int(np.ceil(high)))
    k = int(np.clip(round((low + high) / 2), 0, len(score) - 1)) if hi < lo else lo + int(np.argmax(score[lo : hi + 1]))
    inserted = Disc(z=float(k), low=k, high=k, strength=0.0, inserted=True)
    kept = [d for d in discs if abs(d.z - k) * slice_mm >= min_period_mm / 2]
    return sorted([*kept, inserted], key=lambda d: d.z), inserted
