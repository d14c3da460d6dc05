"""Vertebral body masks at full resolution, inside the tube around the body column.

In each slice of a segment, voxels above `body_fill_hu` (the cortical shell and endplates, and trabecular bone
unless osteoporotic; not muscle, blood or disc) inside the body's ellipse (grown by 4 mm) and in front of the
canal are closed and hole-filled: the region enclosed by the cortex. A structure lying against the body (an
enhanced or calcified aorta, a crus) is cut off by an erosion of `neck_cut_mm`, keeping the piece nearest
the body's centre. Where the shell is too thin to close (osteoporosis, partial volume) and leaves a bay, the
convex hull of that piece stands in. Slices far smaller than the segment's typical section (the edge of a disc) are
dropped and the largest connected part is kept. Posterior elements are excluded: the masks are bodies only.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.morphology import convex_hull_image

from imaging.segmentation.builtin.discs import Segment, Tube
from imaging.segmentation.builtin.parameters import BuiltinParameters
from imaging.segmentation.builtin.spine import disk

B = npt.NDArray[np.bool_]


def _central_part(region: B, cu: float, cv: float, radius_mm: float, spacing: tuple[float, float]) -> B:
    """The part of a slice's region around the body centre: eroded by `radius_mm` (cutting a vessel or crus
    that lies against the body), the piece nearest the centre kept and grown back inside the region.

    Erosion and dilation by a disk are thresholds of Euclidean distance maps (fast for large radii).
    """
    cores = ndimage.distance_transform_edt(region, sampling=spacing) > radius_mm
    labels, n = ndimage.label(cores)
    if n == 0:
        return region
    if n == 1:
        opened: B = _grown(cores, radius_mm, spacing) & region
        return opened
    centres = np.asarray(ndimage.center_of_mass(cores, labels, np.arange(1, n + 1)))
    nearest = 1 + int(np.argmin(np.hypot(centres[:, 0] - cu, centres[:, 1] - cv)))
    kept: B = _grown(labels == nearest, radius_mm, spacing) & region
    return kept


def _grown(mask: B, radius_mm: float, spacing: tuple[float, float]) -> B:
    grown: B = ndimage.distance_transform_edt(~mask, sampling=spacing) <= radius_mm
    return grown


def body_mask(tube: Tube, segment: Segment, params: BuiltinParameters) -> B:
    """The body of `segment` as a mask over the tube's slices `segment.low..segment.high` (u, v, k)."""
    su, sv, _ = tube.spacing
    ks = slice(segment.low, segment.high + 1)
    values = tube.values[:, :, ks]
    # The ROI runs from just in front of the canal to the body's front (+4 mm), as wide as the body (+4 mm).
    u = np.arange(values.shape[0], dtype=np.float64)[:, None, None]
    v = np.arange(values.shape[1], dtype=np.float64)[None, :, None]
    back = tube.canal_v[ks] + 4.0 / sv
    front = np.maximum(tube.centre_v[ks] + (tube.half_depth_mm[ks] + 4.0) / sv, back + 10.0 / sv)
    mid, half_v = (back + front) / 2, (front - back) / 2
    half_u = (tube.half_width_mm[ks] + 4.0) / su
    du = (u - tube.centre_u[ks][None, None, :]) / half_u[None, None, :]
    dv = (v - mid[None, None, :]) / half_v[None, None, :]
    roi = (du * du + dv * dv <= 1.0) | ((np.abs(du) <= 0.8) & (np.abs(dv) <= 1.0) & (v < mid[None, None, :]))
    bone = (values > params.body_fill_hu) & roi
    structure = disk(1.5, tube.spacing)[:, :, 0]
    mask = np.zeros(values.shape, dtype=bool)
    for k in range(values.shape[2]):
        section = bone[:, :, k]
        if section.sum() < 4:
            continue
        closed = ndimage.binary_closing(section, structure=structure)
        filled = ndimage.binary_fill_holes(closed) & roi[:, :, k]
        central = _central_part(filled, tube.centre_u[segment.low + k], mid[k], params.neck_cut_mm, (su, sv))
        if central.sum() < 4:
            continue
        hull = convex_hull_image(central) & roi[:, :, k]
        mask[:, :, k] = hull if central.sum() < 0.85 * hull.sum() else central
    areas = mask.sum(axis=(0, 1))
    if areas.max() == 0:
        return mask
    typical = float(np.median(areas[areas > 0]))
    mask[:, :, areas < 0.3 * typical] = False
    labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        mask = labels == int(np.argmax(sizes))
    return mask


def paste(
    out: npt.NDArray[np.integer], tube: Tube, segment: Segment, mask: B, label: int
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Write `label` into the native label array `out` where `mask` (tube coordinates) is set.

    Returns the inclusive native bounding box (low corner, high corner) of what was written.
    """
    u, v, k = np.nonzero(mask)
    kk = k + segment.low
    x = tube.origin_x[kk] + u
    y = tube.origin_y[kk] + v
    inside = (x >= 0) & (x < out.shape[0]) & (y >= 0) & (y < out.shape[1])
    x, y, kk = x[inside], y[inside], kk[inside]
    free = out[x, y, kk] == 0
    out[x[free], y[free], kk[free]] = label
    if len(x) == 0:
        return (0, 0, 0), (0, 0, 0)
    return (int(x.min()), int(y.min()), int(kk.min())), (int(x.max()), int(y.max()), int(kk.max()))
