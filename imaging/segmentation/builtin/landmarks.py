"""The two anatomical landmarks that name the levels: ribs (the lowest rib-bearing vertebra is T12) and the sacrum.

Ribs (coarse grid): bone outside the column's core (body, canal and posterior elements) is split into
connected parts. A rib is a part that runs far laterally (`rib_reach_mm` from the canal, beyond any lumbar
transverse process), whose medial end lies against the column (`rib_attach_mm` from the core, and within
`rib_contact_mm` of the column's own bone: the costovertebral joint; an enhanced kidney is kept away by the
psoas) behind the front of the body, and which is thin (bone volume per mm of lateral reach below
`rib_max_section_mm2`, unlike the ilium). A rib cut by the scan's edge is recognised by its slope: it
runs from its head to the edge, dropping at least `rib_cut_slope_mm`, while a transverse process is level.
The rib belongs to the segment holding its medial end.

Sacrum (coarse grid): in each slice, the bone connected to the body is measured from the midline; the sacral
alae (and the ilia joined at the sacroiliac joints) reach beyond `sacrum_half_width_mm` on both sides over a
height `sacrum_min_height_mm`, whereas lumbar transverse processes are shorter, lie behind the body and are
only about 10 mm thick. Only bone in the body's front-to-back band counts, so transverse processes (and an
ilium they touch) do not make a lumbar vertebra look sacral.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from imaging.segmentation.builtin.discs import Segment
from imaging.segmentation.builtin.grid import CoarseGrid
from imaging.segmentation.builtin.parameters import BuiltinParameters
from imaging.segmentation.builtin.spine import IN_PLANE, SpineTrack, disk, straightened

B = npt.NDArray[np.bool_]
METAL_HU = 2500.0
"""Above any bone (cortical bone stays below about 2000 HU): implants, clips, prostheses."""


@dataclass(frozen=True)
class RibEvidence:
    """Ribs whose medial end lies in each segment (left and right counts), by segment index."""

    left: tuple[int, ...]
    right: tuple[int, ...]

    def has_ribs(self, index: int) -> bool:
        return self.left[index] + self.right[index] > 0


def _core(grid: CoarseGrid, track: SpineTrack) -> B:
    """The column's core: body, canal and posterior elements (a box per slice around the canal and body)."""
    sx, sy, _ = grid.spacing
    x = np.arange(grid.shape[0], dtype=np.float64)[:, None, None]
    y = np.arange(grid.shape[1], dtype=np.float64)[None, :, None]
    half = (track.body_half_width_mm + 6.0)[None, None, :]
    lateral = np.abs(x - track.canal_x[None, None, :]) * sx <= half
    back = track.canal_y[None, None, :] - 40.0 / sy
    front = track.body_y[None, None, :] + (track.body_half_depth_mm[None, None, :] + 8.0) / sy
    core: B = lateral & (y >= back) & (y <= front)
    return core


@dataclass(frozen=True)
class RibHead:
    """The medial end of one rib: native slice (fractional) and side."""

    z: float
    left: bool


