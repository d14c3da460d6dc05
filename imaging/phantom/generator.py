"""`make_phantom`: a synthetic abdominal CT with a lower thoracic and lumbar spine and known truth.

The phantom is drawn in RAS millimetres on an axis-aligned grid (array axis 0 -> Right, 1 -> Anterior,
2 -> Superior, the canonical orientation of `imaging.io`). World z = 0 is the top of the sacrum; the
spine's vertebral bodies stack upwards from there. Every structure is a signed-distance shape painted
with partial-volume edges (`imaging.phantom.shapes`), then Gaussian noise is added.

What is drawn, from the skin inwards: air, the CT table, subcutaneous fat, the muscle wall, the abdominal
cavity with visceral fat, liver, spleen, kidneys, bowel loops with gas, lung bases, psoas muscles, aorta
(anterior-left of the spine, bifurcating at L4) and inferior vena cava, intervertebral discs, the spinal
canal, vertebral bodies (cortical shell, trabecular core, basivertebral vein) with pedicles, laminae,
transverse and spinous processes and facets, ribs on thoracic levels, the sacrum with its alae, the iliac
wings, and optionally metal (pedicle screws or a hip prosthesis) with streak artefacts.

Anatomical dimensions and tissue ranges are data (`data/anatomy.json`, with sources). Fracture grades follow
Genant et al. 1993 (doi:10.1002/jbmr.5650080915): height loss 20-25% grade 1, 25-40% grade 2, >40% grade 3.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from imaging.conventions import LEVELS, level_to_label
from imaging.phantom.anatomy import LevelDimensions, fracture_loss_range, level_dimensions, tissue_hu_range
from imaging.phantom.shapes import F32, Canvas, Region, box_sdf, ellipse_sdf, segment_sdf
from imaging.phantom.types import (
    FractureShape,
    InField,
    LevelTruth,
    MetalKind,
    Phantom,
    PhantomTruth,
    Tissue,
    TissueTruth,
    Transitional,
)
from imaging.types import AcquisitionInfo, LabelMap, Volume

DEFAULT_LEVELS: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")
"""T10..L5 and the sacrum (named S1, its first segment)."""

AIR_HU = -1000.0
METAL_HU = 3071.0
_SHELL_MM = 1.5
_TRANSITIONAL_DESCRIPTIONS: dict[str, str] = {
    "13_rib_pairs": "13 rib pairs: a 13th thoracic vertebra (T13) carries ribs; the lowest rib-bearing vertebra is T13",
    "11_rib_pairs": "11 rib pairs: T12 carries no ribs; the lowest rib-bearing vertebra is T11",
    "lumbarised_s1": "lumbarised S1: a sixth mobile lumbar-type vertebra (L6) with a disc below it above the sacrum",
    "sacralised_l5": "sacralised L5: L5 is fused to the sacrum (no L5/S1 disc, transverse processes fused to the alae)",
}


@dataclass(frozen=True)
class _Level:
    """Layout of one vertebra in the phantom (internal)."""

    name: str
    dims: LevelDimensions
    center: tuple[float, float, float]
    tilt: float  # radians; positive tilts the top endplate anteriorly
    h_ant: float
    h_mid: float
    h_post: float
    fracture: FractureShape | None
    grade: int
    loss: float
    trabecular_hu: float
    cortical_hu: float
    has_ribs: bool
    disc_below: float
    disc_above: float


def make_phantom(
    *,
    seed: int,
    levels: Sequence[str] = DEFAULT_LEVELS,
    shape: tuple[int, int] = (256, 256),
    spacing: tuple[float, float, float] = (1.4, 1.4, 2.0),
    z_extent_mm: tuple[float, float] | None = None,
    trabecular_hu: float | Mapping[str, float] | None = None,
    cortical_hu: float | None = None,
    disc_hu: float | None = None,
    noise_sd: float = 12.0,
    fat_hu: float | None = None,
    muscle_hu: float | None = None,
    blood_hu: float | None = None,
    contrast: bool = False,
    aorta_hu: float | None = None,
    fractures: Mapping[str, tuple[FractureShape, int]] | None = None,
    transitional: Transitional | None = None,
    metal: MetalKind | None = None,
    metal_level: str = "L4",
    lordosis_mm: float = 8.0,
    table: bool = True,
    label_convention: str | None = None,
) -> Phantom:
    """Draw a synthetic CT phantom with known truth, deterministic for a `seed` and the options.

    levels: contiguous vertebra levels, cranial to caudal; "S1" means the sacrum. Thoracic levels carry
        ribs (the lowest rib-bearing vertebra is T12 unless `transitional` says otherwise).
    shape, spacing: in-plane matrix and voxel size (mm, x y z); the number of slices follows from
        `z_extent_mm` (world z range; default: every level with a margin). A narrower range cuts levels
        (`LevelTruth.in_field` says which).
    trabecular_hu: one value for every level, a value per level, or None to draw a patient value in
        50-250 HU with a small per-level variation. Other HU values default to draws in the ranges of
        `data/anatomy.json`.
    contrast: arterial contrast phase (aorta 180-260 HU, enhanced kidneys, liver and veins) or native.
    fractures: level -> (shape, Genant grade 1-3); height loss drawn within the grade's range.
    transitional: "13_rib_pairs" (adds T13 with ribs below T12), "11_rib_pairs" (no ribs on T12),
        "lumbarised_s1" (adds a mobile L6 above the sacrum), "sacralised_l5" (L5 fused to the sacrum).
    metal: "pedicle_screws" (at `metal_level`) or "hip_prosthesis" (right hip, bottom of the field),
        both with streak artefacts.
    label_convention: ids of `Phantom.labels`; default "totalsegmentator", or "verse" when the phantom has
        a T13 or an L6 (which TotalSegmentator has no id for; the VerSe convention has no sacrum id, so
        the sacrum is then unlabelled).
    """
    names = _level_names(levels, transitional)
    convention = label_convention or ("verse" if {"T13", "L6"} & set(names) else "totalsegmentator")
    ids = level_to_label(convention)
    missing = [n for n in names if n not in ids and n != "S1"]
    if missing:
        raise ValueError(f"label convention {convention!r} has no id for {missing}; use label_convention='verse'")
    if noise_sd < 0 or any(s <= 0 for s in spacing) or min(shape) < 8:
        raise ValueError("noise_sd must be >= 0, spacing > 0 and shape at least 8x8")
    fractures = dict(fractures or {})
    for level, (kind, grade) in fractures.items():
        if level not in names or level == "S1":
            raise ValueError(f"fracture level {level!r} is not a vertebra of this phantom ({', '.join(names)})")
        if kind not in ("wedge", "biconcave", "crush"):
            raise ValueError(f"fracture shape must be wedge, biconcave or crush, got {kind!r}")
        fracture_loss_range(grade)
    if metal == "pedicle_screws" and metal_level not in names:
        raise ValueError(f"metal_level {metal_level!r} is not a level of this phantom")

    rng = np.random.default_rng(seed)
    tissues = _draw_tissues(
        rng,
        contrast=contrast,
        fat_hu=fat_hu,
        muscle_hu=muscle_hu,
        blood_hu=blood_hu,
        aorta_hu=aorta_hu,
        disc_hu=disc_hu,
    )
    cortical = float(cortical_hu if cortical_hu is not None else rng.uniform(*tissue_hu_range("cortical")))
    body_a = float(rng.uniform(135.0, 165.0))
    body_b = float(rng.uniform(95.0, 118.0))
    fat_sc = float(rng.uniform(12.0, 30.0))
    size = float(rng.uniform(0.94, 1.06))
    # The patient is rarely centred in the field of view: shift the grid, not the anatomy.
    off_x, off_y = float(rng.uniform(-15.0, 15.0)), float(rng.uniform(-10.0, 10.0))
    trab = _draw_trabecular(rng, names, trabecular_hu)
    layout = _layout(
        rng,
        names,
        size=size,
        trab=trab,
        cortical=cortical,
        fractures=fractures,
        transitional=transitional,
        lordosis_mm=lordosis_mm,
        spine_y=-body_b + fat_sc + 72.0,
    )

    vertebrae = [lv for lv in layout if lv.name != "S1"]
    sacrum = next((lv for lv in layout if lv.name == "S1"), None)
    if z_extent_mm is None:
        top = vertebrae[0] if vertebrae else layout[0]
        z_hi = top.center[2] + top.h_post / 2 + top.disc_above + 6.0
        bottom = layout[-1]
        z_lo = bottom.center[2] - (70.0 if sacrum is not None else bottom.h_post / 2 + bottom.disc_below + 6.0)
    else:
        z_lo, z_hi = sorted(z_extent_mm)
    nz = max(round((z_hi - z_lo) / spacing[2]) + 1, 1)
    origin = (-(shape[0] - 1) * spacing[0] / 2 + off_x, -(shape[1] - 1) * spacing[1] / 2 - 8.0 + off_y, z_lo)
    canvas = Canvas((shape[0], shape[1], nz), spacing, origin, AIR_HU)

    torso = _Torso(a=body_a, b=body_b, fat=fat_sc, layout=layout, canvas=canvas)
    if table:
        torso.paint_table()
    torso.paint_body(tissues)
    torso.paint_organs(rng, tissues)
    torso.paint_vessels(tissues)
    _paint_discs(canvas, layout, tissues, sacralised=transitional == "sacralised_l5")
    for vertebra in vertebrae:
        _paint_vertebra(
            canvas,
            vertebra,
            ids.get(vertebra.name, 0),
            tissues,
            sacralised=transitional == "sacralised_l5" and vertebra.name == "L5",
        )
    if sacrum is not None:
        _paint_sacrum(canvas, sacrum, ids.get("S1", 0), tissues, lumbarised=transitional == "lumbarised_s1")
        torso.paint_ilia(sacrum, cortical)
    for vertebra in vertebrae:
        if vertebra.has_ribs:
            _paint_ribs(canvas, vertebra, torso)
    metal_levels: tuple[str, ...] = ()
    if metal == "pedicle_screws":
        _paint_screws(canvas, next(lv for lv in layout if lv.name == metal_level))
        metal_levels = (metal_level,)
    elif metal == "hip_prosthesis":
        _paint_hip(canvas, torso)
    if noise_sd > 0:
        canvas.hu += rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(noise_sd)
    np.clip(canvas.hu, -1024.0, METAL_HU, out=canvas.hu)

    affine = canvas.affine
    acquisition = AcquisitionInfo(kind="nifti", warnings=())
    volume = Volume(array=canvas.hu, affine=affine, acquisition=acquisition)
    ribbed = [lv.name for lv in vertebrae if lv.has_ribs]
    truth = PhantomTruth(
        seed=seed,
        levels=tuple(_level_truth(lv, ids.get(lv.name, 0), canvas) for lv in layout),
        tissues=tissues,
        contrast="contrast" if contrast else "native",
        noise_sd=float(noise_sd),
        label_convention=convention,
        rib_pairs=_rib_pair_count(names, transitional),
        lowest_rib_level=ribbed[-1] if ribbed else None,
        transitional=transitional,
        transitional_description=_TRANSITIONAL_DESCRIPTIONS.get(transitional) if transitional else None,
        metal=metal,
        metal_levels=metal_levels,
        lordosis_mm=float(lordosis_mm),
    )
    return Phantom(
        volume=volume,
        labels=LabelMap(array=canvas.labels, affine=affine, convention=convention),
        body_labels=LabelMap(array=canvas.body_labels, affine=affine, convention=convention),
        tissues=LabelMap(array=canvas.tissue, affine=affine, convention="phantom_tissue"),
        truth=truth,
    )


# ----------------------------------------------------------------------------------------- layout


def _level_names(levels: Sequence[str], transitional: Transitional | None) -> list[str]:
    names = list(levels)
    if not names:
        raise ValueError("levels must name at least one vertebra")
    ranks = [LEVELS.index(n) if n in LEVELS else -1 for n in names]
    if -1 in ranks:
        raise ValueError(f"unknown level in {names}; levels are {', '.join(LEVELS)}")
    if any(n in ("T13", "L6") for n in names):
        raise ValueError("T13 and L6 come only from transitional='13_rib_pairs' or 'lumbarised_s1'")
    expected = [n for n in LEVELS if n not in ("T13", "L6")]
    start = expected.index(names[0])
    if names != expected[start : start + len(names)]:
        raise ValueError(f"levels must be contiguous, cranial to caudal, got {names}")
    for name in names:
        if name != "S1":
            level_dimensions(name)
    if transitional == "13_rib_pairs" and "T12" in names and "L1" in names:
        names.insert(names.index("L1"), "T13")
    elif transitional == "lumbarised_s1" and "L5" in names and "S1" in names:
        names.insert(names.index("S1"), "L6")
    elif transitional not in (None, "11_rib_pairs", "sacralised_l5", "13_rib_pairs", "lumbarised_s1"):
        raise ValueError(f"unknown transitional anatomy {transitional!r}")
    return names


def _rib_pair_count(names: Sequence[str], transitional: Transitional | None) -> int:
    return {"13_rib_pairs": 13, "11_rib_pairs": 11}.get(transitional or "", 12)


def _has_ribs(name: str, transitional: Transitional | None) -> bool:
    if name == "T13":
        return True
    if name == "T12" and transitional == "11_rib_pairs":
        return False
    return name.startswith("T")


def _draw_trabecular(
    rng: np.random.Generator, names: Sequence[str], given: float | Mapping[str, float] | None
) -> dict[str, float]:
    patient = float(rng.uniform(*tissue_hu_range("trabecular")))
    drawn: dict[str, float] = {}
    for name in names:
        # Trabecular attenuation falls slightly from the lower thoracic to the lower lumbar spine.
        rank = LEVELS.index(name) - LEVELS.index("L1")
        drawn[name] = float(np.clip(patient - 2.5 * rank + rng.normal(0.0, 6.0), 20.0, 400.0))
    if isinstance(given, int | float):
        return dict.fromkeys(names, float(given))
    if given is not None:
        unknown = set(given) - set(names)
        if unknown:
            raise ValueError(f"trabecular_hu names levels the phantom does not have: {sorted(unknown)}")
        drawn.update({k: float(v) for k, v in given.items()})
    return drawn


def _draw_tissues(
    rng: np.random.Generator,
    *,
    contrast: bool,
    fat_hu: float | None,
    muscle_hu: float | None,
    blood_hu: float | None,
    aorta_hu: float | None,
    disc_hu: float | None,
) -> TissueTruth:
    def draw(name: str) -> float:
        return float(rng.uniform(*tissue_hu_range(name)))

    fat_sc = draw("subcutaneous_fat") if fat_hu is None else float(fat_hu)
    fat_visc = draw("visceral_fat") if fat_hu is None else float(fat_hu) + 5.0
    muscle = draw("muscle") if muscle_hu is None else float(muscle_hu)
    blood = draw("blood_native") if blood_hu is None else float(blood_hu)
    arterial = draw("blood_arterial_contrast")
    liver, kidney, disc, csf, lung = (
        draw("liver_native"),
        draw("kidney_native"),
        draw("disc"),
        draw("csf"),
        draw("lung"),
    )
    aorta = float(aorta_hu) if aorta_hu is not None else (arterial if contrast else blood)
    return TissueTruth(
        air=AIR_HU,
        subcutaneous_fat=fat_sc,
        visceral_fat=fat_visc,
        muscle=muscle,
        aorta=aorta,
        vein=blood + (0.35 * (aorta - blood) if contrast else 0.0),
        liver=liver + (40.0 if contrast else 0.0),
        kidney=kidney + (140.0 if contrast else 0.0),
        disc=float(disc_hu) if disc_hu is not None else disc,
        csf=csf,
        lung=lung,
    )


def _layout(
    rng: np.random.Generator,
    names: Sequence[str],
    *,
    size: float,
    trab: Mapping[str, float],
    cortical: float,
    fractures: Mapping[str, tuple[FractureShape, int]],
    transitional: Transitional | None,
    lordosis_mm: float,
    spine_y: float,
) -> list[_Level]:
    """Stack the vertebral bodies from the top of the sacrum (z = 0) upwards, with a lordotic curve."""
    dims = {n: _scaled(level_dimensions(n), size * float(rng.uniform(0.97, 1.03))) for n in names}
    heights: dict[str, tuple[float, float, float, float, int, FractureShape | None]] = {}
    kind: FractureShape | None
    for name in names:
        h = dims[name].height
        if name in fractures:
            kind, grade = fractures[name]
            lo, hi = fracture_loss_range(grade)
            margin = 0.15 * (hi - lo)
            loss = float(rng.uniform(lo + margin, hi - margin))
            ha, hm, hp = {
                "wedge": (h * (1 - loss), h * (1 - loss / 2), h),
                "biconcave": (h, h * (1 - loss), h),
                "crush": (h * (1 - loss), h * (1 - loss), h * (1 - loss)),
            }[kind]
            heights[name] = (ha, hm, hp, loss, grade, kind)
        else:
            heights[name] = (h, h - 1.0, h, 0.0, 0, None)
    mobile = [n for n in names if n != "S1"]

    # Lordosis: a smooth anterior bulge of the lumbar spine, largest near L3 (z ~ 110 mm above the sacrum).
    def y_of(z: float) -> float:
        return spine_y + lordosis_mm * math.exp(-(((z - 110.0) / 95.0) ** 2))

    def tilt_of(z: float) -> float:
        dz = 1.0
        return math.atan((y_of(z + dz) - y_of(z - dz)) / (2 * dz))

    out: list[_Level] = []
    cursor = 0.0
    for i, name in enumerate(reversed(mobile)):
        d = dims[name]
        disc_below = d.disc_below if not (transitional == "sacralised_l5" and name == "L5") else 1.0
        if i == 0 and "S1" not in names:
            disc_below = d.disc_below
        ha, hm, hp, loss, grade, kind = heights[name]
        hmax = max(ha, hp)
        zc = cursor + disc_below + hmax / 2
        cursor = zc + hmax / 2
        above = mobile[mobile.index(name) - 1] if mobile.index(name) > 0 else None
        disc_above = dims[above].disc_below if above else _above_disc(name)
        out.append(
            _Level(
                name=name,
                dims=d,
                center=(0.0, y_of(zc), zc),
                tilt=tilt_of(zc),
                h_ant=ha,
                h_mid=hm,
                h_post=hp,
                fracture=kind,
                grade=grade,
                loss=loss,
                trabecular_hu=trab[name],
                cortical_hu=cortical,
                has_ribs=_has_ribs(name, transitional),
                disc_below=disc_below,
                disc_above=disc_above,
            )
        )
    out.reverse()
    if "S1" in names:
        d = dims["S1"]
        if transitional == "lumbarised_s1":
            d = _scaled(d, 0.85)
        tilt = math.radians(float(rng.uniform(30.0, 40.0)))
        y_top = y_of(0.0) - 4.0
        w_axis = (math.sin(tilt), math.cos(tilt))
        center = (0.0, y_top - w_axis[0] * d.height / 2, -w_axis[1] * d.height / 2)
        out.append(
            _Level(
                name="S1",
                dims=d,
                center=center,
                tilt=tilt,
                h_ant=d.height,
                h_mid=d.height - 1.0,
                h_post=d.height,
                fracture=None,
                grade=0,
                loss=0.0,
                trabecular_hu=trab["S1"],
                cortical_hu=cortical,
                has_ribs=False,
                disc_below=0.0,
                disc_above=out[-1].disc_below if out else 10.0,
            )
        )
    return out


def _above_disc(name: str) -> float:
    rank = LEVELS.index(name)
    above = LEVELS[rank - 1] if rank > 0 else name
    try:
        return level_dimensions(above).disc_below
    except KeyError:
        return level_dimensions(name).disc_below


def _scaled(d: LevelDimensions, f: float) -> LevelDimensions:
    return replace(
        d,
        width=d.width * f,
        depth=d.depth * f,
        height=d.height * f,
        disc_below=d.disc_below * f,
        canal_width=d.canal_width * f,
        canal_depth=d.canal_depth * f,
        spinous_length=d.spinous_length * f,
        transverse_length=d.transverse_length * f,
        rib_length=d.rib_length * f,
    )


def _level_truth(level: _Level, label: int, canvas: Canvas) -> LevelTruth:
    half = max(level.h_ant, level.h_post) / 2 * math.cos(level.tilt) + level.dims.depth / 2 * abs(math.sin(level.tilt))
    z0, z1 = level.center[2] - half, level.center[2] + half
    lo = canvas.origin[2]
    hi = lo + (canvas.shape[2] - 1) * canvas.spacing[2]
    in_field: InField = "full" if (z0 >= lo and z1 <= hi) else ("absent" if (z1 < lo or z0 > hi) else "partial")
    return LevelTruth(
        name=level.name,
        label=label,
        trabecular_hu=level.trabecular_hu,
        cortical_hu=level.cortical_hu,
        center_mm=level.center,
        width_mm=level.dims.width,
        depth_mm=level.dims.depth,
        height_anterior_mm=level.h_ant,
        height_middle_mm=level.h_mid,
        height_posterior_mm=level.h_post,
        genant_grade=level.grade,
        fracture=level.fracture,
        height_loss_fraction=level.loss,
        has_ribs=level.has_ribs,
        is_sacrum=level.name == "S1",
        tilt_deg=math.degrees(level.tilt),
        in_field=in_field,
        z_range_mm=(z0, z1),
    )


# ------------------------------------------------------------------------------------ local frames


@dataclass(frozen=True)
class _Frame:
    """A vertebra's frame: u along x (Right), v anterior and w along the body axis, tilted about x."""

    center: tuple[float, float, float]
    tilt: float

    def region_and_coords(self, canvas: Canvas, radius: tuple[float, float, float]) -> tuple[Region, F32, F32, F32]:
        c = self.center
        reach_y = abs(radius[1] * math.cos(self.tilt)) + abs(radius[2] * math.sin(self.tilt))
        reach_z = abs(radius[1] * math.sin(self.tilt)) + abs(radius[2] * math.cos(self.tilt))
        region = canvas.region(
            (c[0] - radius[0], c[1] - reach_y, c[2] - reach_z), (c[0] + radius[0], c[1] + reach_y, c[2] + reach_z)
        )
        u, v, w = self.local(region.x, region.y, region.z)
        return region, u, v, w

    def local(self, x: F32, y: F32, z: F32) -> tuple[F32, F32, F32]:
        cos, sin = np.float32(math.cos(self.tilt)), np.float32(math.sin(self.tilt))
        dy, dz = y - np.float32(self.center[1]), z - np.float32(self.center[2])
        return x - np.float32(self.center[0]), dy * cos - dz * sin, dy * sin + dz * cos

    def world(self, u: float, v: float, w: float) -> tuple[float, float, float]:
        cos, sin = math.cos(self.tilt), math.sin(self.tilt)
        return (self.center[0] + u, self.center[1] + v * cos + w * sin, self.center[2] - v * sin + w * cos)


