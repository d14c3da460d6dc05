"""The `builtin` backend: vertebral bodies T10-L5 found and named by classical image analysis, on CPU, in seconds.

No weights, no GPU. The steps (each in its own module, every threshold in `parameters.json` with its source):

1. `grid`: a coarse working copy (~2 mm block means) for everything but the bodies themselves.
2. `spine`: the torso, the spinal canal (fluid ringed by bone, chained along z), and the body
   column anterior to it.
3. `discs`: at full resolution along the body column, discs are narrow troughs of the core's HU between
   endplates (robust to osteoporotic bodies darker than the disc), thinned and completed to one vertebra apart.
4. `landmarks`: ribs attached to each segment and the sacrum (wide, wing-shaped bone at the bottom).
5. `naming`: names from the lowest rib-bearing vertebra (T12) and the sacrum (below L5), with confidence
   and flags; transitional anatomy is flagged, never guessed silently.
6. `bodies`: body masks at full resolution (the region enclosed by the cortex; posterior elements excluded).

Output: a label map with TotalSegmentator ids (VerSe ids when an L6 is named), `body_only=True`.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from imaging.conventions import level_to_label
from imaging.errors import UnusableImageError
from imaging.segmentation.base import (
    LevelFlag,
    LevelInfo,
    VertebraSegmentation,
    check_cancelled,
    check_volume,
)
from imaging.segmentation.builtin.bodies import body_mask, paste
from imaging.segmentation.builtin.discs import (
    build_tube,
    core_profile,
    dense_profile,
    disc_near,
    find_discs,
    segments_between,
)
from imaging.segmentation.builtin.grid import CoarseGrid, denoised, noise_sd
from imaging.segmentation.builtin.landmarks import (
    METAL_HU,
    assign_ribs,
    find_rib_heads,
    find_sacrum_top,
    transverse_reach,
)
from imaging.segmentation.builtin.naming import name_segments
from imaging.segmentation.builtin.parameters import BuiltinParameters
from imaging.segmentation.builtin.spine import torso_mask, track_spine
from imaging.segmentation.mask_qc import MaskQcPolicy, assess_mask
from imaging.types import LabelMap, SegmentationInfo, Volume

__all__ = ["BuiltinBackend", "BuiltinParameters"]


class BuiltinBackend:
    """Classical vertebra segmentation; keyword-only configuration, checked at construction."""

    name = "builtin"

    def __init__(self, *, parameters: BuiltinParameters | None = None, qc: MaskQcPolicy | None = None) -> None:
        if parameters is not None and not isinstance(parameters, BuiltinParameters):
            raise TypeError(f"parameters must be BuiltinParameters, got {type(parameters).__name__}")
        self.parameters = parameters or BuiltinParameters.default()
        self.qc = qc or MaskQcPolicy()

    def is_available(self) -> bool:
        return True

    def segment(self, volume: Volume, *, cancel: threading.Event | None = None) -> VertebraSegmentation:
        check_volume(volume)
        params = self.parameters
        array = np.asarray(volume.array)
        grid = CoarseGrid.from_native(array, volume.spacing, params.coarse_mm)
        if min(grid.shape) < 3:
            raise UnusableImageError(
                f"the CT is too small to hold a vertebra (shape {volume.shape}, spacing {volume.spacing} mm)",
                reason="NO_SPINE_FOUND",
            )
        check_cancelled(cancel, "finding the spine")
        torso = torso_mask(grid, params)
        coarse_noise = noise_sd(grid.hu, torso)
        grid = replace(grid, hu=denoised(grid.hu, coarse_noise, params.denoise_above_hu, grid.spacing))
        track = track_spine(grid, torso, params)
        check_cancelled(cancel, "finding the discs")
        tube = build_tube(array, grid, track)
        native_noise = noise_sd(tube.values)
        tube = replace(
            tube,
            values=denoised(tube.values, native_noise, params.denoise_above_hu, volume.spacing, in_plane_only=True),
        )
        dense = dense_profile(tube, params)
        core = core_profile(tube)
        slice_mm = volume.spacing[2]
        discs, score = find_discs(core, dense, slice_mm, params)
        segments = segments_between(discs, volume.shape[2], slice_mm)
        if not segments:
            raise UnusableImageError("no vertebral body found between the discs", reason="NO_SPINE_FOUND")
        check_cancelled(cancel, "finding the landmarks")
        heads = find_rib_heads(grid, torso, track, params)
        ribs = assign_ribs(heads, segments, slice_mm)
        ribbed = [i for i in range(len(segments)) if ribs.has_ribs(i)]
        sacrum_native = find_sacrum_top(
            grid, track, params, below_native=float(segments[ribbed[0]].low) if ribbed else None
        )
        sacrum_top: int | None = None
        if sacrum_native is not None:
            discs, lumbosacral = disc_near(
                discs,
                score,
                sacrum_native - 15.0 / slice_mm,
                sacrum_native + 12.0 / slice_mm,
                slice_mm,
                params.vertebra_period_mm[0],
            )
            segments = segments_between(discs, volume.shape[2], slice_mm)
            below = [i for i, s in enumerate(segments) if s.high < lumbosacral.z]
            sacrum_top = below[-1] if below else None
            ribs = assign_ribs(heads, segments, slice_mm)
            if sacrum_top is None:
                sacrum_top = -1  # the sacrum lies below the first segment: L5 is segment 0
        reach = [transverse_reach(grid, track, segment, params) for segment in segments]
        naming = name_segments(segments, ribs, sacrum_top, params, reach)
        if not naming.levels:
            raise UnusableImageError("no vertebra between T10 and L5 in the field of view", reason="NO_LEVEL_IN_RANGE")
        check_cancelled(cancel, "drawing the body masks")
        convention = "verse" if any(n.level == "L6" for n in naming.levels) else "totalsegmentator"
        ids = level_to_label(convention)
        labels = np.zeros(volume.shape, dtype=np.uint8)
        voxel_ml = float(np.prod(volume.spacing)) / 1000.0
        levels: list[LevelInfo] = []
        warnings = list(naming.warnings)
        for named in sorted(naming.levels, key=lambda n: -n.index):  # cranial first
            segment = segments[named.index]
            mask = body_mask(tube, segment, params)
            if not mask.any():
                warnings.append(f"{named.level}: no body mask could be drawn")
                continue
            label = ids[named.level]
            lo, hi = paste(labels, tube, segment, mask, label)
            box = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
            qc = assess_mask(
                labels[box] == label,
                offset=lo,
                full_shape=volume.shape,
                voxel_volume_ml=voxel_ml,
                policy=self.qc,
                check_in_plane_edges=True,
            )
            flags = list(named.flags) + [f for f in qc.flags if f not in named.flags]
            confidence = named.confidence * qc.confidence
            if float(array[box].max()) >= METAL_HU:
                flags.append(LevelFlag.METAL_NEARBY.value)
            levels.append(
                LevelInfo(level=named.level, label=label, confidence=round(confidence, 4), flags=tuple(flags))
            )
        if not levels:
            raise UnusableImageError("no vertebral body mask could be drawn", reason="NO_SPINE_FOUND")
        info = SegmentationInfo(
            backend="builtin",
            label_convention=convention,
            model=f"builtin classical segmentation (parameters v{_parameters_version()})",
            parameters={
                "anchor": naming.anchor,
                "discs_found": str(sum(1 for d in discs if not d.inserted)),
                "discs_inserted": str(sum(1 for d in discs if d.inserted)),
                "coarse_spacing_mm": "x".join(f"{s:g}" for s in grid.spacing),
                "noise_sd_hu": f"{native_noise:.1f}",
                "canal_slices": str(track.canal_slices),
                "body_slices": str(track.body_slices),
                **params.as_strings(),
            },
        )
        return VertebraSegmentation(
            labels=LabelMap(array=labels, affine=volume.affine, convention=convention),
            levels=tuple(levels),
            info=info,
            body_only=True,
            warnings=tuple(warnings),
        )


def _parameters_version() -> int:
    import json
    from importlib import resources

    text = resources.files("imaging.segmentation.builtin").joinpath("parameters.json").read_text()
    return int(json.loads(text)["version"])
