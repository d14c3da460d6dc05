"""Axis orientation helpers: reorienting arrays between axis codes, and DICOM LPS <-> RAS affines.

Axis codes follow nibabel: each letter is the direction an array axis points to (increasing index), in
patient terms (R/L, A/P, S/I). The canonical orientation of `imaging` is "RAS" (see `imaging.io`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from nibabel import orientations as nio

from imaging.errors import GeometryError

LPS_TO_RAS: npt.NDArray[np.float64] = np.diag([-1.0, -1.0, 1.0, 1.0])
"""DICOM patient coordinates (LPS) <-> NIfTI/RAS scanner coordinates: negate x and y (an involution)."""

_FAMILY = {"R": "x", "L": "x", "A": "y", "P": "y", "S": "z", "I": "z"}


def axcodes(affine: npt.NDArray[np.float64]) -> str:
    """The axis codes of an affine, e.g. "RAS", "LPS", "PIL"."""
    return "".join(str(c) for c in nio.aff2axcodes(affine))


def reorient(
    array: npt.NDArray[np.generic], affine: npt.NDArray[np.float64], codes: str
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    """Permute and flip `array` so that its axes point along `codes`; returns a view and the new affine.

    Only axis permutations and flips: no resampling, so an oblique affine stays oblique (the closest axes
    are chosen, as nibabel's `as_closest_canonical` does).
    """
    upper = codes.upper()
    families = sorted(_FAMILY.get(c, "?") for c in upper)
    if len(upper) != 3 or families != ["x", "y", "z"]:
        raise GeometryError(
            f"orientation must be three axis letters, one each of R/L, A/P, S/I (e.g. 'RAS', 'LPS'), got {codes!r}"
        )
    target = nio.axcodes2ornt(tuple(upper))
    source = nio.io_orientation(affine)
    transform = nio.ornt_transform(source, target)
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return array, affine
    out = nio.apply_orientation(array, transform)
    new_affine = affine @ nio.inv_ornt_aff(transform, array.shape)
    return out, new_affine