def _body_sdf(u: F32, v: F32, w: F32, level: _Level) -> F32:
    a, b = level.dims.width / 2, level.dims.depth / 2
    d_xy = np.minimum(ellipse_sdf(u, v, a, b), v + np.float32(0.8 * b))
    t = np.clip((v + 0.8 * b) / (1.8 * b), 0.0, 1.0)
    h_lin = level.h_post + (level.h_ant - level.h_post) * t
    h_lin0 = level.h_post + (level.h_ant - level.h_post) * (0.8 / 1.8)
    concavity = h_lin0 - level.h_mid
    r2 = np.clip((u / a) ** 2 + (v / b) ** 2, 0.0, 1.0)
    h = h_lin - concavity * (1.0 - r2)
    return np.minimum(d_xy, h / 2 - np.abs(w)).astype(np.float32)


# ------------------------------------------------------------------------------------ the spine


def _paint_discs(canvas: Canvas, layout: Sequence[_Level], tissues: TissueTruth, *, sacralised: bool) -> None:
    for upper, lower in itertools.pairwise(layout):
        cu, cl = np.array(upper.center), np.array(lower.center)
        axis = cu - cl
        length = float(np.linalg.norm(axis))
        center = tuple(float(x) for x in (cu + cl) / 2)
        tilt = math.atan2(axis[1], axis[2])
        frame = _Frame(center, tilt)  # type: ignore[arg-type]
        a = (upper.dims.width + lower.dims.width) / 4
        b = (upper.dims.depth + lower.dims.depth) / 4
        region, u, v, w = frame.region_and_coords(canvas, (a + 2, b + 2, length / 2 + 2))
        d = np.minimum(np.minimum(ellipse_sdf(u, v, a, b), v + np.float32(0.8 * b)), length / 2 - np.abs(w))
        fused = sacralised and upper.name == "L5" and lower.name == "S1"
        if fused:
            canvas.paint(region, d, lower.trabecular_hu, Tissue.SACRUM)
        else:
            canvas.paint(region, d, tissues.disc, Tissue.DISC)
    top = layout[0]
    if top.name != "S1":
        # The disc above the top vertebra (cut by the field or not).
        frame = _Frame(top.center, top.tilt)
        a, b = top.dims.width / 2, top.dims.depth / 2
        region, u, v, w = frame.region_and_coords(canvas, (a + 2, b + 2, top.h_post / 2 + top.disc_above + 2))
        d_xy = np.minimum(ellipse_sdf(u, v, a, b), v + np.float32(0.8 * b))
        d = np.minimum(d_xy, np.minimum(w - np.float32(0.0), top.h_post / 2 + top.disc_above - w))
        canvas.paint(region, d, tissues.disc, Tissue.DISC)


