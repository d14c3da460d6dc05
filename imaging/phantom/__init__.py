"""A synthetic CT phantom with known truth, and writers for it (NIfTI, DICOM series, Enhanced CT).

`make_phantom(seed=...)` draws an abdominal CT with a lower thoracic and lumbar spine, ribs, sacrum,
fat, muscle, organs and aorta, and returns a `Phantom`: the `Volume` (float32 HU, canonical RAS), label
maps (whole vertebrae, vertebral bodies, tissues) and a `PhantomTruth` (per-level HU, centre, heights,
Genant grade, ribs; tissue HU, contrast phase, transitional anatomy). The writers put it on disk as a
real user would receive it (`write_dicom_series`, `write_enhanced_ct`, `write_nifti`).
"""

from imaging.phantom.generator import DEFAULT_LEVELS, make_phantom
from imaging.phantom.types import LevelTruth, Phantom, PhantomTruth, Tissue, TissueTruth
from imaging.phantom.writers import (
    WRITABLE_TRANSFER_SYNTAXES,
    WrittenSeries,
    can_encode,
    write_dicom_series,
    write_enhanced_ct,
    write_nifti,
)

__all__ = [
    "DEFAULT_LEVELS",
    "WRITABLE_TRANSFER_SYNTAXES",
    "LevelTruth",
    "Phantom",
    "PhantomTruth",
    "Tissue",
    "TissueTruth",
    "WrittenSeries",
    "can_encode",
    "make_phantom",
    "write_dicom_series",
    "write_enhanced_ct",
    "write_nifti",
]
