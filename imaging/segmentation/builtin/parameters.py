"""The builtin backend's parameters: a frozen dataclass read from `parameters.json` (values with their sources)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from functools import cache
from importlib import resources
from typing import Any

Range = tuple[float, float]


@dataclass(frozen=True)
class BuiltinParameters:
    """Every threshold of the builtin segmentation (units and sources in `parameters.json`)."""

    coarse_mm: float
    denoise_above_hu: float
    torso_hu: float
    bone_hu: float
    canal_fluid_max_hu: float
    canal_area_mm2: Range
    canal_enclosure_mm: float
    canal_enclosure_min_directions: int
    chain_max_gap_mm: float
    body_area_mm2: Range
    neck_cut_mm: float
    body_offset_mm: Range
    body_shell_contrast_hu: float
    body_fill_hu: float
    dense_hu: float
    disc_window_mm: float
    disc_min_contrast_hu: float
    vertebra_period_mm: Range
    rib_reach_mm: float
    rib_attach_mm: float
    rib_contact_mm: float
    rib_cut_slope_mm: float
    rib_max_section_mm2: float
    sacrum_half_width_mm: float
    sacrum_min_height_mm: float
    t12_transverse_ratio: float
    confidence_both_landmarks: float
    confidence_single_landmark: float
    confidence_transitional: float
    confidence_unconfirmed_ribs: float
    confidence_weak_disc: float

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, tuple) and not value[0] < value[1]:
                raise ValueError(f"{item.name} must be an increasing (low, high) pair, got {value}")
        for name in ("coarse_mm", "canal_enclosure_mm", "chain_max_gap_mm", "rib_reach_mm", "rib_attach_mm"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 1 <= self.canal_enclosure_min_directions <= 8:
            raise ValueError("canal_enclosure_min_directions must lie in 1..8")
        for name in (
            "confidence_both_landmarks",
            "confidence_single_landmark",
            "confidence_transitional",
            "confidence_unconfirmed_ribs",
            "confidence_weak_disc",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")

    @classmethod
    def default(cls) -> BuiltinParameters:
        """The published defaults of `parameters.json`."""
        return _default()

    def with_changes(self, **changes: Any) -> BuiltinParameters:
        """A copy with some parameters changed (validated again)."""
        return replace(self, **changes)

    def as_strings(self) -> dict[str, str]:
        """Every parameter as text, for provenance (`SegmentationInfo.parameters`)."""
        return {item.name: str(getattr(self, item.name)) for item in fields(self)}


@cache
def _default() -> BuiltinParameters:
    text = resources.files("imaging.segmentation.builtin").joinpath("parameters.json").read_text()
    raw: dict[str, Any] = json.loads(text)["parameters"]
    values: dict[str, Any] = {}
    for item in fields(BuiltinParameters):
        value = raw[item.name]["value"]
        values[item.name] = tuple(float(v) for v in value) if isinstance(value, list) else value
    return BuiltinParameters(**values)