def _paint_vertebra(canvas: Canvas, level: _Level, label: int, tissues: TissueTruth, *, sacralised: bool) -> None:
    d = level.dims
    a, b = d.width / 2, d.depth / 2
    frame = _Frame(level.center, level.tilt)
    thoracic = level.name.startswith("T")
    tl = d.transverse_length * (1.8 if sacralised else 1.0)
    reach = (a + tl + 10, b + d.canal_depth + d.spinous_length + 12, max(level.h_post, level.h_ant) / 2 + 26)
    region, u, v, w = frame.region_and_coords(canvas, reach)

    vp0 = -0.8 * b  # posterior wall of the body
    canal_v = vp0 - d.canal_depth / 2 - 0.5
    hh = max(level.h_post, level.h_ant) / 2
    canal = np.minimum(
        ellipse_sdf(u, v - np.float32(canal_v), d.canal_width / 2, d.canal_depth / 2),
        hh + (level.disc_below + level.disc_above) / 2 + 1.0 - np.abs(w),
    )
    canvas.paint(region, canal, tissues.csf, Tissue.SPINAL_CANAL)

    pr = 4.5 if thoracic else 5.5
    px = d.canal_width / 2 + pr * 0.8
    wp = 0.15 * level.h_post
    v_back = vp0 - d.canal_depth * 0.9
    parts = []
    for side in (-1.0, 1.0):
        x = side * px
        parts.append(segment_sdf(u, v, w, (x, vp0 + 2.0, wp), (x, v_back, wp), pr))  # pedicle
        for dw in (-0.25 * level.h_post, 0.2 * level.h_post):  # lamina (a plate: two rods)
            parts.append(segment_sdf(u, v, w, (x, v_back, wp + dw), (0.0, v_back - 6.0, wp + dw - 2.0), 3.5))
        back = 0.5 if thoracic else 0.1
        tip = (side * (px + tl), v_back + 2.0 - back * tl, wp)
        parts.append(segment_sdf(u, v, w, (x, v_back + 2.0, wp), tip, 4.5 if sacralised else 4.0))  # transverse
        parts.append(
            segment_sdf(
                u,
                v,
                w,
                (x * 1.05, v_back - 1.0, -0.55 * level.h_post),
                (x * 1.05, v_back - 1.0, 0.6 * level.h_post),
                4.0,
            )
        )  # facets
    v_sp = v_back - 5.0
    if thoracic:
        parts.append(
            segment_sdf(u, v, w, (0.0, v_sp, wp), (0.0, v_sp - d.spinous_length, wp - 0.6 * d.spinous_length), 4.5)
        )
    else:
        parts.append(
            box_sdf(
                u,
                v - np.float32(v_sp - d.spinous_length / 2),
                w - np.float32(wp - 2.0),
                (3.5, d.spinous_length / 2, 0.3 * level.h_post),
                rounding=2.5,
            )
        )
    posterior = np.maximum.reduce(np.broadcast_arrays(*parts))
    canvas.paint(region, posterior, 0.8 * level.cortical_hu, Tissue.POSTERIOR_ELEMENTS, label=label)
    canvas.paint(region, posterior - _SHELL_MM, level.trabecular_hu + 60.0, Tissue.POSTERIOR_ELEMENTS, label=label)

    body = _body_sdf(u, v, w, level)
    canvas.paint(region, body, level.cortical_hu, Tissue.CORTICAL_BONE, label=label, body_label=label)
    canvas.paint(region, body - _SHELL_MM, level.trabecular_hu, Tissue.TRABECULAR_BONE, label=label, body_label=label)
    vein = segment_sdf(u, v, w, (0.0, vp0 - 1.0, 0.0), (0.0, -0.35 * b, 0.0), 1.8)
    canvas.paint(region, np.minimum(vein, body - 0.5), tissues.vein, Tissue.VEIN)


