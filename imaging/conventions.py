"""Vertebra level names and label-map conventions (data in `imaging/data/vertebra_labels.json`).

Levels run cranial to caudal: C1-C7, T1-T12, T13 (transitional), L1-L5, L6 (transitional), S1.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from imaging.errors import ImageInputError

LEVELS: tuple[str, ...] = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 14)),
    *(f"L{i}" for i in range(1, 7)),
    "S1",
)
"""Every level name, cranial to caudal."""

LUMBAR_L1_L4: tuple[str, ...] = ("L1", "L2", "L3", "L4")


@cache
def _conventions() -> dict[str, Any]:
    text = resources.files("imaging").joinpath("data/vertebra_labels.json").read_text()
    conventions: dict[str, Any] = json.loads(text)["conventions"]
    return conventions


def convention_names() -> tuple[str, ...]:
    """Known label conventions, e.g. ("totalsegmentator", "verse")."""
    return tuple(sorted(_conventions()))


def label_to_level(convention: str) -> dict[int, str]:
    """Label id -> level name for a convention; raises ImageInputError naming the known ones."""
    conventions = _conventions()
    if convention not in conventions:
        raise ImageInputError(
            f"unknown label convention {convention!r}; use one of: {', '.join(convention_names())}",
            reason="UNKNOWN_LABEL_CONVENTION",
        )
    return {int(label): str(level) for label, level in conventions[convention]["labels"].items()}


def level_to_label(convention: str) -> dict[str, int]:
    """Level name -> label id for a convention."""
    return {level: label for label, level in label_to_level(convention).items()}


def level_rank(level: str) -> int:
    """Position of a level from cranial (C1 = 0) to caudal (S1); raises for an unknown name."""
    try:
        return LEVELS.index(level)
    except ValueError:
        raise ImageInputError(f"unknown vertebra level {level!r}", reason="UNKNOWN_LEVEL") from None
