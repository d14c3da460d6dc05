"""Limits and tolerances of the CT readers, checked at construction."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Literal

from imaging.errors import ProcessingCancelledError

DEFAULT_MAX_VOXELS = 1024 * 1024 * 2000
"""Largest volume read (about 8 GB of float32): a guard against absurd or malicious declared sizes."""


@dataclass(frozen=True)
class ReadOptions:
    """How the readers treat imperfect input.

    max_voxels: refuse a volume with more voxels than this (memory guard), before allocating it.
    uneven_tolerance: relative deviation of a slice spacing from the median spacing below which a stack
        counts as regular (floating-point rounding of ImagePositionPatient, typically < 0.1%).
    max_gap_factor: a gap larger than this multiple of the median spacing is refused (SLICE_GAP): up to it,
        one missing slice is interpolated linearly in z (with a warning); beyond it the interpolation would
        invent anatomy over more than one slice. Resampling onto a regular grid uses the median spacing.
    tilt: "correct" resamples a gantry-tilted (sheared) stack onto an axis-aligned grid (linear), with a
        warning; "refuse" raises GeometryError(reason="GANTRY_TILT").
    out_of_field_hu: stored values converting below this HU (no tissue is below air at -1000 HU; scanners
        write -2000 to -3024 outside the reconstruction circle) are set to -1024 HU and counted.
    workers: threads (or processes) decoding slices; 0 means one per CPU core (at most 8).
    decode_processes: decode large JPEG 2000 series in worker processes (spawned), because that decoder
        holds the GIL; other syntaxes decode in threads (numpy and the RLE/JPEG-LS decoders release it).
    """

    max_voxels: int = DEFAULT_MAX_VOXELS
    uneven_tolerance: float = 0.01
    max_gap_factor: float = 2.0
    tilt: Literal["correct", "refuse"] = "correct"
    out_of_field_hu: float = -1500.0
    workers: int = 0
    decode_processes: bool = True

    def __post_init__(self) -> None:
        if self.max_voxels < 27:
            raise ValueError(f"max_voxels must be at least 27, got {self.max_voxels}")
        if not 0 < self.uneven_tolerance < 0.5:
            raise ValueError(f"uneven_tolerance must be in (0, 0.5), got {self.uneven_tolerance}")
        if self.max_gap_factor < 1.0:
            raise ValueError(f"max_gap_factor must be >= 1, got {self.max_gap_factor}")
        if self.tilt not in ("correct", "refuse"):
            raise ValueError(f"tilt must be 'correct' or 'refuse', got {self.tilt!r}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0: one per CPU core), got {self.workers}")

    @property
    def n_workers(self) -> int:
        return self.workers or min(os.cpu_count() or 1, 8)


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise ProcessingCancelledError when the caller has given up."""
    if cancel is not None and cancel.is_set():
        raise ProcessingCancelledError("reading the CT was cancelled")
