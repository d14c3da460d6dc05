"""The `labels` backend: vertebrae from a label map provided with the CT (TotalSegmentator or VerSe ids).

The label map must already be in the CT's geometry (`imaging.io.load_label_map(path, reference=ct)`
aligns it by geometry). Every vertebra id of the map's convention that is present becomes a level, with
confidence 1.0 unless its mask is cut by the scan edge, fragmented or tiny (see `mask_qc`). Ids that are
not vertebrae (organs, ribs, ...) are dropped from the returned label map. Masks cover whole vertebrae
(body and posterior elements): `body_only` is False.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from imaging.conventions import convention_names, label_to_level, level_rank
from imaging.errors import GeometryError, ImageInputError
from imaging.segmentation.base import LevelInfo, VertebraSegmentation, check_cancelled, check_volume
from imaging.segmentation.mask_qc import MaskQcPolicy, assess_mask
from imaging.types import LabelMap, SegmentationInfo, Volume


class LabelsBackend:
    """Wraps a provided `LabelMap`; keyword-only configuration, checked at construction."""

    name = "labels"

    def __init__(self, *, label_map: LabelMap, qc: MaskQcPolicy | None = None) -> None:
        if not isinstance(label_map, LabelMap):
            raise ImageInputError(f"label_map must be an imaging.types.LabelMap, got {type(label_map).__name__}")
        label_to_level(label_map.convention)  # raises for an unknown convention
        _check_integer_labels(label_map.array)
        self.label_map = label_map
        self.qc = qc or MaskQcPolicy()

    def is_available(self) -> bool:
        return True

    def segment(self, volume: Volume, *, cancel: threading.Event | None = None) -> VertebraSegmentation:
        check_volume(volume)
        label_map = self.label_map
        if not label_map.same_geometry(volume):
            raise GeometryError(
                f"the label map's geometry (shape {label_map.shape}, origin {_fmt(label_map.origin)}, "
                f"spacing {_fmt(label_map.spacing)}) differs from the CT's (shape {volume.shape}, origin "
                f"{_fmt(volume.origin)}, spacing {_fmt(volume.spacing)}); load it aligned to the CT with "
                "imaging.io.load_label_map(path, reference=ct)",
                reason="LABEL_MAP_GEOMETRY_MISMATCH",
            )
        convention = label_map.convention
        id_to_level = label_to_level(convention)
        array = np.asarray(label_map.array)
        present = _present_ids(array)
        vertebra_ids = sorted((i for i in present if i in id_to_level), key=lambda i: level_rank(id_to_level[i]))
        warnings: list[str] = []
        if not vertebra_ids:
            hint = _other_convention_hint(present, convention)
            raise ImageInputError(
                f"the label map holds no vertebra id of the {convention!r} convention "
                f"(ids present: {_fmt_ids(present)}){hint}",
                reason="NO_VERTEBRA_LABELS",
            )
        if convention == "verse" and any(i > max(id_to_level) for i in present):
            warnings.append(
                f"the label map holds ids above {max(id_to_level)} (up to {max(present)}), which VerSe does not "
                "use: it may be a TotalSegmentator map (use the totalsegmentator convention)"
            )
        check_cancelled(cancel, "checking the label map's levels")

        out_dtype = np.uint8 if max(vertebra_ids) < 256 else np.int16
        vertebrae = _keep_ids(array, vertebra_ids, present, out_dtype)
        boxes = ndimage.find_objects(vertebrae)
        voxel_ml = float(np.prod(volume.spacing)) / 1000.0
        levels: list[LevelInfo] = []
        for label in vertebra_ids:
            box = boxes[label - 1]
            if box is None:
                continue
            offset = (box[0].start, box[1].start, box[2].start)
            qc = assess_mask(
                vertebrae[box] == label,
                offset=offset,
                full_shape=volume.shape,
                voxel_volume_ml=voxel_ml,
                policy=self.qc,
            )
            levels.append(LevelInfo(level=id_to_level[label], label=label, confidence=qc.confidence, flags=qc.flags))
        _check_level_order(levels, vertebrae, boxes, warnings)
        return VertebraSegmentation(
            labels=LabelMap(array=vertebrae, affine=volume.affine, convention=convention),
            levels=tuple(levels),
            info=SegmentationInfo(
                backend="labels",
                label_convention=convention,
                parameters={
                    "min_volume_ml": str(self.qc.min_volume_ml),
                    "fragment_min_fraction": str(self.qc.fragment_min_fraction),
                },
            ),
            body_only=False,
            warnings=tuple(warnings),
        )


def _check_integer_labels(array: npt.NDArray[np.generic]) -> None:
    if np.issubdtype(array.dtype, np.bool_) or not np.issubdtype(array.dtype, np.number):
        raise ImageInputError(f"a label map must hold integer ids, got dtype {array.dtype}", reason="INVALID_LABELS")
    if np.issubdtype(array.dtype, np.floating) and (
        not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array))
    ):
        raise ImageInputError(
            "a label map must hold integer ids, but this one holds fractional or non-finite values "
            "(was it resampled with interpolation instead of nearest neighbour?)",
            reason="INVALID_LABELS",
        )
    if array.size and array.min() < 0:
        raise ImageInputError(f"a label map cannot hold negative ids (found {array.min()})", reason="INVALID_LABELS")


def _keep_ids(
    array: npt.NDArray[np.generic], keep: list[int], present: list[int], dtype: type[np.integer]
) -> npt.NDArray[np.integer]:
    """`array` with every id outside `keep` set to 0, as `dtype` (a lookup table when the ids are small)."""
    ints = array if np.issubdtype(array.dtype, np.integer) else array.astype(np.int64)
    if max(present) <= 65535:
        lut = np.zeros(max(present) + 1, dtype=dtype)
        lut[keep] = keep
        kept: npt.NDArray[np.integer] = lut[ints]
        return kept
    return np.where(np.isin(ints, keep), ints, 0).astype(dtype)


def _present_ids(array: npt.NDArray[np.generic]) -> list[int]:
    ints = array if np.issubdtype(array.dtype, np.integer) else array.astype(np.int64)
    if ints.size == 0:
        return []
    if int(ints.max()) > 65535:
        return [int(i) for i in np.unique(ints) if i > 0]
    counts = np.bincount(ints.ravel().astype(np.int64, copy=False))
    return [int(i) for i in np.nonzero(counts)[0] if i > 0]


def _other_convention_hint(present: list[int], convention: str) -> str:
    for other in convention_names():
        if other != convention and any(i in label_to_level(other) for i in present):
            return f"; if it uses the {other} convention, say so (label convention {other!r})"
    return ""


def _check_level_order(
    levels: list[LevelInfo],
    vertebrae: npt.NDArray[np.generic],
    boxes: list[tuple[slice, ...] | None],
    warnings: list[str],
) -> None:
    """Warn when the labelled levels are not stacked cranial to caudal along the superior axis."""
    centres: list[float] = []
    for info in levels:
        box = boxes[info.label - 1]
        if box is None:
            continue
        z = np.nonzero(np.any(vertebrae[box] == info.label, axis=(0, 1)))[0]
        centres.append(float(z.mean()) + box[2].start)
    if any(b >= a for a, b in itertools.pairwise(centres)):
        warnings.append(
            "the labelled vertebrae are not stacked cranial to caudal along the scan's superior axis: "
            "the label map may be mislabelled or misaligned with the CT"
        )


def _fmt(values: tuple[float, float, float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"


def _fmt_ids(ids: list[int]) -> str:
    if not ids:
        return "none"
    shown = ", ".join(str(i) for i in ids[:20])
    return shown + (f", ... ({len(ids)} ids)" if len(ids) > 20 else "")
