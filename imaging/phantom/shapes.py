"""Signed-distance primitives and a painting canvas for the phantom.

Every primitive returns an approximate signed distance in mm, positive inside. A structure is painted with
an anti-aliased coverage `clip(0.5 + d / voxel, 0, 1)` so that edges carry partial-volume values as in a
real CT, and the dominant tissue (coverage > 0.5) is recorded in the tissue and label maps.
Coordinates are RAS millimetres; the canvas grid is axis-aligned (a diagonal affine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


def ellipse_sdf(x: F32, y: F32, a: float | np.floating | F32, b: float | np.floating | F32) -> F32:
    """Signed distance (approximate, exact on the axes) to the ellipse x²/a² + y²/b² = 1."""
    r = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    length = np.sqrt(x * x + y * y)
    ray = np.where(r > 1e-6, length / np.maximum(r, 1e-6), np.minimum(a, b))
    return ((1.0 - r) * ray).astype(np.float32)


def segment_sdf(
    x: F32, y: F32, z: F32, p0: tuple[float, float, float], p1: tuple[float, float, float], radius: float
) -> F32:
    """Signed distance to a capsule: the segment p0-p1 thickened by `radius`."""
    d = np.subtract(p1, p0, dtype=np.float64)
    dd = float(d @ d) or 1e-9
    px, py, pz = x - p0[0], y - p0[1], z - p0[2]
    t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / dd, 0.0, 1.0)
    qx, qy, qz = px - t * d[0], py - t * d[1], pz - t * d[2]
    return (radius - np.sqrt(qx * qx + qy * qy + qz * qz)).astype(np.float32)


def box_sdf(x: F32, y: F32, z: F32, half: tuple[float, float, float], rounding: float = 1.0) -> F32:
    """Signed distance to a box centred at the origin with half-sizes `half` and rounded edges."""
    qx = np.abs(x) - (half[0] - rounding)
    qy = np.abs(y) - (half[1] - rounding)
    qz = np.abs(z) - (half[2] - rounding)
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2 + np.maximum(qz, 0) ** 2)
    inside = np.minimum(np.maximum(qx, np.maximum(qy, qz)), 0)
    return (rounding - outside - inside).astype(np.float32)


def coverage(d: F32, voxel_mm: float) -> F32:
    """Anti-aliased coverage of a voxel by a shape at signed distance `d` (mm)."""
    return np.clip(0.5 + d / voxel_mm, 0.0, 1.0).astype(np.float32)


@dataclass
class Region:
    """A box of the canvas: index slices and broadcastable RAS coordinates (mm) of its voxel centres."""

    slices: tuple[slice, slice, slice]
    x: F32  # shape (nx, 1, 1)
    y: F32  # shape (1, ny, 1)
    z: F32  # shape (1, 1, nz)

    @property
    def empty(self) -> bool:
        return any(s.stop <= s.start for s in self.slices)


class Canvas:
    """HU, tissue and label arrays on an axis-aligned RAS grid, painted structure by structure."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        spacing: tuple[float, float, float],
        origin: tuple[float, float, float],
        background_hu: float,
    ) -> None:
        self.shape = shape
        self.spacing = spacing
        self.origin = origin
        self.hu: F32 = np.full(shape, background_hu, dtype=np.float32)
        self.tissue = np.zeros(shape, dtype=np.uint8)
        self.labels = np.zeros(shape, dtype=np.uint8)
        self.body_labels = np.zeros(shape, dtype=np.uint8)
        self.voxel_mm = float(np.cbrt(spacing[0] * spacing[1] * spacing[2]))
        self._axes = [(origin[i] + spacing[i] * np.arange(shape[i])).astype(np.float32) for i in range(3)]

    @property
    def affine(self) -> npt.NDArray[np.float64]:
        affine = np.diag([*self.spacing, 1.0])
        affine[:3, 3] = self.origin
        return affine

    def region(self, lo: tuple[float, float, float], hi: tuple[float, float, float]) -> Region:
        """The part of the grid inside the RAS box [lo, hi] (mm), clipped to the canvas."""
        slices = []
        for i in range(3):
            start = int(np.floor((min(lo[i], hi[i]) - self.origin[i]) / self.spacing[i]))
            stop = int(np.ceil((max(lo[i], hi[i]) - self.origin[i]) / self.spacing[i])) + 1
            slices.append(slice(max(start, 0), max(min(stop, self.shape[i]), 0)))
        sx, sy, sz = slices
        return Region(
            slices=(sx, sy, sz),
            x=self._axes[0][sx][:, None, None],
            y=self._axes[1][sy][None, :, None],
            z=self._axes[2][sz][None, None, :],
        )

    def full(self) -> Region:
        return self.region(
            tuple(self._axes[i][0] for i in range(3)),  # type: ignore[arg-type]
            tuple(self._axes[i][-1] for i in range(3)),  # type: ignore[arg-type]
        )

    def paint(
        self,
        region: Region,
        d: F32,
        hu: float | F32,
        tissue: int,
        *,
        label: int | None = None,
        body_label: int | None = None,
        voxel_mm: float | None = None,
    ) -> None:
        """Composite a structure with signed distance `d` over `region` (later structures cover earlier ones)."""
        if region.empty:
            return
        shape = tuple(s.stop - s.start for s in region.slices)
        cov = coverage(np.asarray(d, dtype=np.float32), voxel_mm or self.voxel_mm)
        target = self.hu[region.slices]
        target += cov * (hu - target)
        dominant = np.broadcast_to(cov > 0.5, shape)
        self.tissue[region.slices][dominant] = tissue
        if label is not None:
            self.labels[region.slices][dominant] = label
        if body_label is not None:
            self.body_labels[region.slices][dominant] = body_label
