"""The vertebral body inside a whole-vertebra mask (pedicle cut), and the body's own axes.

Label maps such as TotalSegmentator's cover the whole vertebra: body, pedicles, laminae, transverse and
spinous processes. Trabecular density is measured in the body only, so the posterior elements are cut
off first, as in QCT practice (the ROI lies in the anterior part of the body, away from the pedicles and
the posterior venous plexus: Pickhardt et al., Ann Intern Med 2013;158(8):588-595,
doi:10.7326/0003-4819-158-8-201304160-00003).

Rule (canonical RAS+ volume: array axis 1 points anterior, axis 2 superior):
1. On a thin mid-sagittal slab of the vertebra mask (+-`slab_half_width_mm` around the mask's left-right
   centre) the vertebral canal separates the body from the posterior arch: the body is the most anterior
   connected component of that slab (components under 15 % of the largest are ignored).
2. Its posterior edge, row by row (per axial slice), is the posterior wall of the body. The pedicle cut
   keeps the vertebra voxels anterior to that wall, within the body's superior-inferior extent; the
   largest 3-D connected part is the body.
3. Masks that are already body-only (`VertebraSegmentation.body_only`) skip the cut. When the slab shows a
   single component (canal not resolved, e.g. very thick slices), the same cut is made from that component
   and the method is recorded as "no_canal_seen" (the QC layer reports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

BodyMethod = Literal["sagittal_split", "body_only", "no_canal_seen"]

_MIN_COMPONENT_FRACTION = 0.15


@dataclass(frozen=True)
class BodyAxes:
    """Unit vectors of a vertebral body in millimetre space (array index * spacing).

    `superior` follows the local spine axis; `anterior` is the array's anterior axis made orthogonal to it;
    `right` completes the frame.
    """

    superior: npt.NDArray[np.float64]
    anterior: npt.NDArray[np.float64]
    right: npt.NDArray[np.float64]

    @classmethod
    def from_superior(cls, superior: npt.ArrayLike, *, max_tilt_deg: float = 45.0) -> BodyAxes:
        """Axes from a superior direction (mm space); tilts beyond `max_tilt_deg` fall back to the array's axis."""
        v = np.asarray(superior, dtype=np.float64)
        norm = float(np.linalg.norm(v))
        if norm == 0.0 or not np.all(np.isfinite(v)):
            v = np.array([0.0, 0.0, 1.0])
        else:
            v = v / norm
            if v[2] < 0:
                v = -v
            if np.degrees(np.arccos(np.clip(v[2], -1.0, 1.0))) > max_tilt_deg:
                v = np.array([0.0, 0.0, 1.0])
        a = np.array([0.0, 1.0, 0.0]) - v[1] * v
        a /= np.linalg.norm(a)
        r = np.cross(a, v)
        return cls(superior=v, anterior=a, right=r / np.linalg.norm(r))


@dataclass(frozen=True)
class VertebralBody:
    """A vertebral body cut out of its vertebra, in a box of the volume.

    Masks are boolean arrays of the box's shape; `box` gives the box's slices into the volume.
    `centroid_mm` is the body's centroid in box millimetres (box index * spacing).
    """

    box: tuple[slice, slice, slice]
    spacing: tuple[float, float, float]
    vertebra: npt.NDArray[np.bool_]
    body: npt.NDArray[np.bool_]
    method: BodyMethod
    centroid_mm: npt.NDArray[np.float64]

    @property
    def offset(self) -> npt.NDArray[np.int64]:
        """Volume index of the box's first voxel."""
        return np.array([s.start for s in self.box], dtype=np.int64)

    def centroid_index(self) -> npt.NDArray[np.float64]:
        """The body's centroid as a (fractional) volume index."""
        return self.offset + self.centroid_mm / np.asarray(self.spacing)


def padded_box(
    box: tuple[slice, slice, slice], shape: tuple[int, int, int], spacing: tuple[float, float, float], margin_mm: float
) -> tuple[slice, slice, slice]:
    """`box` grown by `margin_mm` on every side, clipped to the volume."""
    out = []
    for s, n, sp in zip(box, shape, spacing, strict=True):
        pad = int(np.ceil(margin_mm / sp))
        out.append(slice(max(0, int(s.start) - pad), min(n, int(s.stop) + pad)))
    return (out[0], out[1], out[2])


