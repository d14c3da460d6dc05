"""The interface every vertebra segmentation backend implements, and what it returns.

A backend takes a canonical CT `Volume` and returns a `VertebraSegmentation`: a label map in the CT's
geometry (values in one of the conventions of `imaging.conventions`), one `LevelInfo` per level found
(cranial to caudal) with a confidence, and its provenance. Measurements (`imaging.measure`) work from
it whatever the backend.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from imaging.types import LabelMap, SegmentationInfo, Volume


@dataclass(frozen=True)
class LevelInfo:
    """One vertebra found: its level name, its id in the label map, how sure the backend is, and flags."""

    level: str
    label: int
    confidence: float
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class VertebraSegmentation:
    """A backend's result. `labels.convention` names the convention of the label ids.

    `body_only` is True when the masks cover vertebral bodies only (posterior elements already removed).
    """

    labels: LabelMap
    levels: tuple[LevelInfo, ...]
    info: SegmentationInfo
    body_only: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)


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