def _paint_sacrum(canvas: Canvas, s1: _Level, label: int, tissues: TissueTruth, *, lumbarised: bool) -> None:
    """The sacrum: five fused segments curving posteriorly then anteriorly, the alae and the median crest."""
    d = s1.dims
    segments: list[tuple[_Frame, float, float, float]] = []  # frame, half width, half depth, half height
    frame = _Frame(s1.center, s1.tilt)
    width, depth, height = d.width / 2, d.depth / 2, d.height / 2
    for k in range(5):
        segments.append((frame, width, depth, height))
        next_h = height * 0.85
        step = frame.world(0.0, 0.0, -(height + next_h))
        frame = _Frame(step, frame.tilt - math.radians(12.0))
        width, depth, height = width * 0.78, depth * 0.8, next_h
        if k == 3:
            break
    bone_hu = s1.trabecular_hu
    top = segments[0][0]
    region, u, v, w = top.region_and_coords(canvas, (70.0, 70.0, 110.0))
    parts = []
    for seg, a, b, h in segments:
        su, sv, sw = seg.local(region.x, region.y, region.z)
        parts.append(np.minimum(np.minimum(ellipse_sdf(su, sv, a, b), sv + np.float32(0.8 * b)), h + 1.0 - np.abs(sw)))
    wing = 0.9 if lumbarised else 1.0
    parts.append(box_sdf(u, v + np.float32(8.0), w + np.float32(4.0), (56.0 * wing, 16.0, 15.0), rounding=7.0))
    parts.append(box_sdf(u, v + np.float32(d.depth / 2 + 20.0), w + np.float32(10.0), (6.0, 8.0, 30.0), rounding=3.0))
    bone = np.maximum.reduce(np.broadcast_arrays(*parts))
    canvas.paint(region, bone, s1.cortical_hu, Tissue.SACRUM, label=label, body_label=label)
    canvas.paint(region, bone - _SHELL_MM, bone_hu, Tissue.SACRUM, label=label, body_label=label)
    canal = np.minimum(
        ellipse_sdf(u, v + np.float32(d.depth / 2 + 8.0), d.canal_width / 2.5, 5.0), 40.0 - np.abs(w + np.float32(20.0))
    )
    canvas.paint(region, canal, tissues.csf, Tissue.SPINAL_CANAL, label=0, body_label=0)
    # Body labels: only the S1 segment counts as the "body" of the sacrum.
    su, sv, sw = top.local(region.x, region.y, region.z)
    s1_body = np.minimum(
        np.minimum(ellipse_sdf(su, sv, d.width / 2, d.depth / 2), sv + np.float32(0.8 * d.depth / 2)),
        d.height / 2 - np.abs(sw),
    )
    sub = canvas.body_labels[region.slices]
    sub[(sub == label) & (np.broadcast_to(s1_body, sub.shape) < 0)] = 0


