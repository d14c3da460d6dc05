"""Every measurement of every level of a `VertebraSegmentation`, each in a box around its vertebra.

Work stays inside each vertebra's bounding box (grown by `box_margin_mm`): the whole volume is read once,
by `scipy.ndimage.find_objects` on the label map, and never copied.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from imaging.errors import ProcessingCancelledError
from imaging.measure.body import BodyAxes, VertebralBody, extract_body, padded_box
from imaging.measure.heights import GenantResult, Heights, grade_levels, heights_reliable, measure_heights
from imaging.measure.intensity import RoiStats, roi_statistics
from imaging.measure.roi import RoiParams, trabecular_roi
from imaging.measure.texture import TextureParams, texture_features
from imaging.segmentation.base import LevelInfo, VertebraSegmentation
from imaging.types import Volume

_FACES = (("left", "right"), ("posterior", "anterior"), ("inferior", "superior"))


@dataclass(frozen=True, kw_only=True)
class MeasureParams:
    """Parameters of the per-level measurements (recorded in the output's provenance)."""

    roi: RoiParams = field(default_factory=RoiParams)
    texture: TextureParams = field(default_factory=TextureParams)
    box_margin_mm: float = 10.0
    metal_hu: float = 2500.0
    metal_margin_mm: float = 10.0
    max_grading_slice_mm: float = 2.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.box_margin_mm <= 50.0:
            raise ValueError(f"box_margin_mm must lie in [0, 50] mm, got {self.box_margin_mm}")
        if not 1000.0 <= self.metal_hu <= 4000.0:
            raise ValueError(f"metal_hu must lie in [1000, 4000] HU, got {self.metal_hu}")
        if not 0.5 <= self.max_grading_slice_mm <= 10.0:
            raise ValueError(f"max_grading_slice_mm must lie in [0.5, 10] mm, got {self.max_grading_slice_mm}")
        if not 0.0 <= self.metal_margin_mm <= self.box_margin_mm:
            raise ValueError("metal_margin_mm must lie in [0, box_margin_mm]")

    def provenance(self) -> dict[str, str]:
        return {
            **self.roi.provenance(),
            **self.texture.provenance(),
            "measure.box_margin_mm": f"{self.box_margin_mm:g}",
            "measure.metal_hu": f"{self.metal_hu:g}",
            "measure.max_grading_slice_mm": f"{self.max_grading_slice_mm:g}",
        }


@dataclass(frozen=True)
class LevelResult:
    """All that was measured on one level (arrays live in the body's box), before QC."""

    info: LevelInfo
    body: VertebralBody | None = None
    axes: BodyAxes | None = None
    roi: npt.NDArray[np.bool_] | None = None
    stats: RoiStats | None = None
    roi_volume_ml: float | None = None
    heights: Heights | None = None
    genant: GenantResult | None = None
    texture: dict[str, float] = field(default_factory=dict)
    height_note: str | None = None
    edges_touched: tuple[str, ...] = ()
    metal_voxels: int = 0
    center_mm: tuple[float, float, float] | None = None


def _edges_touched(body: VertebralBody, shape: tuple[int, int, int]) -> tuple[str, ...]:
    touched = []
    for axis, (low_name, high_name) in enumerate(_FACES):
        s = body.box[axis]
        if s.start == 0 and np.take(body.body, 0, axis=axis).any():
            touched.append(low_name)
        if s.stop == shape[axis] and np.take(body.body, -1, axis=axis).any():
            touched.append(high_name)
    return tuple(touched)


def _metal_voxels(hu: npt.NDArray[np.floating], body: VertebralBody, params: MeasureParams) -> int:
    """Voxels above `metal_hu` in the body or within `metal_margin_mm` of it."""
    metal = hu > params.metal_hu
    if not metal.any():  # the common case: no distance map needed
        return 0
    near = ndimage.distance_transform_edt(~body.vertebra, sampling=body.spacing) <= params.metal_margin_mm
    return int(np.count_nonzero(metal & near))


def _spine_axes(
    centroids: dict[str, npt.NDArray[np.float64]], reliable: set[str], order: list[str]
) -> dict[str, BodyAxes]:
    """Each level's axes from the centroids of its reliable neighbours (the local spine axis).

    Bodies cut by the scan edge have biased centroids: they take part only as the level being oriented.
    """
    axes = {}
    for i, level in enumerate(order):
        if level not in centroids:
            continue
        above = centroids[order[i - 1]] if i > 0 and order[i - 1] in reliable else None
        below = centroids[order[i + 1]] if i + 1 < len(order) and order[i + 1] in reliable else None
        own = centroids[level]
        if above is not None and below is not None:
            direction = above - below
        elif above is not None:
            direction = above - own
        elif below is not None:
            direction = own - below
        else:
            direction = np.array([0.0, 0.0, 1.0])
        axes[level] = BodyAxes.from_superior(direction)
    return axes


def _check(cancel: threading.Event | None, step: str) -> None:
    if cancel is not None and cancel.is_set():
        raise ProcessingCancelledError(f"measurement cancelled before {step}")


def measure_levels(
    volume: Volume,
    segmentation: VertebraSegmentation,
    *,
    params: MeasureParams | None = None,
    cancel: threading.Event | None = None,
) -> list[LevelResult]:
    """Body, ROI, HU statistics, heights, Genant grade and texture of every level, cranial to caudal."""
    params = params or MeasureParams()
    labels = segmentation.labels.array
    spacing = volume.spacing
    max_label = max((info.label for info in segmentation.levels), default=0)
    boxes = ndimage.find_objects(labels, max_label=max_label) if max_label > 0 else []
    bodies: dict[str, VertebralBody] = {}
    partial: dict[str, LevelResult] = {}
    for info in segmentation.levels:
        _check(cancel, f"finding the body of {info.level}")
        box = boxes[info.label - 1] if info.label - 1 < len(boxes) else None
        if box is None:
            partial[info.level] = LevelResult(info=info)
            continue
        crop = padded_box(box, volume.shape, spacing, params.box_margin_mm)
        body = extract_body(labels[crop] == info.label, crop, spacing, body_only=segmentation.body_only)
        if body is None:
            partial[info.level] = LevelResult(info=info)
            continue
        bodies[info.level] = body
    order = list(segmentation.level_names)
    edges = {level: _edges_touched(body, volume.shape) for level, body in bodies.items()}
    centroids = {level: body.centroid_mm + body.offset * np.asarray(spacing) for level, body in bodies.items()}
    axes_by_level = _spine_axes(centroids, {level for level in bodies if not edges[level]}, order)
    heights: dict[str, Heights] = {}
    results: dict[str, LevelResult] = {}
    voxel_ml = float(np.prod(spacing)) / 1000.0
    for info in segmentation.levels:
        if info.level not in bodies:
            continue
        _check(cancel, f"measuring {info.level}")
        body = bodies[info.level]
        axes = axes_by_level[info.level]
        hu = np.asarray(volume.array[body.box], dtype=np.float32)
        roi = trabecular_roi(body, axes, params.roi)
        stats = roi_statistics(hu[roi]) if roi.any() else None
        texture: dict[str, float] = {}
        if stats is not None:
            # the texture of the bone the statistics describe: outliers (bone islands, vein) left out
            inliers = roi & (hu >= stats.lower_fence) & (hu <= stats.upper_fence)
            texture = texture_features(
                hu, inliers, spacing, skewness=stats.skewness, kurtosis=stats.kurtosis, params=params.texture
            )
        level_heights = None if edges[info.level] else measure_heights(body, axes)
        if level_heights is not None:
            heights[info.level] = level_heights
        center = volume.affine @ np.append(body.centroid_index(), 1.0)
        results[info.level] = LevelResult(
            info=info,
            body=body,
            axes=axes,
            roi=roi,
            stats=stats,
            roi_volume_ml=float(np.count_nonzero(roi)) * voxel_ml,
            heights=level_heights,
            texture=texture,
            edges_touched=edges[info.level],
            metal_voxels=_metal_voxels(hu, body, params),
            center_mm=(float(center[0]), float(center[1]), float(center[2])),
        )
    # Genant grading needs through-plane resolution: a 20 % height loss of a 25 mm body is 5 mm
    coarse = spacing[2] > params.max_grading_slice_mm
    grades = {} if coarse else grade_levels(heights, order)
    out = []
    for info in segmentation.levels:
        if info.level in results:
            result = results[info.level]
            note = None
            if info.level in grades:
                result = replace(result, genant=grades[info.level])
            elif coarse and result.heights is not None:
                note = (
                    f"{spacing[2]:.1f} mm slices (over {params.max_grading_slice_mm:g} mm): heights too coarse "
                    "for a Genant grade"
                )
            elif result.heights is not None and not heights_reliable(result.heights):
                note = f"irregular height profile (fit residual {result.heights.fit_rms_mm:.1f} mm): no Genant grade"
            out.append(replace(result, height_note=note) if note else result)
        else:
            out.append(partial[info.level])
    return out