def find_rib_heads(grid: CoarseGrid, torso: B, track: SpineTrack, params: BuiltinParameters) -> list[RibHead]:
    """The medial ends of the ribs (bone parts outside the column's core that run far laterally)."""
    sx, sy, _ = grid.spacing
    core = _core(grid, track)
    dense = (grid.hu > params.bone_hu) & torso
    bone = dense & ~core
    labels, n = ndimage.label(bone, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return []
    # a rib articulates with the column: some of it lies within `rib_contact_mm` of the column's own bone
    # (an enhanced kidney or a vessel lateral to the psoas does not)
    column_bone = dense & core
    near_column = ndimage.binary_dilation(column_bone, structure=disk(params.rib_contact_mm, grid.spacing))
    x, y, z = np.nonzero(labels)
    lab = labels[x, y, z]
    r = np.abs(x - track.canal_x[z]) * sx
    r_min = np.full(n + 1, np.inf)
    r_max = np.zeros(n + 1)
    np.minimum.at(r_min, lab, r)
    np.maximum.at(r_max, lab, r)
    count = np.bincount(lab, minlength=n + 1).astype(np.float64)
    voxel_mm3 = sx * sy * grid.spacing[2]
    attach = float(np.median(track.body_half_width_mm)) + 6.0 + params.rib_attach_mm
    section = count * voxel_mm3 / np.maximum(r_max - r_min, 1.0)
    thin_and_attached = (r_min <= attach) & (section <= params.rib_max_section_mm2)
    is_rib = thin_and_attached & (r_max >= params.rib_reach_mm)
    # A rib cut by the scan's bottom (or top) edge: it runs from its head, inside the field of view, obliquely
    # to the edge (ribs slope down laterally); a transverse process is level, so both its ends meet the edge.
    nz = grid.shape[2]
    lateral = r >= r_max[lab] - 6.0
    medial_end = r <= r_min[lab] + 6.0
    weight_l = np.maximum(np.bincount(lab[lateral], minlength=n + 1), 1)
    weight_m = np.maximum(np.bincount(lab[medial_end], minlength=n + 1), 1)
    z_lateral = np.bincount(lab[lateral], weights=z[lateral], minlength=n + 1) / weight_l
    z_medial = np.bincount(lab[medial_end], weights=z[medial_end], minlength=n + 1) / weight_m
    z_lo = np.full(n + 1, nz)
    z_hi = np.full(n + 1, -1)
    np.minimum.at(z_lo, lab, z)
    np.maximum.at(z_hi, lab, z)
    slope_mm = (z_medial - z_lateral) * grid.spacing[2]
    cut_below = (z_lo == 0) & (slope_mm >= params.rib_cut_slope_mm)
    cut_above = (z_hi == nz - 1) & (-slope_mm >= params.rib_cut_slope_mm)
    is_rib |= thin_and_attached & (cut_below | cut_above) & (r_max - r_min >= 15.0)
    # metal (a prosthesis, screws) is not a rib
    metal = np.zeros(n + 1, dtype=bool)
    metal_voxels = grid.hu[x, y, z] >= METAL_HU
    metal[np.unique(lab[metal_voxels])] = True
    is_rib &= ~metal
    touching = np.zeros(n + 1, dtype=bool)
    touching[np.unique(lab[near_column[x, y, z]])] = True
    is_rib &= touching
    is_rib[0] = False
    medial = (r <= r_min[lab] + 6.0) & is_rib[lab]
    ml = lab[medial]
    weight = np.maximum(np.bincount(ml, minlength=n + 1), 1)
    mz = np.bincount(ml, weights=z[medial], minlength=n + 1) / weight
    my = np.bincount(ml, weights=y[medial], minlength=n + 1) / weight
    mx = np.bincount(ml, weights=x[medial], minlength=n + 1) / weight
    heads: list[RibHead] = []
    for label in np.nonzero(is_rib)[0]:
        zi = round(float(mz[label]))
        # a rib's head lies behind the front of the body
        if (my[label] - track.body_y[zi]) * sy > track.body_half_depth_mm[zi]:
            continue
        heads.append(RibHead(z=float(grid.to_native(mz[label], 2)), left=bool(mx[label] < track.canal_x[zi])))
    return heads


def assign_ribs(heads: list[RibHead], segments: list[Segment], slice_mm: float) -> RibEvidence:
    """Count the rib heads lying in each segment (within 4 mm of its slices)."""
    left = [0] * len(segments)
    right = [0] * len(segments)
    for head in heads:
        index = _segment_at(segments, head.z, tolerance=4.0 / slice_mm)
        if index is None:
            continue
        if head.left:
            left[index] += 1
        else:
            right[index] += 1
    return RibEvidence(tuple(left), tuple(right))


def _segment_at(segments: list[Segment], z: float, tolerance: float) -> int | None:
    for i, segment in enumerate(segments):
        if segment.low - tolerance <= z <= segment.high + tolerance:
            return i
    return None


def sacral_slices(grid: CoarseGrid, track: SpineTrack, params: BuiltinParameters, top: int) -> B:
    """Per coarse slice below `top`: bone joined to the body, within the body's front-to-back band, reaches
    beyond `sacrum_half_width_mm` on both sides (the sacral alae; transverse processes lie behind the band)."""
    sx, sy, _ = grid.spacing
    nz = grid.shape[2]
    wide = np.zeros(nz, dtype=bool)
    top = min(top, nz)
    if top <= 0:
        return wide
    depth = float(track.body_half_depth_mm.max())
    half = (round((params.sacrum_half_width_mm + 25.0) / sx), round((depth + 5.0) / sy))
    centre_y = track.body_y[:top] - 2.0 / sy
    window, ox, oy = straightened(grid.hu[:, :, :top], track.body_x[:top], centre_y, half, fill=-1000.0)
    v = np.arange(window.shape[1], dtype=np.float64)[None, :, None] + oy[None, None, :]
    band = (v >= track.body_y[:top] - (track.body_half_depth_mm[:top] + 6.0) / sy) & (
        v <= track.body_y[:top] + (track.body_half_depth_mm[:top] + 2.0) / sy
    )
    bone = ndimage.binary_closing((window > params.bone_hu) & band, structure=IN_PLANE)
    labels, n = ndimage.label(bone, structure=IN_PLANE)
    if n == 0:
        return wide
    cu = track.body_x[:top] - ox
    cv = track.body_y[:top] - oy
    for k in range(top):
        u0, u1 = int(max(0, cu[k] - 10.0 / sx)), int(max(0, cu[k] + 10.0 / sx + 1))
        v0, v1 = int(max(0, cv[k] - 10.0 / sy)), int(max(0, cv[k] + 10.0 / sy + 1))
        seeds = np.unique(labels[u0:u1, v0:v1, k])
        seeds = seeds[seeds > 0]
        if len(seeds) == 0:
            continue
        us = np.nonzero(np.isin(labels[:, :, k], seeds).any(axis=1))[0]
        wide[k] = min(cu[k] - us.min(), us.max() - cu[k]) * sx >= params.sacrum_half_width_mm
    return wide


def find_sacrum_top(
    grid: CoarseGrid, track: SpineTrack, params: BuiltinParameters, below_native: float | None
) -> float | None:
    """Native slice of the top of the sacrum (the highest run of wide slices `sacrum_min_height_mm` tall below
    `below_native`, the lowest rib-bearing vertebra), or None when no sacrum is in view."""
    top = grid.shape[2] if below_native is None else int(np.ceil(grid.to_coarse(below_native, 2)))
    wide = sacral_slices(grid, track, params, top)
    bridged = wide.copy()
    bridged[1:-1] |= wide[:-2] & wide[2:]  # one missing slice does not split the alae
    runs, n = ndimage.label(bridged)
    best: float | None = None
    min_slices = max(2, round(params.sacrum_min_height_mm / grid.spacing[2]))
    for label in range(1, n + 1):
        idx = np.nonzero(runs == label)[0]
        if len(idx) < min_slices:
            continue
        run_top = float(grid.to_native(idx.max(), 2))
        best = run_top if best is None else max(best, run_top)
    return best


def transverse_reach(grid: CoarseGrid, track: SpineTrack, segment: Segment, params: BuiltinParameters) -> float:
    """How far (mm, from the canal's centre) the segment's posterior arch reaches sideways: the tips of its
    transverse processes, on average over both sides (0 when none is seen).

    Bone joined in-plane to the arch around the canal, in a band from 20 mm behind to 12 mm in front of the
    canal's centre, is measured in every slice of the segment; each side keeps its farthest reach.
    """
    sx, sy, _ = grid.spacing
    lo = max(0, int(np.floor(grid.to_coarse(segment.low, 2))))
    hi = min(grid.shape[2] - 1, int(np.ceil(grid.to_coarse(segment.high, 2))))
    left = right = 0.0
    for k in range(lo, hi + 1):
        cx, cy = track.canal_x[k], track.canal_y[k]
        x0, x1 = int(max(0, cx - 80.0 / sx)), int(min(grid.shape[0], cx + 80.0 / sx + 1))
        y0, y1 = int(max(0, cy - 20.0 / sy)), int(min(grid.shape[1], cy + 12.0 / sy + 1))
        bone = grid.hu[x0:x1, y0:y1, k] > params.bone_hu
        labels, n = ndimage.label(bone)
        if n == 0:
            continue
        u = np.arange(x0, x1, dtype=np.float64)[:, None]
        v = np.arange(y0, y1, dtype=np.float64)[None, :]
        arch = np.hypot((u - cx) * sx, (v - cy) * sy) <= 15.0
        seeds = np.unique(labels[arch & bone])
        seeds = seeds[seeds > 0]
        if len(seeds) == 0:
            continue
        xs = np.nonzero(np.isin(labels, seeds).any(axis=1))[0] + x0
        left = max(left, (cx - xs.min()) * sx)
        right = max(right, (xs.max() - cx) * sx)
    return (left + right) / 2.0