def _paint_ribs(canvas: Canvas, level: _Level, torso: _Torso) -> None:
    """A pair of ribs: from the costovertebral joint past the transverse process, along the inner body wall."""
    d = level.dims
    frame = _Frame(level.center, level.tilt)
    a_in, b_in = torso.a - torso.fat - 16.0, torso.b - torso.fat - 16.0
    for side in (-1.0, 1.0):
        start = frame.world(side * (d.width / 2 + 2.0), -0.45 * d.depth, 0.3 * level.h_post)
        tp = frame.world(
            side * (d.width / 2 + d.canal_width / 2 + d.transverse_length * 0.9),
            -0.8 * d.depth / 2 - d.canal_depth * 0.6,
            0.15 * level.h_post,
        )
        points = [start, tp]
        # Join the inner wall ellipse posterolaterally and run forwards along it, sloping down.
        phi = math.atan2(tp[1] / b_in, side * tp[0] / a_in)
        phi = min(phi, -math.radians(35.0))
        travelled = math.dist(start, tp)
        z = tp[2]
        prev = (side * a_in * math.cos(phi), b_in * math.sin(phi), z - 4.0)
        travelled += math.dist(tp, prev)
        points.append(prev)
        while travelled < d.rib_length:
            phi += math.radians(6.0)
            nxt_xy = (side * a_in * math.cos(phi), b_in * math.sin(phi))
            step = math.dist(prev[:2], nxt_xy)
            z -= 0.3 * step
            nxt = (nxt_xy[0], nxt_xy[1], z)
            points.append(nxt)
            travelled += step
            prev = nxt
        lo = tuple(min(p[i] for p in points) - 8.0 for i in range(3))
        hi = tuple(max(p[i] for p in points) + 8.0 for i in range(3))
        region = canvas.region(lo, hi)  # type: ignore[arg-type]
        if region.empty:
            continue
        sdf: F32 = np.full(tuple(s.stop - s.start for s in region.slices), -1e3, dtype=np.float32)
        for p0, p1 in itertools.pairwise(points):
            sub = canvas.region(
                tuple(min(p0[i], p1[i]) - 6.0 for i in range(3)),  # type: ignore[arg-type]
                tuple(max(p0[i], p1[i]) + 6.0 for i in range(3)),  # type: ignore[arg-type]
            )
            if sub.empty:
                continue
            local = tuple(
                slice(s.start - r.start, s.stop - r.start) for s, r in zip(sub.slices, region.slices, strict=True)
            )
            np.maximum(sdf[local], segment_sdf(sub.x, sub.y, sub.z, p0, p1, 4.5), out=sdf[local])
        canvas.paint(region, sdf, level.cortical_hu * 0.8, Tissue.RIB)
        canvas.paint(region, sdf - _SHELL_MM, level.trabecular_hu + 40.0, Tissue.RIB)


