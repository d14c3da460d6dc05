"""A small analytic spine model with exact truth, for the measurement, calibration and QC tests.

Unlike the full phantom generator (`imaging.phantom`), every quantity here is set by the test: trabecular
HU per level, body heights (wedge / crush / biconcave shapes), reference tissue HU, a basivertebral vein,
bone islands, metal, the aorta's HU. Geometry: canonical RAS+ (axis 0 right, 1 anterior, 2 superior), an
elliptical torso of fat around soft tissue, the vertebral bodies (1.5 mm cortical shell, trabecular core)
with a posterior arch (pedicles, laminae, spinous process) labelled together in TotalSegmentator ids,
discs between bodies, paraspinal muscle behind the spine and the aorta anterior-left of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from imaging.conventions import level_to_label
from imaging.types import AcquisitionInfo, LabelMap, Volume

SPACING = (1.25, 1.25, 1.25)


@dataclass(frozen=True)
class LevelSpec:
    name: str
    trabecular_hu: float = 150.0
    height_posterior_mm: float = 26.0
    height_anterior_mm: float | None = None  # None: as posterior
    height_middle_mm: float | None = None  # None: straight endplates
    vein: bool = False
    bone_island_mm: float = 0.0
    metal: bool = False


@dataclass(frozen=True)
class Tissues:
    air: float = -1000.0
    subcutaneous_fat: float = -100.0
    visceral_fat: float = -95.0
    muscle: float = 50.0
    blood: float = 42.0
    soft_tissue: float = 45.0
    disc: float = 90.0
    cortical: float = 800.0


@dataclass(frozen=True)
class SpineModel:
    volume: Volume
    labels: LabelMap
    levels: tuple[LevelSpec, ...]
    tissues: Tissues
    centers_mm: dict[str, tuple[float, float, float]] = field(default_factory=dict)


_BODY_HALF_WIDTH = 21.0
_BODY_HALF_DEPTH = 16.0
_DISC_MM = 8.0


def build_spine(
    levels: tuple[LevelSpec, ...] = (LevelSpec("T12"), LevelSpec("L1"), LevelSpec("L2")),
    *,
    tissues: Tissues | None = None,
    noise_sd: float = 15.0,
    seed: int = 0,
    kvp: float | None = 120.0,
    contrast_agent: str | None = None,
    margin_mm: float = 14.0,
    scale: float = 1.0,
    offset_hu: float = 0.0,
) -> SpineModel:
    """Levels listed cranial to caudal; `scale`/`offset_hu` distort every HU (a mis-calibrated scanner)."""
    tissues = tissues or Tissues()
    sx, sy, sz = SPACING
    heights = [max(lv.height_posterior_mm, lv.height_anterior_mm or 0.0) for lv in levels]
    total_z = sum(heights) + _DISC_MM * (len(levels) - 1) + 2 * margin_mm
    nx, ny, nz = round(230 / sx), round(190 / sy), round(total_z / sz)
    x = (np.arange(nx) * sx - 115.0)[:, None, None]
    y = (np.arange(ny) * sy - 105.0)[None, :, None]
    z = (np.arange(nz) * sz)[None, None, :]
    hu = np.full((nx, ny, nz), tissues.air, dtype=np.float32)
    labels = np.zeros((nx, ny, nz), dtype=np.uint8)
    torso_outer = (x / 105.0) ** 2 + ((y - 5.0) / 85.0) ** 2 <= 1.0
    torso_inner = (x / 90.0) ** 2 + ((y - 5.0) / 70.0) ** 2 <= 1.0
    hu[np.broadcast_to(torso_outer, hu.shape)] = tissues.subcutaneous_fat
    hu[np.broadcast_to(torso_inner, hu.shape)] = tissues.soft_tissue
    # visceral fat pad anterior to the spine, paraspinal muscles behind it, the aorta anterior-left
    pad = ((x - 35.0) / 25.0) ** 2 + ((y - 45.0) / 15.0) ** 2 <= 1.0
    hu[np.broadcast_to(pad, hu.shape)] = tissues.visceral_fat
    for side in (-1.0, 1.0):
        muscle = ((x - side * 30.0) / 17.0) ** 2 + ((y + 48.0) / 20.0) ** 2 <= 1.0
        hu[np.broadcast_to(muscle, hu.shape)] = tissues.muscle
    periaortic = ((x + 14.0) ** 2 + (y - 33.0) ** 2) <= 16.0**2
    hu[np.broadcast_to(periaortic, hu.shape)] = tissues.visceral_fat
    aorta = ((x + 14.0) ** 2 + (y - 33.0) ** 2) <= 11.0**2
    hu[np.broadcast_to(aorta, hu.shape)] = tissues.blood
    ts = level_to_label("totalsegmentator")
    z_cursor = total_z - margin_mm
    centers: dict[str, tuple[float, float, float]] = {}
    body_xy = (x / _BODY_HALF_WIDTH) ** 2 + (y / _BODY_HALF_DEPTH) ** 2
    core_xy = (x / (_BODY_HALF_WIDTH - 1.5)) ** 2 + (y / (_BODY_HALF_DEPTH - 1.5)) ** 2
    frac_anterior = np.clip((y + _BODY_HALF_DEPTH) / (2 * _BODY_HALF_DEPTH), 0.0, 1.0)  # 0 posterior, 1 anterior
    rng = np.random.default_rng(seed)
    for i, (lv, hmax) in enumerate(zip(levels, heights, strict=True)):
        top = z_cursor
        hp = lv.height_posterior_mm
        ha = lv.height_anterior_mm if lv.height_anterior_mm is not None else hp
        local_h = hp + (ha - hp) * frac_anterior  # wedge: height falls linearly towards the front
        bottom = top - hmax
        zc = bottom + hmax / 2.0
        if lv.height_middle_mm is not None:
            # biconcave: both endplates bow inward, deepest at the centre
            r2 = np.clip((x / _BODY_HALF_WIDTH) ** 2 + (y / _BODY_HALF_DEPTH) ** 2, 0.0, 1.0)
            sag = (hp - lv.height_middle_mm) / 2.0 * (1.0 - r2)
        else:
            sag = np.zeros_like(local_h)
        lower = bottom + sag
        upper = bottom + local_h - sag
        body = (body_xy <= 1.0) & (z >= lower) & (z <= upper)
        core = (core_xy <= 1.0) & (z >= lower + 1.5) & (z <= upper - 1.5)
        hu[body] = tissues.cortical
        hu[core] = lv.trabecular_hu
        if lv.vein:
            vein = (np.abs(x) <= 3.0) & (y <= -6.0) & (z >= zc - 3.0) & (z <= zc + 3.0) & core
            hu[vein] = 0.0
        if lv.bone_island_mm > 0:
            island = (x - 6.0) ** 2 + (y - 4.0) ** 2 + (z - zc) ** 2 <= lv.bone_island_mm**2
            hu[island & core] = 1200.0
        # posterior arch: pedicles, a ring around the canal, the spinous process
        arch_z = (z >= bottom + 0.2 * hp) & (z <= bottom + 0.8 * hp)
        canal = x**2 + (y + 28.0) ** 2 <= 9.0**2
        ring = (x**2 + (y + 28.0) ** 2 <= 14.0**2) & ~canal & (y <= -28.0)  # laminae behind the canal
        pedicles = (np.abs(np.abs(x) - 12.0) <= 3.0) & (y <= -10.0) & (y >= -30.0)
        spinous = (np.abs(x) <= 3.0) & (y <= -40.0) & (y >= -65.0)
        arch = (ring | (pedicles & ~canal) | spinous) & arch_z
        hu[arch] = 600.0
        hu[np.broadcast_to(canal, hu.shape) & arch_z] = 10.0
        labels[body | arch] = ts[lv.name]
        if lv.metal:
            screw = (np.abs(x - 11.0) <= 2.5) & (np.abs(z - zc) <= 2.5) & (y <= -4.0) & (y >= -30.0)
            hu[screw] = 3000.0
        centers[lv.name] = (0.0, 0.0, float(zc))
        if i + 1 < len(levels):
            disc_z = (z < bottom) & (z >= bottom - _DISC_MM)
            hu[(body_xy <= 1.0) & disc_z] = tissues.disc
        z_cursor = bottom - _DISC_MM
    hu = hu * scale + offset_hu
    hu += rng.normal(0.0, noise_sd, hu.shape).astype(np.float32)
    affine = np.diag([sx, sy, sz, 1.0])
    affine[:3, 3] = (-115.0, -105.0, 0.0)
    acquisition = AcquisitionInfo(kind="nifti", kvp=kvp, contrast_agent=contrast_agent, series_uid="1.2.3.4")
    return SpineModel(
        volume=Volume(array=hu, affine=affine, acquisition=acquisition),
        labels=LabelMap(array=labels, affine=affine, convention="totalsegmentator"),
        levels=levels,
        tissues=tissues,
        centers_mm=centers,
    )


def body_truth_mask(model: SpineModel, level: str) -> npt.NDArray[np.bool_]:
    """Voxels of the level's label anterior to the model's posterior body wall (the true body)."""
    label = level_to_label("totalsegmentator")[level]
    y = (np.arange(model.labels.shape[1]) * SPACING[1] - 105.0)[None, :, None]
    out: npt.NDArray[np.bool_] = (model.labels.array == label) & (y >= -_BODY_HALF_DEPTH)
    return out


def test_model_has_the_levels_and_tissues_it_was_asked_for() -> None:
    model = build_spine(noise_sd=0.0)
    ts = level_to_label("totalsegmentator")
    present = set(np.unique(model.labels.array)) - {0}
    assert present == {ts["T12"], ts["L1"], ts["L2"]}
    hu = model.volume.array
    assert float(hu.min()) == -1000.0
    assert np.isclose(hu, 150.0).sum() > 10_000  # trabecular cores
    assert np.isclose(hu, 42.0).sum() > 1_000  # aorta
