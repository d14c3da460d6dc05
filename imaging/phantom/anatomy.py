"""Anatomical constants of the phantom, read from `imaging/phantom/data/anatomy.json` (sources cited there)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class LevelDimensions:
    """Typical adult dimensions (mm) of one vertebra and of the disc below it."""

    width: float
    depth: float
    height: float
    disc_below: float
    canal_width: float
    canal_depth: float
    spinous_length: float
    transverse_length: float
    rib_length: float


@cache
def _anatomy() -> dict[str, Any]:
    text = resources.files("imaging.phantom").joinpath("data/anatomy.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def level_dimensions(level: str) -> LevelDimensions:
    """Dimensions of `level` (T9..T13, L1..L6, S1); KeyError for a level the phantom cannot draw."""
    levels = _anatomy()["levels"]
    if level not in levels:
        raise KeyError(f"the phantom has no anatomy for level {level!r}; it draws {', '.join(levels)}")
    return LevelDimensions(**{k: float(v) for k, v in levels[level].items()})


def drawable_levels() -> tuple[str, ...]:
    """Levels the phantom can draw, cranial to caudal."""
    return tuple(_anatomy()["levels"])


def fracture_loss_range(grade: int) -> tuple[float, float]:
    """Fractional height loss of a Genant grade (Genant 1993, doi:10.1002/jbmr.5650080915)."""
    grades = _anatomy()["fracture_grades"]
    if str(grade) not in grades:
        raise KeyError(f"Genant grade must be 1, 2 or 3, got {grade!r}")
    entry = grades[str(grade)]
    return float(entry["min_loss"]), float(entry["max_loss"])


def tissue_hu_range(tissue: str) -> tuple[float, float]:
    """Typical attenuation range (HU) of a tissue of the phantom."""
    lo, hi = _anatomy()["tissue_hu"][tissue]
    return float(lo), float(hi)
