"""What a synthetic phantom is made of: the image, its label maps, and the truth it was drawn from."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from imaging.types import ContrastPhase, LabelMap, Volume

FractureShape = Literal["wedge", "biconcave", "crush"]
Transitional = Literal["13_rib_pairs", "11_rib_pairs", "lumbarised_s1", "sacralised_l5"]
MetalKind = Literal["pedicle_screws", "hip_prosthesis"]
InField = Literal["full", "partial", "absent"]


class Tissue(IntEnum):
    """Tissue class codes of `Phantom.tissues` (the dominant tissue of each voxel)."""

    AIR = 0
    SUBCUTANEOUS_FAT = 1
    VISCERAL_FAT = 2
    MUSCLE = 3
    AORTA = 4
    VEIN = 5
    LIVER = 6
    KIDNEY = 7
    BOWEL = 8
    BOWEL_GAS = 9
    LUNG = 10
    DISC = 11
    SPINAL_CANAL = 12
    CORTICAL_BONE = 13
    TRABECULAR_BONE = 14
    POSTERIOR_ELEMENTS = 15
    RIB = 16
    SACRUM = 17
    ILIUM = 18
    METAL = 19
    TABLE = 20


@dataclass(frozen=True)
class LevelTruth:
    """The truth of one vertebra (or the sacrum, level "S1").

    `center_mm` is the RAS scanner coordinate of the vertebral body's centre; heights are measured along
    the body's own axis at the anterior margin, the centre of the endplates and the posterior margin.
    `trabecular_hu` is the attenuation of the trabecular core before noise. `label` is the vertebra's id in
    `Phantom.labels` (0 when the convention has no id for it, e.g. the sacrum in the VerSe convention).
    """

    name: str
    label: int
    trabecular_hu: float
    cortical_hu: float
    center_mm: tuple[float, float, float]
    width_mm: float
    depth_mm: float
    height_anterior_mm: float
    height_middle_mm: float
    height_posterior_mm: float
    genant_grade: int
    fracture: FractureShape | None
    height_loss_fraction: float
    has_ribs: bool
    is_sacrum: bool
    tilt_deg: float
    in_field: InField
    z_range_mm: tuple[float, float]


@dataclass(frozen=True)
class TissueTruth:
    """Mean attenuation (HU, before noise) of the reference tissues of the phantom."""

    air: float
    subcutaneous_fat: float
    visceral_fat: float
    muscle: float
    aorta: float
    vein: float
    liver: float
    kidney: float
    disc: float
    csf: float
    lung: float


@dataclass(frozen=True)
class PhantomTruth:
    """Everything the phantom was drawn from, for checking segmentation and measurement.

    `rib_pairs` is the anatomy's count (12, or 11/13 with transitional anatomy); `lowest_rib_level` is the
    lowest rib-bearing vertebra among the phantom's levels (T12 in a normal T10-S1 phantom).
    """

    seed: int
    levels: tuple[LevelTruth, ...]
    tissues: TissueTruth
    contrast: ContrastPhase
    noise_sd: float
    label_convention: str
    rib_pairs: int
    lowest_rib_level: str | None
    transitional: Transitional | None
    transitional_description: str | None
    metal: MetalKind | None
    metal_levels: tuple[str, ...]
    lordosis_mm: float

    def level(self, name: str) -> LevelTruth | None:
        """The truth of one level, or None when the phantom does not have it."""
        return next((t for t in self.levels if t.name == name), None)

    @property
    def level_names(self) -> tuple[str, ...]:
        """Level names, cranial to caudal."""
        return tuple(t.name for t in self.levels)


@dataclass(frozen=True)
class Phantom:
    """A synthetic CT with known truth.

    `labels`: whole vertebrae (body and posterior elements) with the ids of `truth.label_convention`;
    `body_labels`: vertebral bodies only (cortex and trabecular core), same ids; `tissues`: `Tissue` codes.
    All three share the geometry of `volume`.
    """

    volume: Volume
    labels: LabelMap
    body_labels: LabelMap
    tissues: LabelMap
    truth: PhantomTruth
