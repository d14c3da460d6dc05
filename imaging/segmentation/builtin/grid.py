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
