"""A coarse working copy of the CT (block means, about 2 mm) and the index mapping back to the native grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CoarseGrid:
    """`hu` holds block means of `factors` native voxels; `spacing` is its voxel size in mm."""

    hu: F32
    factors: tuple[int, int, int]
    spacing: tuple[float, float, float]
    native_shape: tuple[int, int, int]
    native_spacing: tuple[float, float, float]

    @staticmethod
    def from_native(
        array: npt.NDArray[np.generic], spacing: tuple[float, float, float], target_mm: float
    ) -> CoarseGrid:
        """Block-average `array` by integer factors that bring each voxel side close to `target_mm`.

        Block means (rather than point samples) lower the noise of low-dose scans before thresholding.
        """
        factors = tuple(max(1, round(target_mm / s)) for s in spacing)
        fx, fy, fz = factors
        nx, ny, nz = (max(1, n // f) for n, f in zip(array.shape, factors, strict=True))
        cropped = np.asarray(array)[: nx * fx, : ny * fy, : nz * fz]
        if cropped.shape != (nx * fx, ny * fy, nz * fz):  # an axis shorter than its factor
            cropped = np.asarray(array)[:nx, :ny, :nz]
            factors = (1, 1, 1)
            fx = fy = fz = 1
        blocks = cropped.reshape(nx, fx, ny, fy, nz, fz)
        hu = blocks.mean(axis=(1, 3, 5), dtype=np.float32)
        return CoarseGrid(
            hu=hu,
            factors=(fx, fy, fz),
            spacing=(spacing[0] * fx, spacing[1] * fy, spacing[2] * fz),
            native_shape=(int(array.shape[0]), int(array.shape[1]), int(array.shape[2])),
            native_spacing=spacing,
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.hu.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    def to_native(self, index: npt.ArrayLike, axis: int) -> F64:
        """Native (fractional) index of the centre of coarse voxel `index` along `axis`."""
        f = self.factors[axis]
        return np.asarray(index, dtype=np.float64) * f + (f - 1) / 2.0

    def to_coarse(self, index: npt.ArrayLike, axis: int) -> F64:
        """Coarse (fractional) index of native voxel `index` along `axis`."""
        f = self.factors[axis]
        return (np.asarray(index, dtype=np.float64) - (f - 1) / 2.0) / f


def noise_sd(hu: F32, mask: npt.NDArray[np.bool_] | None = None) -> float:
    """Robust noise SD (HU) from differences of neighbouring voxels (axis 0) in soft tissue (-150..150 HU).

    The median absolute deviation of the differences ignores tissue edges; dividing by sqrt(2) turns the
    SD of a difference into the SD of one voxel.
    """
    a, b = hu[:-1:2], hu[1::2]
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    soft = (np.abs(a) < 150.0) & (np.abs(b) < 150.0)
    if mask is not None:
        soft &= mask[:-1:2][:n] & mask[1::2][:n]
    diff = (a - b)[soft]
    if diff.size < 100:
        return 0.0
    mad = float(np.median(np.abs(diff - np.median(diff))))
    return 1.4826 * mad / float(np.sqrt(2.0))


def denoised(
    hu: F32, sd: float, limit_hu: float, spacing: tuple[float, float, float], in_plane_only: bool = False
) -> F32:
    """`hu` smoothed by a 1 mm Gaussian when its noise SD exceeds `limit_hu` (low-dose scans)."""
    if sd <= limit_hu:
        return hu
    from scipy import ndimage

    sigma = tuple(1.0 / s for s in spacing)
    if in_plane_only:
        sigma = (sigma[0], sigma[1], 0.0)
    smoothed: F32 = ndimage.gaussian_filter(hu, sigma=sigma).astype(np.float32, copy=False)
    return smoothed
