"""The interface every vertebra segmentation backend implements, and what it returns.

A backend takes a canonical CT `Volume` and returns a `VertebraSegmentation`: a label map in the CT's
geometry (values in one of the conventions of `imaging.conventions`), one `LevelInfo` per level found
(cranial to caudal) with a confidence, and its provenance. Measurements (`imaging.measure`) work from
it whatever the backend.

Confidence (0..1) is the backend's belief that the level is named right *and* that its mask is usable for
measurement. Flags (`LevelFlag`) say why a confidence is below 1; they are copied into the measurement's
`qc` list.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from imaging.conventions import label_to_level, level_rank
from imaging.errors import GeometryError, ImageInputError, ProcessingCancelledError
from imaging.types import LabelMap, SegmentationInfo, Volume


class LevelFlag(StrEnum):
    """Why a level's confidence is below 1 (machine-readable; lands in `VertebraMeasurement.qc`)."""

    CUT_BY_SCAN_EDGE = "CUT_BY_SCAN_EDGE"
    """The vertebra's mask touches the first/last slice or the in-plane field of view: it is partial."""
    FRAGMENTED = "FRAGMENTED"
    """The mask has several disconnected parts of substantial size."""
    SMALL_MASK = "SMALL_MASK"
    """The mask is far smaller than any whole vertebra (a sliver or a mislabel)."""
    TRANSITIONAL_ANATOMY_SUSPECTED = "TRANSITIONAL_ANATOMY_SUSPECTED"
    """The rib-based and the sacrum-based level counts disagree (13 or 11 rib pairs, lumbarised S1,
    sacralised L5): the level names may be off by one."""
    SINGLE_LANDMARK = "SINGLE_LANDMARK"
    """Only one of the two anatomical landmarks (lowest rib, sacrum) was in the field of view."""
    NO_LANDMARK = "NO_LANDMARK"
    """No confirmed landmark: every vertebra in view bears ribs and no sacrum is in view, so the lowest
    rib-bearing vertebra seen was assumed to be T12 (the names may be off)."""
    UNCERTAIN_BOUNDARY = "UNCERTAIN_BOUNDARY"
    """An intervertebral disc next to this level was weakly detected (fracture, fusion, thick slices)."""
    METAL_NEARBY = "METAL_NEARBY"
    """Metal (implant, clip) lies in or next to the vertebra: streak artefacts may bias HU."""


@dataclass(frozen=True)
class LevelInfo:
    """One vertebra found: its level name, its id in the label map, how sure the backend is, and flags."""

    level: str
    label: int
    confidence: float
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        level_rank(self.level)  # raises for an unknown level name
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence of {self.level} must lie in [0, 1], got {self.confidence}")


@dataclass(frozen=True)
class VertebraSegmentation:
    """A backend's result. `labels.convention` names the convention of the label ids.

    `body_only` is True when the masks cover vertebral bodies only (posterior elements already removed).
    Levels run cranial to caudal; each level's `label` is its id in `labels` under `labels.convention`.
    """

    labels: LabelMap
    levels: tuple[LevelInfo, ...]
    info: SegmentationInfo
    body_only: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [info.level for info in self.levels]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate levels in a segmentation: {names}")
        ranks = [level_rank(name) for name in names]
        if ranks != sorted(ranks):
            raise ValueError(f"levels must run cranial to caudal, got {names}")
        known = label_to_level(self.labels.convention)
        for info in self.levels:
            if known.get(info.label) != info.level:
                raise ValueError(f"label {info.label} is not {info.level} in the {self.labels.convention!r} convention")

    @property
    def level_names(self) -> tuple[str, ...]:
        """The levels found, cranial to caudal."""
        return tuple(info.level for info in self.levels)

    def level(self, name: str) -> LevelInfo | None:
        """The `LevelInfo` of one level, or None when it was not found."""
        return next((info for info in self.levels if info.level == name), None)

    def mask(self, name: str) -> npt.NDArray[np.bool_]:
        """Boolean mask of one level in the CT's geometry; raises ImageInputError when it was not found."""
        info = self.level(name)
        if info is None:
            raise ImageInputError(
                f"level {name} was not found by the {self.info.backend} backend "
                f"(found: {', '.join(self.level_names) or 'none'})",
                reason="LEVEL_NOT_FOUND",
            )
        mask: npt.NDArray[np.bool_] = self.labels.array == info.label
        return mask


@runtime_checkable
class SegmentationBackend(Protocol):
    """A vertebra segmentation backend (see `imaging.segmentation.registry`)."""

    name: str

    def is_available(self) -> bool:
        """True when the backend's packages (and weights) are installed."""
        ...

    def segment(self, volume: Volume, *, cancel: threading.Event | None = None) -> VertebraSegmentation:
        """Find and label the vertebrae of `volume`; raise imaging errors on failure."""
        ...


def check_cancelled(cancel: threading.Event | None, step: str) -> None:
    """Raise ProcessingCancelledError between steps when the caller gave up."""
    if cancel is not None and cancel.is_set():
        raise ProcessingCancelledError(f"vertebra segmentation cancelled before {step}")


def check_volume(volume: Volume) -> None:
    """Refuse volumes no backend can segment: not 3-D float HU with finite values, or too few slices."""
    if not isinstance(volume, Volume):
        raise ImageInputError(f"expected an imaging.types.Volume, got {type(volume).__name__}")
    if min(volume.shape) < 2:
        raise GeometryError(
            f"a volume of shape {volume.shape} cannot hold a vertebra: at least 2 voxels per axis are needed",
            reason="TOO_FEW_SLICES",
        )
    if not np.issubdtype(volume.array.dtype, np.number) or np.issubdtype(volume.array.dtype, np.complexfloating):
        raise ImageInputError(f"CT voxels must be real numbers (HU), got dtype {volume.array.dtype}")