# ------------------------------------------------------------------------------------ metal


def _streaks(canvas: Canvas, centers: Sequence[tuple[float, float]], z_range: tuple[float, float], amp: float) -> None:
    region = canvas.region((-1e4, -1e4, z_range[0]), (1e4, 1e4, z_range[1]))
    if region.empty:
        return
    x, y = region.x[:, :, 0], region.y[:, :, 0]
    pattern = np.zeros((x.shape[0], y.shape[1]), dtype=np.float32)
    for cx, cy in centers:
        dx, dy = x - np.float32(cx), y - np.float32(cy)
        r = np.sqrt(dx * dx + dy * dy) + np.float32(1.0)
        phi = np.arctan2(dy, dx)
        pattern += np.float32(amp) * np.cos(9 * phi) * np.exp(-r / np.float32(60.0)) * (r > 6)
    for (x0, y0), (x1, y1) in itertools.pairwise(centers):
        seg = segment_sdf(
            x[..., None], y[..., None], np.zeros((1, 1, 1), np.float32), (x0, y0, 0.0), (x1, y1, 0.0), 0.0
        )
        pattern -= np.float32(1.5 * amp) * np.exp(-(seg[..., 0] ** 2) / np.float32(2 * 4.0**2))
    canvas.hu[region.slices] += pattern[:, :, None]


