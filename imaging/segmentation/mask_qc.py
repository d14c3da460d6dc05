"""Quality checks of one vertebra's mask, shared by every backend: cut by the scan edge, fragmented, too small.

Each check lowers the level's confidence by a fixed factor (`MaskQcPolicy`) and adds a `LevelFlag`. The
thresholds are deliberately loose: a whole adult thoracolumbar vertebral body is 15-50 ml (body volumes
from the dimensions in Panjabi et al., Spine 1991;16(8):888-901, doi:10.1097/00007632-199108000-00006 and
Spine 1992;17(3):299-306, doi:10.1097/00007632-199203000-00010), so 3 ml is far below any whole body.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from imaging.segmentation.base import LevelFlag


@dataclass(frozen=True)
class MaskQcPolicy:
    """Thresholds and confidence factors of the mask checks (keyword-only, checked at construction)."""

    min_volume_ml: float = 3.0
    fragment_min_fraction: float = 0.10
    cut_factor: float = 0.6
    fragmented_factor: float = 0.8
    small_factor: float = 0.5

    def __post_init__(self) -> None:
        if self.min_volume_ml < 0:
            raise ValueError(f"min_volume_ml must be >= 0, got {self.min_volume_ml}")
        if not 0 < self.fragment_min_fraction <= 1:
            raise ValueError(f"fragment_min_fraction must lie in (0, 1], got {self.fragment_min_fraction}")
        for name in ("cut_factor", "fragmented_factor", "small_factor"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")


@dataclass(frozen=True)
class MaskQc:
    """What the checks found for one level's mask."""

    volume_ml: float
    n_components: int
    flags: tuple[str, ...]
    confidence: float


def assess_mask(
    mask: npt.NDArray[np.bool_],
    *,
    offset: tuple[int, int, int],
    full_shape: tuple[int, int, int],
    voxel_volume_ml: float,
    policy: MaskQcPolicy,
    check_in_plane_edges: bool = True,
) -> MaskQc:
    """Check one level's mask, given as a crop (`mask`) starting at `offset` of a `full_shape` volume.

    Cut by the scan edge: the mask reaches the first or last slice (axis 2) or, when `check_in_plane_edges`,
    the in-plane border of the field of view. Fragmented: more than one connected part (26-connectivity)
    holding at least `fragment_min_fraction` of the largest part.
    """
    n_voxels = int(mask.sum())
    volume_ml = n_voxels * voxel_volume_ml
    flags: list[str] = []
    confidence = 1.0
    if n_voxels == 0:
        return MaskQc(0.0, 0, (LevelFlag.SMALL_MASK.value,), 0.0)

    axes = (0, 1, 2) if check_in_plane_edges else (2,)
    cut = False
    for axis in axes:
        lo = offset[axis]
        hi = offset[axis] + mask.shape[axis]
        if lo == 0 and np.any(np.take(mask, 0, axis=axis)):
            cut = True
        if hi == full_shape[axis] and np.any(np.take(mask, mask.shape[axis] - 1, axis=axis)):
            cut = True
    if cut:
        flags.append(LevelFlag.CUT_BY_SCAN_EDGE.value)
        confidence *= policy.cut_factor

    components, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(components.ravel())[1:] if n else np.zeros(0, dtype=np.int64)
    substantial = int(np.sum(sizes >= policy.fragment_min_fraction * sizes.max())) if n else 0
    if substantial > 1:
        flags.append(LevelFlag.FRAGMENTED.value)
        confidence *= policy.fragmented_factor

    if volume_ml < policy.min_volume_ml:
        flags.append(LevelFlag.SMALL_MASK.value)
        confidence *= policy.small_factor
    return MaskQc(volume_ml=volume_ml, n_components=substantial, flags=tuple(flags), confidence=confidence)
