"""Accuracy of the `builtin` backend over varied phantoms (the issue's acceptance check, in small).

Twelve phantoms at a reduced resolution, seeds 5000+ (never used for tuning): at least 95% of the levels
named right, and the trabecular median HU measured by `imaging.measure` on the masks within 5 HU of the truth
for at least 95% of the unfractured levels named right. The full sweep (28 phantoms, full resolution, speed)
is `bench/segmentation_bench.py`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from imaging.conventions import label_to_level
from imaging.measure.vertebra import measure_levels
from imaging.phantom import make_phantom
from imaging.segmentation.base import LevelFlag
from imaging.segmentation.builtin import BuiltinBackend
from imaging.types import Volume

pytestmark = pytest.mark.slow

SMALL: dict[str, Any] = {"shape": (160, 160), "spacing": (2.0, 2.0, 2.5)}
CASES: list[tuple[str, dict[str, Any]]] = [
    ("default", {}),
    ("low dose", {"noise_sd": 40.0}),
    ("5 mm slices", {"spacing": (2.0, 2.0, 5.0)}),
    ("arterial contrast", {"contrast": True}),
    ("osteoporotic", {"trabecular_hu": 55.0}),
    ("T12 crush grade 3", {"fractures": {"T12": ("crush", 3)}}),
    ("L2 biconcave grade 2, osteoporotic", {"fractures": {"L2": ("biconcave", 2)}, "trabecular_hu": 70.0}),
    ("pedicle screws", {"metal": "pedicle_screws"}),
    ("11 rib pairs", {"transitional": "11_rib_pairs"}),
    ("lumbarised S1", {"transitional": "lumbarised_s1"}),
    ("no sacrum", {"levels": ("T10", "T11", "T12", "L1", "L2", "L3")}),
    ("arms beside the trunk", {"shape": (240, 160)}),
]


def with_arms(volume: Volume) -> Volume:
    """The volume with two arms (muscle around a humerus) 10 mm beside the trunk, through every slice."""
    array = volume.array.copy()
    sx, sy, _ = volume.spacing
    x = (np.arange(array.shape[0]) * sx + volume.origin[0])[:, None]
    y = (np.arange(array.shape[1]) * sy + volume.origin[1])[None, :]
    xs = np.nonzero((array > -400).any(axis=(1, 2)))[0]
    half = max(abs(xs.min() * sx + volume.origin[0]), abs(xs.max() * sx + volume.origin[0]))
    for side in (-1.0, 1.0):
        r = np.hypot(x - side * (half + 55.0), y)
        arm = np.where(r < 10, -20.0, np.where(r < 14, 1000.0, 40.0))
        array[r < 45] = arm[r < 45][:, None]
    return Volume(array=array, affine=volume.affine)


def test_levels_and_trabecular_hu_over_varied_phantoms() -> None:
    named = right = 0
    hu_checked = hu_within = 0
    failures: list[str] = []
    for i, (case, options) in enumerate(CASES):
        phantom = make_phantom(seed=5000 + i, **{**SMALL, **options})
        volume = with_arms(phantom.volume) if case.startswith("arms") else phantom.volume
        result = BuiltinBackend().segment(volume)
        if case in ("11 rib pairs", "lumbarised S1"):
            assert all(LevelFlag.TRANSITIONAL_ANATOMY_SUSPECTED in info.flags for info in result.levels), case
        names = label_to_level(phantom.truth.label_convention)
        measured = {r.info.level: r for r in measure_levels(volume, result)}
        for info in result.levels:
            mask = result.mask(info.level)
            ids, counts = np.unique(phantom.body_labels.array[mask], return_counts=True)
            best = [(int(c), int(label)) for label, c in zip(ids, counts, strict=True) if label > 0]
            truth_level = names.get(max(best)[1]) if best else None
            named += 1
            if truth_level != info.level:
                failures.append(f"{case}: {info.level} is {truth_level}")
                continue
            right += 1
            truth = phantom.truth.level(truth_level)
            stats = measured[info.level].stats if info.level in measured else None
            if truth is not None and truth.fracture is None and stats is not None:
                hu_checked += 1
                hu_within += abs(stats.median - truth.trabecular_hu) <= 5.0
    assert right / named >= 0.95, failures
    assert hu_within / hu_checked >= 0.95, (hu_within, hu_checked)