def _paint_screws(canvas: Canvas, level: _Level) -> None:
    d = level.dims
    frame = _Frame(level.center, level.tilt)
    region, u, v, w = frame.region_and_coords(canvas, (d.width, d.depth + d.canal_depth + 20.0, level.h_post))
    px = d.canal_width / 2 + 4.4
    wp = 0.15 * level.h_post
    heads = []
    for side in (-1.0, 1.0):
        entry = (side * px * 1.15, -0.8 * d.depth / 2 - d.canal_depth - 6.0, wp)
        tip = (side * d.width * 0.12, 0.25 * d.depth, wp)
        canvas.paint(region, segment_sdf(u, v, w, entry, tip, 3.0), METAL_HU, Tissue.METAL)
        heads.append(frame.world(*entry))
    mid = frame.world(0.0, 0.0, wp)
    _streaks(canvas, [(h[0], h[1]) for h in heads], (mid[2] - 6.0, mid[2] + 6.0), 180.0)


def _paint_hip(canvas: Canvas, torso: _Torso) -> None:
    z0 = canvas.origin[2] + 22.0
    cx, cy = torso.a * 0.5, torso.layout[-1].center[1] + 20.0
    region = canvas.region((cx - 40, cy - 40, canvas.origin[2] - 10), (cx + 40, cy + 40, z0 + 30))
    head = 24.0 - np.sqrt((region.x - cx) ** 2 + (region.y - cy) ** 2 + (region.z - z0) ** 2)
    stem = segment_sdf(region.x, region.y, region.z, (cx, cy, z0), (cx + 25.0, cy - 5.0, z0 - 60.0), 7.0)
    canvas.paint(region, np.maximum(head, stem), METAL_HU, Tissue.METAL)
    _streaks(canvas, [(cx, cy), (-cx, cy)], (canvas.origin[2], z0 + 24.0), 220.0)


# ------------------------------------------------------------------------------------ the torso


