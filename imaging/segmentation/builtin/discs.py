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
from scipy.signal import find_peaks

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
    rim: float = 0.0
    score: float = 0.0


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
    # Thick slices (4-5 mm) blur one of a disc's two endplates away, so the trough fades; there, the gap in
    # the cortical ring weighs in, up to `disc_min_contrast_hu` at 5 mm (nothing at 2.5 mm and below).
    weight = params.disc_min_contrast_hu * float(np.clip((slice_mm - 2.5) / 2.5, 0.0, 1.0))
    score = score + weight * np.clip(1.0 - rim, 0.0, 1.0)
    # padded so that a disc at the first or last slice is a peak too
    padded = np.concatenate(([0.0], score, [0.0]))
    peaks, _ = find_peaks(padded, height=params.disc_min_contrast_hu, distance=max(1, round(6.0 / slice_mm)))
    peaks = peaks - 1
    discs: list[Disc] = []
    half = 3.0 / slice_mm  # a disc spans at most 3 mm either side of its centre here
    for peak in peaks:
        lo = max(0, int(np.floor(peak - half)))
        hi = min(n - 1, int(np.ceil(peak + half)))
        idx = np.arange(lo, hi + 1)
        idx = idx[score[idx] >= params.disc_min_contrast_hu]
        weights = score[idx]
        centre = float(np.sum(idx * weights) / max(float(np.sum(weights)), 1e-9))
        value = float(score[peak])
        strength = float(np.clip(value / (2.0 * params.disc_min_contrast_hu), 0.0, 1.0))
        low, high = min(int(idx.min()), round(centre)), max(int(idx.max()), round(centre))
        discs.append(Disc(z=centre, low=low, high=high, strength=strength, rim=float(rim[peak]), score=value))
    discs = _thin(discs, slice_mm, params.vertebra_period_mm[0])
    discs = _drop_mid_body(discs)
    discs = _fill_gaps(discs, -score, slice_mm, params.vertebra_period_mm, n)
    discs = _drop_mid_body(discs)  # a gap filled next to a split body exposes the split
    return discs, score


def _drop_mid_body(discs: list[Disc]) -> list[Disc]:
    """Drop a "disc" that splits one vertebra in two (the middle of a biconcave body, a vein, a streak).

    Against the period T (median of the other gaps): the shorter gap beside it is under 0.6 T, the two
    gaps together make about one period (0.75-1.35 T), and its slices keep clearly more of the cortical ring
    than its neighbours. At either end of the column, a candidate under 0.6 T from its only neighbour with a
    ring (0.5 above it) goes too.
    """
    kept = list(discs)
    changed = True
    while changed and len(kept) >= 3:
        changed = False
        z = np.array([d.z for d in kept])
        gaps = np.diff(z)
        for i, b in enumerate(kept):
            others = [g for j, g in enumerate(gaps) if j not in (i - 1, i)]
            period = float(np.median(others)) if others else float(np.median(gaps))
            if 0 < i < len(kept) - 1:
                a, c = kept[i - 1], kept[i + 1]
                split = min(b.z - a.z, c.z - b.z) < 0.6 * period and 0.75 * period <= c.z - a.z <= 1.35 * period
                if split and b.rim >= max(a.rim, c.rim) + 0.3:
                    kept.remove(b)
                    changed = True
                    break
            else:
                a = kept[1] if i == 0 else kept[-2]
                if abs(b.z - a.z) < 0.6 * period and b.rim >= a.rim + 0.5:
                    kept.remove(b)
                    changed = True
                    break
    return kept


def _disc_likeness(disc: Disc) -> tuple[bool, float]:
    """Ranks conflicting candidates: one without a cortical ring (rim share below half the column's) beats
    one with it, then the higher score wins."""
    return (disc.rim < 0.5, disc.score)


def _thin(discs: list[Disc], slice_mm: float, min_period_mm: float) -> list[Disc]:
    """Drop the weaker of two discs closer than one minimal vertebra (a fracture line, a vein, noise)."""
    kept = sorted(discs, key=lambda d: d.z)
    changed = True
    while changed and len(kept) > 1:
        changed = False
        for a, b in itertools.pairwise(kept):
            if (b.z - a.z) * slice_mm < min_period_mm:
                kept.remove(a if _disc_likeness(a) < _disc_likeness(b) else b)
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


def segments_between(discs: list[Disc], n: int, slice_mm: float, min_height_mm: float = 5.0) -> list[Segment]:
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
    """The disc whose centre lies in native slices [low, high] (the one nearest their middle), inserting a weak
    disc at the strongest score there when none was found (e.g. the oblique L5/S1 disc next to the alae)."""
    inside = [d for d in discs if low <= d.z <= high]
    if inside:
        middle = (low + high) / 2
        return discs, min(inside, key=lambda d: abs(d.z - middle))
    lo, hi = max(0, int(np.floor(low))), min(len(score) - 1, int(np.ceil(high)))
    k = int(np.clip(round((low + high) / 2), 0, len(score) - 1)) if hi < lo else lo + int(np.argmax(score[lo : hi + 1]))
    inserted = Disc(z=float(k), low=k, high=k, strength=0.0, inserted=True)
    kept = [d for d in discs if abs(d.z - k) * slice_mm >= min_period_mm / 2]
    return sorted([*kept, inserted], key=lambda d: d.z), inserted
