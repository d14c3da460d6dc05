"""Finding the vertebral column on the coarse grid: the torso, the spinal canal, the body column.

1. Torso: the largest connected region denser than air.
2. Spinal canal: in a window around the torso's left-right middle and the back 40% of its depth, voxels of
   fluid density enclosed by bone in at least 7 of 8 in-plane directions (the ring of body, pedicles and
   laminae; one open direction is allowed for the foramina), in regions of a canal's size. The inside of
   an osteoporotic body looks alike but lies in front of a smaller canal. The longest chain of candidates
   that is continuous along z (dynamic programming) is the canal.
3. Body column: anterior to the canal, the filled cortical ring of the vertebral body (hole-filled bone);
   its centre, width and depth are interpolated along z.

All coordinates here are coarse-grid indices (floats); `SpineTrack` carries them per coarse slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from imaging.errors import UnusableImageError
from imaging.segmentation.builtin.grid import F32, F64, CoarseGrid
from imaging.segmentation.builtin.parameters import BuiltinParameters

B = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]

IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
IN_PLANE[:, :, 1] = ndimage.generate_binary_structure(2, 1)
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))


@dataclass(frozen=True)
class SpineTrack:
    """The column along the coarse z axis: canal and body centres (coarse x, y indices) per slice."""

    canal_x: F64
    canal_y: F64
    body_x: F64
    body_y: F64
    body_half_width_mm: F64
    body_half_depth_mm: F64
    canal_slices: int
    body_slices: int


def _block(mask: B, r: int) -> F32:
    """Block means of a boolean mask over r x r in-plane blocks (the last partial block dropped)."""
    nx, ny, nz = mask.shape
    mx, my = max(1, nx // r), max(1, ny // r)
    if nx < r or ny < r:
        return mask.astype(np.float32)
    blocks = mask[: mx * r, : my * r].reshape(mx, r, my, r, nz)
    means: F32 = blocks.mean(axis=(1, 3), dtype=np.float32)
    return means


def _torso_factor(grid: CoarseGrid) -> int:
    """In-plane reduction from the coarse grid to the ~4 mm grid on which the torso is found."""
    if min(grid.shape[:2]) < 16:
        return 1
    return max(1, round(4.0 / min(grid.spacing[:2])))


def torso_mask(grid: CoarseGrid, params: BuiltinParameters) -> B:
    """The largest connected region denser than `torso_hu` (the patient, without table, arms apart).

    Computed on a ~4 mm grid and expanded back to the coarse grid.
    """
    r = _torso_factor(grid)
    dense = _block(grid.hu > params.torso_hu, r) > 0.5
    labels, n = ndimage.label(dense)
    if n == 0:
        raise UnusableImageError("the CT holds no tissue denser than air", reason="NO_SPINE_FOUND")
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    small = labels == int(np.argmax(sizes))
    if r == 1:
        return small
    big = np.repeat(np.repeat(small, r, axis=0), r, axis=1)
    torso = np.zeros(grid.shape, dtype=bool)
    nx, ny = min(big.shape[0], grid.shape[0]), min(big.shape[1], grid.shape[1])
    torso[:nx, :ny] = big[:nx, :ny]
    if nx < grid.shape[0]:
        torso[nx:, :ny] = torso[nx - 1 : nx, :ny]
    if ny < grid.shape[1]:
        torso[:, ny:] = torso[:, ny - 1 : ny]
    return torso


def _extents(mask: B, axis_keep: int) -> tuple[F64, F64, B]:
    """Per slice (axis 2), the first and last index along `axis_keep` where `mask` is set."""
    other = 1 - axis_keep
    proj: B = np.asarray(mask.any(axis=other))  # (n_keep, nz)
    present: B = np.asarray(proj.any(axis=0))
    first = np.argmax(proj, axis=0).astype(np.float64)
    last = (proj.shape[0] - 1 - np.argmax(proj[::-1], axis=0)).astype(np.float64)
    return first, last, present


def search_window(grid: CoarseGrid, torso: B) -> tuple[F64, F64, tuple[int, int]]:
    """Where to look for the canal in each slice: around the torso's left-right middle, at 40% of its depth
    from the back, over +-25% of its width (40-90 mm) and +-30% of its depth (50-80 mm)."""
    sx, sy, _ = grid.spacing
    x0, x1, present = _extents(torso, 0)
    y0, y1, _ = _extents(torso, 1)
    if not present.any():
        raise UnusableImageError("the CT holds no tissue denser than air", reason="NO_SPINE_FOUND")
    fill_x, fill_y0, fill_y1 = (
        float(np.median(x0[present])),
        float(np.median(y0[present])),
        float(np.median(y1[present])),
    )
    x1 = np.where(present, x1, float(np.median(x1[present])))
    x0 = np.where(present, x0, fill_x)
    y0 = np.where(present, y0, fill_y0)
    y1 = np.where(present, y1, fill_y1)
    width = float(np.median(x1 - x0)) * sx
    depth = float(np.median(y1 - y0)) * sy
    half = (round(float(np.clip(0.25 * width, 40.0, 90.0)) / sx), round(float(np.clip(0.3 * depth, 50.0, 80.0)) / sy))
    return (x0 + x1) / 2, y0 + 0.4 * (y1 - y0), half


def straightened(
    volume: npt.NDArray[Any],
    centre_x: F64,
    centre_y: F64,
    half: tuple[int, int],
    fill: float,
) -> tuple[npt.NDArray[Any], I64, I64]:
    """A window of (2 half_x + 1, 2 half_y + 1) voxels per slice, centred on (centre_x, centre_y) of each slice.

    Returns the window (voxels outside the volume set to `fill`) and the integer origin (x, y) per slice.
    """
    nx, ny, nz = volume.shape
    ox = np.round(centre_x).astype(np.int64) - half[0]
    oy = np.round(centre_y).astype(np.int64) - half[1]
    u = np.arange(2 * half[0] + 1)[:, None, None]
    v = np.arange(2 * half[1] + 1)[None, :, None]
    gx = ox[None, None, :] + u
    gy = oy[None, None, :] + v
    inside = (gx >= 0) & (gx < nx) & (gy >= 0) & (gy < ny)
    k = np.arange(nz)[None, None, :]
    values = volume[np.clip(gx, 0, nx - 1), np.clip(gy, 0, ny - 1), k]
    window = np.where(inside, values, np.asarray(fill, dtype=volume.dtype))
    return window, ox, oy


def _shift(a: B, dx: int, dy: int) -> B:
    """`a` shifted so that out[x, y] = a[x + dx, y + dy] (False outside)."""
    out = np.zeros_like(a)
    nx, ny = a.shape[:2]
    out[max(-dx, 0) : nx - max(dx, 0), max(-dy, 0) : ny - max(dy, 0)] = a[
        max(dx, 0) : nx + min(dx, 0), max(dy, 0) : ny + min(dy, 0)
    ]
    return out


def enclosure(bone: B, spacing: tuple[float, float, float], radius_mm: float) -> npt.NDArray[np.uint8]:
    """Per voxel, in how many of 8 in-plane directions bone lies within `radius_mm`."""
    count = np.zeros(bone.shape, dtype=np.uint8)
    for dx, dy in _DIRECTIONS:
        step = float(np.hypot(dx * spacing[0], dy * spacing[1]))
        hit = np.zeros_like(bone)
        for s in range(1, max(1, int(radius_mm / step)) + 1):
            hit |= _shift(bone, dx * s, dy * s)
        count += hit.astype(np.uint8)
    return count


@dataclass(frozen=True)
class _Candidates:
    x: F64
    y: F64
    z: F64
    area_mm2: F64


def _within(area: F64, low: float, high: float) -> B:
    kept: B = (area >= low) & (area <= high)
    return kept


def canal_candidates(
    grid: CoarseGrid, centre_x: F64, centre_y: F64, half: tuple[int, int], params: BuiltinParameters
) -> _Candidates:
    """Fluid-density regions ringed by bone in the search window, one row per (slice, region)."""
    sx, sy, _ = grid.spacing
    window, ox, oy = straightened(grid.hu, centre_x, centre_y, half, fill=-1000.0)
    bone = window > params.bone_hu
    enclosed = enclosure(bone, grid.spacing, params.canal_enclosure_mm) >= params.canal_enclosure_min_directions
    smooth = ndimage.uniform_filter(window, size=(3, 3, 1))
    fluid = enclosed & ~bone & (smooth < params.canal_fluid_max_hu) & (smooth > -200.0)
    labels, n = ndimage.label(fluid, structure=IN_PLANE)
    if n == 0:
        empty = np.zeros(0)
        return _Candidates(empty, empty, empty, empty)
    index = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones(fluid.shape, dtype=np.float32), labels, index) * sx * sy
    centre = np.asarray(ndimage.center_of_mass(fluid, labels, index), dtype=np.float64)
    low, high = params.canal_area_mm2
    sized = _within(area, low, high)
    centre = centre[sized]
    area = area[sized]
    z = centre[:, 2]
    zi = np.round(z).astype(np.int64)
    x = centre[:, 0] + ox[zi]
    y = centre[:, 1] + oy[zi]
    # The inside of an osteoporotic body is also fluid-dense and ringed by bone, and the canal lies behind it:
    # of two candidates 12-40 mm apart front to back in one slice, the larger front one is a body.
    keep = np.ones(len(z), dtype=bool)
    for i in range(len(z)):
        same = zi == zi[i]
        dy = (y[i] - y[same]) * sy
        dx = np.abs(x[i] - x[same]) * sx
        smaller_behind = (dy >= 12.0) & (dy <= 40.0) & (dx <= 10.0) & (area[same] < area[i])
        keep[i] = not bool(np.any(smaller_behind))
    return _Candidates(x=x[keep], y=y[keep], z=z[keep], area_mm2=np.asarray(area[keep], dtype=np.float64))


def longest_chain(c: _Candidates, spacing: tuple[float, float, float], max_gap_mm: float) -> I64:
    """Indices of the longest chain of candidates continuous along z (each step moves little in-plane)."""
    n = len(c.z)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(c.z, kind="stable")
    x, y, z = c.x[order], c.y[order], c.z[order]
    score = np.ones(n)
    previous = -np.ones(n, dtype=np.int64)
    for j in range(1, n):
        dz = (z[j] - z[:j]) * spacing[2]
        step = np.hypot((x[j] - x[:j]) * spacing[0], (y[j] - y[:j]) * spacing[1])
        ok = (dz > 0) & (dz <= max_gap_mm) & (step <= 6.0 + 0.25 * dz)
        if ok.any():
            value = np.where(ok, score[:j] + 1.0 - 0.02 * step, -np.inf)
            i = int(np.argmax(value))
            if value[i] > score[j]:
                score[j] = value[i]
                previous[j] = i
    j = int(np.argmax(score))
    path = []
    while j >= 0:
        path.append(j)
        j = int(previous[j])
    return order[np.array(path[::-1], dtype=np.int64)]


def _interpolate(z_known: F64, values: F64, n: int) -> F64:
    """Values at every slice 0..n-1 from values at `z_known` (averaged per slice), constant beyond the ends."""
    zs = np.round(z_known).astype(np.int64)
    unique = np.unique(zs)
    means = np.array([values[zs == u].mean() for u in unique])
    return np.interp(np.arange(n, dtype=np.float64), unique.astype(np.float64), means)


def _smooth(values: F64, sigma_slices: float) -> F64:
    if sigma_slices <= 0:
        return values
    smoothed: F64 = ndimage.gaussian_filter1d(values, sigma_slices, mode="nearest")
    return smoothed


@dataclass(frozen=True)
class _Bodies:
    z: F64
    x: F64
    y: F64
    half_width_mm: F64
    half_depth_mm: F64


def disk(radius_mm: float, spacing: tuple[float, float, float]) -> B:
    """An in-plane disk structuring element (shape (2rx + 1, 2ry + 1, 1))."""
    rx = max(1, round(radius_mm / spacing[0]))
    ry = max(1, round(radius_mm / spacing[1]))
    u = np.arange(-rx, rx + 1)[:, None] * spacing[0]
    v = np.arange(-ry, ry + 1)[None, :] * spacing[1]
    inside: B = (u * u + v * v <= radius_mm * radius_mm)[:, :, None]
    return inside


def _mid_extents(blob: B, centre: F64, sx: float, sy: float) -> tuple[float, float]:
    """Half-width along the rows through the blob's centre and half-depth along its midline columns (3 mm
    bands), so that a vessel lying against a corner of the body does not inflate them."""
    section: B = np.asarray(blob.any(axis=2)) if blob.ndim == 3 else blob
    cu, cv = round(float(centre[0])), round(float(centre[1]))
    bu, bv = max(1, round(3.0 / sx)), max(1, round(3.0 / sy))
    rows = section[:, max(0, cv - bv) : cv + bv + 1].any(axis=1)
    cols = section[max(0, cu - bu) : cu + bu + 1, :].any(axis=0)
    us, vs = np.nonzero(rows)[0], np.nonzero(cols)[0]
    half_width = (us.max() - us.min() + 1) * sx / 2 if len(us) else 0.0
    half_depth = (vs.max() - vs.min() + 1) * sy / 2 if len(vs) else 0.0
    return float(half_width), float(half_depth)


def body_blobs(grid: CoarseGrid, canal_x: F64, canal_y: F64, params: BuiltinParameters) -> _Bodies:
    """Per slice, the filled cortical ring of a vertebral body lying anterior to the canal.

    Bone (above `body_fill_hu`) more than 6 mm in front of the canal's centre is closed and hole-filled in
    each slice; the filled regions are eroded by `neck_cut_mm` to cut bridges to neighbours (an enhanced
    aorta or a crus lying against the body), the part nearest to where a body should be (its back half, about
    15 mm anterior to the canal's centre) is kept and grown back within the filled region.
    """
    sx, sy, _ = grid.spacing
    reach = params.body_offset_mm[1] + 30.0
    half = (round(40.0 / sx), round(reach / 2 / sy))
    window, ox, oy = straightened(grid.hu, canal_x, canal_y + reach / 2 / sy, half, fill=-1000.0)
    bone = window > params.body_fill_hu
    bone[:, : round(6.0 / sy), :] = False  # the canal and the pedicles beside it: the body lies in front
    closed = ndimage.binary_closing(bone, structure=IN_PLANE, iterations=1)
    padded = np.pad(closed, ((0, 0), (0, 0), (1, 1)), constant_values=True)
    filled = ndimage.binary_fill_holes(padded, structure=IN_PLANE)[:, :, 1:-1]
    ball = disk(params.neck_cut_mm, grid.spacing)
    cores = ndimage.binary_erosion(filled, structure=ball)
    labels, n = ndimage.label(cores, structure=IN_PLANE)
    if n == 0:
        empty = np.zeros(0)
        return _Bodies(empty, empty, empty, empty, empty)
    index = np.arange(1, n + 1)
    centre = np.asarray(ndimage.center_of_mass(cores, labels, index), dtype=np.float64)
    nz = window.shape[2]
    zi = np.round(centre[:, 2]).astype(np.int64)
    expect_u = canal_x[zi] - ox[zi]
    expect_v = canal_y[zi] + 15.0 / sy - oy[zi]  # the body's back half, next to the canal
    distance = np.hypot((centre[:, 0] - expect_u) * sx, (centre[:, 1] - expect_v) * sy)
    best = np.full(nz, -1, dtype=np.int64)
    best_distance = np.full(nz, np.inf)
    for i in range(n):
        if distance[i] < best_distance[zi[i]]:
            best_distance[zi[i]] = distance[i]
            best[zi[i]] = i + 1
    chosen = np.isin(labels, best[best > 0])
    body = ndimage.binary_dilation(chosen, structure=ball) & filled
    labels, n = ndimage.label(body, structure=IN_PLANE)
    if n == 0:
        empty = np.zeros(0)
        return _Bodies(empty, empty, empty, empty, empty)
    index = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones(body.shape, dtype=np.float32), labels, index) * sx * sy
    centre = np.asarray(ndimage.center_of_mass(body, labels, index), dtype=np.float64)
    boxes = ndimage.find_objects(labels)
    width = np.zeros(n)
    depth = np.zeros(n)
    for i, box in enumerate(boxes):
        if box is not None:
            width[i], depth[i] = _mid_extents(
                labels[box] == i + 1, centre[i, :2] - (box[0].start, box[1].start), sx, sy
            )
    z = centre[:, 2]
    zi = np.round(z).astype(np.int64)
    gx = centre[:, 0] + ox[zi]
    gy = centre[:, 1] + oy[zi]
    dx = (gx - canal_x[zi]) * sx
    dy = (gy - canal_y[zi]) * sy
    # Bone has a cortical shell at least as bright as its inside; a contrast-filled vessel or heart chamber has a
    # wall darker than its lumen. Single slices are noisy (endplates, partial volume): the median decides.
    interior = ndimage.binary_erosion(body, structure=disk(3.0, grid.spacing))
    ring = body & ~ndimage.binary_erosion(body, structure=IN_PLANE)
    ring_hu = ndimage.mean(window, labels * ring, index)
    interior_hu = ndimage.mean(window, labels * interior, index)
    shell = np.nan_to_num(np.asarray(ring_hu) - np.asarray(interior_hu), nan=-np.inf)
    low, high = params.body_area_mm2
    near, far = params.body_offset_mm
    keep = (area >= low) & (area <= high) & (dy >= near) & (dy <= far) & (np.abs(dx) <= 15.0)
    if keep.any() and float(np.median(shell[keep])) < params.body_shell_contrast_hu:
        raise UnusableImageError(
            "the column-like structure found is not bone (its walls are darker than its inside, as in "
            "contrast-filled vessels or heart chambers): no spine in this CT",
            reason="NO_SPINE_FOUND",
        )
    chosen_per_slice: dict[int, int] = {}
    for i in (int(j) for j in np.nonzero(keep)[0]):
        k = int(zi[i])
        if k not in chosen_per_slice or area[i] > area[chosen_per_slice[k]]:
            chosen_per_slice[k] = i
    pick = np.array(sorted(chosen_per_slice.values()), dtype=np.int64)
    return _Bodies(z=z[pick], x=gx[pick], y=gy[pick], half_width_mm=width[pick], half_depth_mm=depth[pick])


def track_spine(grid: CoarseGrid, torso: B, params: BuiltinParameters) -> SpineTrack:
    """Find the canal and the vertebral body column; raise UnusableImageError when there is no spine."""
    nz = grid.shape[2]
    sz = grid.spacing[2]
    if not np.any(grid.hu[torso] > params.bone_hu):
        raise UnusableImageError("no bone found in this CT: it cannot show a spine", reason="NO_SPINE_FOUND")
    centre_x, centre_y, half = search_window(grid, torso)
    candidates = canal_candidates(grid, centre_x, centre_y, half, params)
    chain = longest_chain(candidates, grid.spacing, params.chain_max_gap_mm)
    if len(chain) < 3:
        raise UnusableImageError(
            "no vertebral column found: no spinal canal ringed by bone along the scan (is this a CT of the trunk?)",
            reason="NO_SPINE_FOUND",
        )
    cz = candidates.z[chain]
    canal_x = _smooth(_interpolate(cz, candidates.x[chain], nz), 4.0 / sz)
    canal_y = _smooth(_interpolate(cz, candidates.y[chain], nz), 4.0 / sz)
    bodies = body_blobs(grid, canal_x, canal_y, params)
    if len(bodies.z) < 2:
        raise UnusableImageError(
            "no vertebral body found anterior to the spinal canal (is this a CT of the trunk?)",
            reason="NO_SPINE_FOUND",
        )
    body_x = _smooth(_interpolate(bodies.z, bodies.x, nz), 4.0 / sz)
    body_y = _smooth(_interpolate(bodies.z, bodies.y, nz), 4.0 / sz)
    width = _interpolate(bodies.z, ndimage.median_filter(bodies.half_width_mm, size=5), nz)
    depth = _interpolate(bodies.z, ndimage.median_filter(bodies.half_depth_mm, size=5), nz)
    return SpineTrack(
        canal_x=canal_x,
        canal_y=canal_y,
        body_x=body_x,
        body_y=body_y,
        body_half_width_mm=_smooth(width, 8.0 / sz),
        body_half_depth_mm=_smooth(depth, 8.0 / sz),
        canal_slices=len(np.unique(np.round(cz))),
        body_slices=len(bodies.z),
    )