class _Torso:
    """The body outline, soft tissues and vessels, following the spine's lordotic curve."""

    def __init__(self, *, a: float, b: float, fat: float, layout: Sequence[_Level], canvas: Canvas) -> None:
        self.a, self.b, self.fat, self.layout, self.canvas = a, b, fat, layout, canvas
        self.full = canvas.full()
        zs = np.array([lv.center[2] for lv in layout])
        ys = np.array([lv.center[1] for lv in layout])
        ws = np.array([lv.dims.width for lv in layout])
        ds = np.array([lv.dims.depth for lv in layout])
        order = np.argsort(zs)
        z = self.full.z[0, 0, :]
        self.spine_y = np.interp(z, zs[order], ys[order]).astype(np.float32)[None, None, :]
        self.spine_w = np.interp(z, zs[order], ws[order]).astype(np.float32)[None, None, :]
        self.spine_d = np.interp(z, zs[order], ds[order]).astype(np.float32)[None, None, :]

    def _z(self, name: str) -> float:
        """World z of a level's centre; for a level the phantom lacks, extrapolated from the nearest one it
        has (about 28 mm per vertebra and disc), so organs sit at their levels in cropped phantoms too."""
        present = next((lv.center[2] for lv in self.layout if lv.name == name), None)
        if present is not None:
            return present
        rank = LEVELS.index(name)
        nearest = min(self.layout, key=lambda lv: abs(LEVELS.index(lv.name) - rank))
        return nearest.center[2] + (LEVELS.index(nearest.name) - rank) * 28.0

    def paint_table(self) -> None:
        c = self.canvas
        x, y = self.full.x, self.full.y
        curve = y - np.float32(-self.b - 6.0) - np.float32(0.0006) * x * x
        d = np.minimum(np.minimum(curve, -curve + np.float32(5.0)), np.float32(200.0) - np.abs(x))
        c.paint(self.full, d, 150.0, Tissue.TABLE)

    def paint_body(self, t: TissueTruth) -> None:
        c, x, y = self.canvas, self.full.x, self.full.y
        c.paint(self.full, ellipse_sdf(x, y, self.a, self.b), t.subcutaneous_fat, Tissue.SUBCUTANEOUS_FAT)
        wall = ellipse_sdf(x, y, self.a - self.fat, self.b - self.fat)
        c.paint(self.full, wall, t.muscle, Tissue.MUSCLE)
        c.paint(self.full, self.cavity_sdf(self.full), t.visceral_fat, Tissue.VISCERAL_FAT)
        c.paint(self.full, np.minimum(self._back_muscles(self.full), wall), t.muscle, Tissue.MUSCLE)

    def _back_muscles(self, region: Region) -> F32:
        """The paraspinal muscle block behind and beside the spine (erector spinae, quadratus lumborum)."""
        zs = region.slices[2]
        cy = self.spine_y[:, :, zs] - self.spine_d[:, :, zs] / 2 - np.float32(26.0)
        return ellipse_sdf(region.x, region.y - cy, np.float32(0.45 * self.a), np.float32(38.0))

    def cavity_sdf(self, region: Region) -> F32:
        inner = ellipse_sdf(region.x, region.y, self.a - self.fat - 13.0, self.b - self.fat - 13.0)
        return np.minimum(inner, -self._back_muscles(region))

    def _ellipsoid(self, center: tuple[float, float, float], radii: tuple[float, float, float]) -> tuple[Region, F32]:
        lo = tuple(c - r - 3.0 for c, r in zip(center, radii, strict=True))
        hi = tuple(c + r + 3.0 for c, r in zip(center, radii, strict=True))
        region = self.canvas.region(lo, hi)  # type: ignore[arg-type]
        r = np.sqrt(
            ((region.x - center[0]) / radii[0]) ** 2
            + ((region.y - center[1]) / radii[1]) ** 2
            + ((region.z - center[2]) / radii[2]) ** 2
        )
        return region, ((1.0 - r) * min(radii)).astype(np.float32)

    def paint_organs(self, rng: np.random.Generator, t: TissueTruth) -> None:
        c = self.canvas
        z_t11 = self._z("T11")
        z_l2 = self._z("L2")
        a, b = self.a, self.b

        def paint_in_cavity(
            center: tuple[float, float, float], radii: tuple[float, float, float], hu: float, tissue: Tissue
        ) -> None:
            region, sdf = self._ellipsoid(center, radii)
            if not region.empty:
                c.paint(region, np.minimum(sdf, self.cavity_sdf(region)), hu, tissue)

        spine_y0 = float(self.spine_y.mean())
        paint_in_cavity((0.38 * a, 0.1 * b, z_t11 + 10.0), (0.5 * a, 0.62 * b, 75.0), t.liver, Tissue.LIVER)
        paint_in_cavity((-0.55 * a, spine_y0 + 10.0, z_t11), (28.0, 45.0, 45.0), t.liver - 8.0, Tissue.LIVER)
        for side, dz in ((1.0, -12.0), (-1.0, 0.0)):
            region, kidney = self._ellipsoid((side * 62.0, spine_y0 - 4.0, z_l2 + 20.0 + dz), (28.0, 24.0, 52.0))
            c.paint(region, kidney, t.kidney, Tissue.KIDNEY)
        z = self.full.z
        z_lo, z_hi = float(z.min()), float(z.max())
        for _ in range(16):
            r = float(rng.uniform(12.0, 24.0))
            ex, ey = float(rng.uniform(-0.6, 0.6) * a), float(rng.uniform(0.15, 0.7) * b)
            ez = float(rng.uniform(z_lo, max(z_lo, min(z_hi, z_l2 + 40.0))))
            hu = float(rng.uniform(*tissue_hu_range("bowel")))
            if ez > z_l2 + 40.0:  # bowel lies below the upper abdomen, not in the chest
                continue
            paint_in_cavity((ex, ey, ez), (r, r * 0.8, r * 1.4), hu, Tissue.BOWEL)
            if rng.random() < 0.4:
                paint_in_cavity((ex, ey + r * 0.3, ez), (r * 0.45, r * 0.35, r * 0.6), -1000.0, Tissue.BOWEL_GAS)
        z_t12 = self._z("T13") if any(lv.name == "T13" for lv in self.layout) else self._z("T12")
        # The lung bases reach down to about T12 posteriorly.
        for side in (-1.0, 1.0):
            region, lung = self._ellipsoid((side * 0.45 * a, spine_y0 + 5.0, z_t12 + 150.0), (0.4 * a, 0.5 * b, 150.0))
            if region.empty:
                continue
            ribcage = ellipse_sdf(region.x, region.y, self.a - self.fat - 14.0, self.b - self.fat - 14.0)
            c.paint(region, np.minimum(lung, ribcage), t.lung, Tissue.LUNG)
        z_top_psoas = self._z("T12")
        region = c.region((-100.0, -200.0, c.origin[2]), (100.0, 200.0, z_top_psoas))
        if region.empty:
            return
        x, y, z = region.x, region.y, region.z
        zs = region.slices[2]
        spine_y, spine_w = self.spine_y[:, :, zs], self.spine_w[:, :, zs]
        grow = np.clip((np.float32(z_top_psoas) - z) / np.float32(120.0), 0.0, 1.0)
        radius = np.float32(4.0) + np.float32(20.0) * grow
        for side in (-1.0, 1.0):
            cx = side * (spine_w / 2 + radius * 0.9)
            psoas = radius - np.sqrt((x - cx) ** 2 + (y - spine_y) ** 2)
            c.paint(region, psoas.astype(np.float32), t.muscle, Tissue.MUSCLE)

    def paint_vessels(self, t: TissueTruth) -> None:
        c = self.canvas
        y_mid = float(self.spine_y.mean())
        region = c.region((-120.0, y_mid - 10.0, c.origin[2]), (120.0, y_mid + 70.0, 1e4))
        if region.empty:
            return
        x, y, z = region.x, region.y, region.z
        zs = region.slices[2]
        spine_y, spine_w, spine_d = self.spine_y[:, :, zs], self.spine_w[:, :, zs], self.spine_d[:, :, zs]
        front = spine_y + spine_d / 2
        z_bif = self._z("L4")
        below = np.clip((np.float32(z_bif) - z) * np.float32(0.45), 0.0, None)
        split = z < z_bif
        ax = np.float32(-0.25) * spine_w - np.float32(4.0)
        ay = front + np.float32(13.0)
        trunk = np.float32(11.0) - np.sqrt((x - ax) ** 2 + (y - ay) ** 2)
        left = np.float32(7.0) - np.sqrt((x - (ax - np.float32(4.0) - below)) ** 2 + (y - ay) ** 2)
        right = np.float32(7.0) - np.sqrt((x - (ax + np.float32(14.0) + below)) ** 2 + (y - ay) ** 2)
        aorta = np.where(split, np.maximum(left, right), trunk).astype(np.float32)
        c.paint(region, aorta, t.aorta, Tissue.AORTA)
        vx = np.float32(0.3) * spine_w + np.float32(10.0)
        vy = front + np.float32(9.0)
        ivc = ellipse_sdf(x - vx, y - vy, np.float32(13.0), np.float32(9.0))
        c.paint(region, ivc, t.vein, Tissue.VEIN)

    def paint_ilia(self, s1: _Level, cortical: float) -> None:
        c = self.canvas
        z_crest = s1.center[2] + 45.0
        for side in (-1.0, 1.0):
            cx, cy = side * 0.42 * self.a, s1.center[1] - 5.0
            region = c.region((cx - 70, cy - 70, c.origin[2]), (cx + 70, cy + 70, z_crest))
            if region.empty:
                continue
            ang = side * math.radians(50.0)
            dx, dy = region.x - np.float32(cx), region.y - np.float32(cy)
            pu = dx * np.float32(math.cos(ang)) + dy * np.float32(math.sin(ang))
            pv = -dx * np.float32(math.sin(ang)) + dy * np.float32(math.cos(ang))
            half_h = (z_crest - c.origin[2]) / 2 + 10.0
            d = box_sdf(pu, pv, region.z - np.float32(z_crest - half_h), (5.0, 45.0, half_h), rounding=4.0)
            crest = np.float32(z_crest) - np.float32(0.012) * pv * pv - region.z  # the curved iliac crest
            d = np.minimum(d, crest)
            c.paint(region, d, cortical * 0.85, Tissue.ILIUM)
            c.paint(region, d - _SHELL_MM, s1.trabecular_hu + 20.0, Tissue.ILIUM)


__all__ = ["DEFAULT_LEVELS", "make_phantom"]