def largest_component(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The largest 26-connected component of a 3-D (or 8-connected of a 2-D) mask."""
    labelled, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(labelled.ravel())[1:]
    out: npt.NDArray[np.bool_] = labelled == (int(np.argmax(sizes)) + 1)
    return out


def _sagittal_body_component(
    vertebra: npt.NDArray[np.bool_], spacing: tuple[float, float, float], slab_half_width_mm: float
) -> tuple[npt.NDArray[np.bool_], int]:
    """(Body component on the mid-sagittal slab as a (y, z) mask, number of slab components)."""
    xs = np.nonzero(vertebra.any(axis=(1, 2)))[0]
    weights = vertebra.sum(axis=(1, 2))[xs]
    x_mid = float(np.average(xs, weights=weights))
    half = max(0, round(slab_half_width_mm / spacing[0]))
    x0, x1 = max(0, round(x_mid) - half), min(vertebra.shape[0], round(x_mid) + half + 1)
    slab = vertebra[x0:x1].any(axis=0)
    labelled, n = ndimage.label(slab, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return np.zeros(slab.shape, dtype=bool), 0
    sizes = np.bincount(labelled.ravel())[1:]
    keep = np.nonzero(sizes >= _MIN_COMPONENT_FRACTION * sizes.max())[0] + 1
    ys = np.arange(slab.shape[0], dtype=np.float64)[:, None]
    mean_y = [float((ys * (labelled == lab)).sum() / sizes[lab - 1]) for lab in keep]
    body_label = int(keep[int(np.argmax(mean_y))])
    return labelled == body_label, len(keep)


def extract_body(
    vertebra: npt.NDArray[np.bool_],
    box: tuple[slice, slice, slice],
    spacing: tuple[float, float, float],
    *,
    body_only: bool = False,
    slab_half_width_mm: float = 3.0,
) -> VertebralBody | None:
    """Cut the vertebral body out of a whole-vertebra mask (see the module docstring); None if the mask is empty."""
    if not vertebra.any():
        return None
    method: BodyMethod
    if body_only:
        body = largest_component(vertebra)
        method = "body_only"
    else:
        component, n_components = _sagittal_body_component(vertebra, spacing, slab_half_width_mm)
        method = "sagittal_split" if n_components >= 2 else "no_canal_seen"
        rows = np.nonzero(component.any(axis=0))[0]  # z indices where the body shows on the slab
        if rows.size == 0:
            return None
        ny = component.shape[0]
        # posterior wall per axial slice: the lowest anterior-axis index of the body component
        first_y = np.where(component.any(axis=0), np.argmax(component, axis=0), ny)
        wall = ndimage.median_filter(first_y[rows[0] : rows[-1] + 1], size=3, mode="nearest")
        keep = np.zeros(vertebra.shape, dtype=bool)
        y_index = np.arange(ny)[:, None]
        keep[:, :, rows[0] : rows[-1] + 1] = (y_index >= wall[None, :])[None, :, :]
        body = largest_component(vertebra & keep)
    if not body.any():
        return None
    idx = np.argwhere(body).astype(np.float64)
    centroid_mm = idx.mean(axis=0) * np.asarray(spacing)
    return VertebralBody(box=box, spacing=spacing, vertebra=vertebra, body=body, method=method, centroid_mm=centroid_mm)


def body_coordinates(
    body: VertebralBody, axes: BodyAxes, mask: npt.NDArray[np.bool_] | None = None, *, stride: int = 1
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """(Voxel indices (n, 3) of `mask` (default the body), their (n, 3) coordinates in mm along the body's
    (right, anterior, superior) axes, relative to the body centroid). `stride` keeps every n-th voxel
    (enough for percentiles, several times faster)."""
    where = body.body if mask is None else mask
    idx = np.argwhere(where)[::stride]
    rel = idx * np.asarray(body.spacing) - body.centroid_mm
    basis = np.stack([axes.right, axes.anterior, axes.superior], axis=1)
    return idx, rel @ basis
