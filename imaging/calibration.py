"""Phantomless calibration of trabecular HU to volumetric BMD (mg/cm3 hydroxyapatite equivalent).

Model (internal-reference QCT; Mueller et al., Eur J Radiol 2011;79(3):375-381,
doi:10.1016/j.ejrad.2010.02.008; Boden et al., J Digit Imaging 1989;2(1):31-38, doi:10.1007/BF03168013)::

    vBMD = slope * HU + intercept                      (mg/cm3 HA)

fitted by ordinary least squares over the reference tissues found in the scan, each paired with its
HA-equivalent density (nominal 120 kVp CT number / `hu_per_mg_cm3_ha`; all constants and their sources
in `imaging/data/calibration_references.json`). The tissues (air outside the body, subcutaneous and
visceral fat, paraspinal muscle, aortic blood) are found automatically on the axial slices through the
measured vertebral bodies, with the standard HU windows of each tissue.

Acceptance (same file): fewer than `min_references` tissues, a reference whose residual exceeds
`refuse_residual_mg_cm3`, or a slope outside `slope_ratio_range` times the nominal one -> status
"refused" (no vBMD is reported); a residual beyond `warn_residual_mg_cm3` -> "warning". On a
contrast-enhanced scan aortic blood is not a reference (iodine raises it) and the trabecular HU are biased
upward (about +10-30 HU in the portal venous phase: Pompe et al., Eur Radiol 2015;25(11):3312-3318,
doi:10.1007/s00330-015-3652-9; Kaesmacher et al. 2017, doi:10.1097/RCT.0000000000000518): the result is
flagged, never silently corrected. The nominal densities hold at 120 kVp: other tube voltages are
flagged too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal, cast

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.measure import regionprops

from imaging.types import AcrCategory, Calibration, CalibrationReference, Volume

Tissue = Literal["air", "subcutaneous_fat", "visceral_fat", "muscle", "blood"]
TISSUES: tuple[Tissue, ...] = ("air", "subcutaneous_fat", "visceral_fat", "muscle", "blood")
METHOD = "phantomless internal-reference linear calibration (air, fat, muscle, blood) v1"

_MAX_SLICES = 6
_WORK_PIXEL_MM = 1.2
# the abdominal aorta divides at about L4 (common iliac arteries below): no blood reference there
_BELOW_AORTIC_BIFURCATION = frozenset({"L4", "L5", "L6", "S1"})
_BLOOD_SLICE_TOLERANCE_HU = 25.0


@dataclass(frozen=True)
class ReferenceSpec:
    """A reference tissue: nominal unenhanced 120 kVp HU, HA-equivalent density and its HU window."""

    tissue: Tissue
    nominal_hu: float
    equivalent_density_mg_cm3: float
    window_hu: tuple[float, float]


@dataclass(frozen=True)
class Acceptance:
    min_references: int
    min_voxels: int
    warn_residual_mg_cm3: float
    refuse_residual_mg_cm3: float
    slope_ratio_range: tuple[float, float]


@dataclass(frozen=True)
class CalibrationTable:
    """The constants of `imaging/data/calibration_references.json`."""

    hu_per_mg_cm3_ha: float
    references: dict[Tissue, ReferenceSpec]
    acceptance: Acceptance

    @property
    def nominal_slope(self) -> float:
        return 1.0 / self.hu_per_mg_cm3_ha


@cache
def calibration_table() -> CalibrationTable:
    """Reference tissues and acceptance tolerances, read once from the package data."""
    data = json.loads(resources.files("imaging").joinpath("data/calibration_references.json").read_text())
    refs: dict[Tissue, ReferenceSpec] = {}
    for name, spec in data["references"].items():
        tissue = cast(Tissue, name)
        lo, hi = spec["window_hu"]
        refs[tissue] = ReferenceSpec(
            tissue=tissue,
            nominal_hu=float(spec["nominal_hu"]),
            equivalent_density_mg_cm3=float(spec["equivalent_density_mg_cm3"]),
            window_hu=(float(lo), float(hi)),
        )
    acc = data["acceptance"]
    return CalibrationTable(
        hu_per_mg_cm3_ha=float(data["hu_per_mg_cm3_ha"]["value"]),
        references=refs,
        acceptance=Acceptance(
            min_references=int(acc["min_references"]),
            min_voxels=int(acc["min_voxels"]),
            warn_residual_mg_cm3=float(acc["warn_residual_mg_cm3"]),
            refuse_residual_mg_cm3=float(acc["refuse_residual_mg_cm3"]),
            slope_ratio_range=(float(acc["slope_ratio_range"][0]), float(acc["slope_ratio_range"][1])),
        ),
    )


@dataclass(frozen=True)
class SpineSlice:
    """Where the vertebral body lies on one axial slice (volume indices; axis 0 right, axis 1 anterior)."""

    slice_index: int
    center_x: float
    anterior_y: float
    posterior_y: float
    level: str | None = None


@dataclass(frozen=True)
class TissueSample:
    """A reference tissue measured in the scan: median HU of its voxels, and where they were (for QA)."""

    tissue: Tissue
    hu: float
    n_voxels: int
    voxels: npt.NDArray[np.int64]  # (n, 3) volume indices (a subsample, for drawing)


def _disk(radius_px: int) -> npt.NDArray[np.bool_]:
    r = max(1, radius_px)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    out: npt.NDArray[np.bool_] = xx**2 + yy**2 <= r**2
    return out


def _in_window(img: npt.NDArray[np.floating], window: tuple[float, float]) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = (img >= window[0]) & (img <= window[1])
    return out


def _body_outline(img: npt.NDArray[np.floating], spacing_xy: tuple[float, float]) -> npt.NDArray[np.bool_]:
    """The patient's cross-section on one slice: > -500 HU, opened (drops the table), largest part, filled."""
    radius = round(2.0 / min(spacing_xy))
    tissue = ndimage.binary_opening(img > -500.0, structure=_disk(radius))
    labelled, n = ndimage.label(tissue)
    if n == 0:
        return tissue
    sizes = np.bincount(labelled.ravel())[1:]
    out: npt.NDArray[np.bool_] = ndimage.binary_fill_holes(labelled == int(np.argmax(sizes)) + 1)
    return out


def _erode_px(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = ndimage.binary_erosion(mask, structure=np.ones((3, 3), dtype=bool))
    return out


def _aorta(
    img: npt.NDArray[np.floating], spine: SpineSlice, spacing_xy: tuple[float, float], window: tuple[float, float]
) -> npt.NDArray[np.bool_]:
    """Core of the aorta on one slice: a homogeneous 12-35 mm blob anterior-left of the vertebral body; its
    core is the disc around the deepest point (distance-transform peak, radius >= 5 mm) nearest the expected
    place (15 mm left of the midline, 15 mm in front of the body), so that a blob merged with a bowel loop
    or a vein still yields a core inside one structure."""
    sx, sy = spacing_xy
    x0 = max(0, int(spine.center_x - 45.0 / sx))
    x1 = min(img.shape[0], int(spine.center_x + 20.0 / sx) + 1)
    y0 = max(0, int(spine.anterior_y - 10.0 / sy))
    y1 = min(img.shape[1], int(spine.anterior_y + 50.0 / sy) + 1)
    out = np.zeros(img.shape, dtype=bool)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return out
    sub = img[x0:x1, y0:y1]
    candidates = ndimage.binary_opening(_in_window(sub, window), structure=_disk(round(4.5 / min(sx, sy))))
    labelled, _ = ndimage.label(candidates)
    expected = np.array([(spine.center_x - 15.0 / sx) - x0, (spine.anterior_y + 15.0 / sy) - y0])
    best: tuple[float, npt.NDArray[np.bool_]] | None = None
    for region in regionprops(labelled):
        diameter = 2.0 * np.sqrt(region.area * sx * sy / np.pi)
        if not 12.0 <= diameter <= 35.0 or region.solidity < 0.8:
            continue
        if region.centroid[1] + y0 < spine.anterior_y and abs(region.centroid[0] + x0 - spine.center_x) * sx < 20.0:
            continue  # the vertebral body itself
        blob = labelled == region.label
        q1, q3 = np.percentile(sub[blob], [25.0, 75.0])
        if q3 - q1 > 60.0:  # blood is homogeneous; bone, bowel content and mixed blobs are not
            continue
        depth = ndimage.distance_transform_edt(blob, sampling=(sx, sy))
        # each lobe of a merged blob has its own deepest point: take the one nearest the expected place
        peaks = peak_local_max(depth, min_distance=max(1, round(5.0 / min(sx, sy))), threshold_abs=5.0)
        for peak in peaks:
            radius = float(depth[peak[0], peak[1]])
            distance_mm = float(np.linalg.norm((peak - expected) * np.array([sx, sy])))
            score = -distance_mm + 0.5 * radius
            if best is None or score > best[0]:
                ii, jj = np.ogrid[: blob.shape[0], : blob.shape[1]]
                disc = ((ii - peak[0]) * sx) ** 2 + ((jj - peak[1]) * sy) ** 2 <= max(2.0, radius - 3.0) ** 2
                best = (score, blob & disc & (depth > 2.0))
    if best is None:
        return out
    out[x0:x1, y0:y1] = best[1]
    return out


def _pick_slices(spine: Sequence[SpineSlice]) -> list[SpineSlice]:
    if len(spine) <= _MAX_SLICES:
        return list(spine)
    picks = np.linspace(0, len(spine) - 1, _MAX_SLICES).round().astype(int)
    return [spine[int(i)] for i in picks]


def sample_reference_tissues(volume: Volume, spine: Sequence[SpineSlice]) -> dict[Tissue, TissueSample]:
    """Measure every reference tissue that can be found on the axial slices through the vertebral bodies."""
    table = calibration_table()
    # fine in-plane grids are read every f-th voxel (about 1.2-2.4 mm): tissues are large, the HU the same
    f = max(1, int(np.ceil(_WORK_PIXEL_MM / min(volume.spacing[:2]))))
    sx, sy = volume.spacing[0] * f, volume.spacing[1] * f
    pooled: dict[Tissue, list[npt.NDArray[np.int64]]] = {tissue: [] for tissue in TISSUES}
    for full in _pick_slices(spine):
        k = full.slice_index
        s = SpineSlice(
            slice_index=k,
            center_x=full.center_x / f,
            anterior_y=full.anterior_y / f,
            posterior_y=full.posterior_y / f,
            level=full.level,
        )
        img = np.asarray(volume.array[::f, ::f, k], dtype=np.float32)
        outline = _body_outline(img, (sx, sy))
        if not outline.any():
            continue
        inside = ndimage.distance_transform_edt(outline, sampling=(sx, sy))
        outside = ndimage.distance_transform_edt(~outline, sampling=(sx, sy))
        xs = (np.arange(img.shape[0])[:, None] - s.center_x) * sx  # mm, + to the right
        ys = (np.arange(img.shape[1])[None, :]) * sy  # mm, + anterior
        masks: dict[Tissue, npt.NDArray[np.bool_]] = {}
        masks["air"] = (outside > 10.0) & _in_window(img, table.references["air"].window_hu)
        fat = _erode_px(_in_window(img, table.references["subcutaneous_fat"].window_hu) & outline)
        masks["subcutaneous_fat"] = fat & (inside > 3.0) & (inside < 30.0)
        masks["visceral_fat"] = fat & (inside > 40.0) & (ys > s.anterior_y * sy)
        lateral = np.abs(xs)
        behind = s.posterior_y * sy - ys
        paraspinal = (lateral >= 12.0) & (lateral <= 45.0) & (behind >= 5.0) & (behind <= 60.0) & (inside > 5.0)
        masks["muscle"] = _erode_px(_in_window(img, table.references["muscle"].window_hu) & paraspinal)
        if s.level not in _BELOW_AORTIC_BIFURCATION:
            masks["blood"] = _aorta(img, s, (sx, sy), table.references["blood"].window_hu)
        for tissue, mask in masks.items():
            ij = np.argwhere(mask) * f
            if ij.size:
                pooled[tissue].append(np.column_stack([ij, np.full(len(ij), k)]))
    pooled["blood"] = _consistent_slices(volume, pooled["blood"])
    samples: dict[Tissue, TissueSample] = {}
    for tissue, parts in pooled.items():
        if not parts:
            continue
        voxels = np.concatenate(parts)
        if len(voxels) < table.acceptance.min_voxels:
            continue
        hu = np.asarray(volume.array[voxels[:, 0], voxels[:, 1], voxels[:, 2]], dtype=np.float64)
        step = max(1, len(voxels) // 4000)
        samples[tissue] = TissueSample(
            tissue=tissue, hu=float(np.median(hu)), n_voxels=len(voxels), voxels=voxels[::step]
        )
    return samples


def _consistent_slices(volume: Volume, parts: list[npt.NDArray[np.int64]]) -> list[npt.NDArray[np.int64]]:
    """The aorta found on each slice, without the slices whose blob is off the tube the others form (more
    than 15 mm from their median centre) or whose median HU is far from the others' (a wrong blob)."""
    if len(parts) < 3:
        return _agreeing(volume, parts)
    spacing = np.asarray(volume.spacing[:2])
    centres = np.array([p[:, :2].mean(axis=0) * spacing for p in parts])
    typical_centre = np.median(centres, axis=0)
    parts = [p for p, c in zip(parts, centres, strict=True) if np.linalg.norm(c - typical_centre) <= 15.0]
    return _agreeing(volume, parts)


def _agreeing(volume: Volume, parts: list[npt.NDArray[np.int64]]) -> list[npt.NDArray[np.int64]]:
    if len(parts) < 2:
        return parts
    hu = [np.asarray(volume.array[p[:, 0], p[:, 1], p[:, 2]], dtype=np.float64) for p in parts]
    medians = np.array([float(np.median(v)) for v in hu])
    if len(parts) == 2 and abs(medians[0] - medians[1]) > _BLOOD_SLICE_TOLERANCE_HU:
        return [max(parts, key=len)]  # no majority: trust the larger core
    typical = float(np.median(medians))
    return [p for p, m in zip(parts, medians, strict=True) if abs(m - typical) <= _BLOOD_SLICE_TOLERANCE_HU]


def fit_calibration(
    samples: dict[Tissue, TissueSample], *, exclude: Sequence[Tissue] = (), notes: Sequence[str] = ()
) -> Calibration:
    """Least-squares fit of HA-equivalent density on HU over the samples (see the module docstring).

    `exclude` names tissues not to use (e.g. blood on a contrast-enhanced scan); `notes` are reasons that
    make an otherwise good fit a "warning" (e.g. a tube voltage other than 120 kVp).
    """
    table = calibration_table()
    acc = table.acceptance
    used = [samples[t] for t in TISSUES if t in samples and t not in exclude]
    refs_hu = np.array([s.hu for s in used], dtype=np.float64)
    refs_rho = np.array([table.references[s.tissue].equivalent_density_mg_cm3 for s in used], dtype=np.float64)
    reasons: list[str] = []
    if len(used) < 2:
        found = ", ".join(s.tissue for s in used) or "none"
        return Calibration(
            method=METHOD,
            slope=0.0,
            intercept=0.0,
            r2=0.0,
            residual_sd_mg_cm3=0.0,
            references=[_reference(s, table, 0.0) for s in used],
            status="refused",
            reason=f"too few reference tissues found ({found}); at least {acc.min_references} are needed",
        )
    slope, intercept = np.polyfit(refs_hu, refs_rho, 1)
    fitted = slope * refs_hu + intercept
    residuals = refs_rho - fitted
    ss_tot = float(((refs_rho - refs_rho.mean()) ** 2).sum())
    r2 = 1.0 - float((residuals**2).sum()) / ss_tot if ss_tot > 0 else 0.0
    dof = len(used) - 2
    residual_sd = float(np.sqrt((residuals**2).sum() / dof)) if dof > 0 else 0.0
    status: Literal["ok", "warning", "refused"] = "ok"
    if len(used) < acc.min_references:
        status = "refused"
        reasons.append(
            f"only {len(used)} reference tissues found ({', '.join(s.tissue for s in used)}); "
            f"at least {acc.min_references} are needed to check that they agree"
        )
    worst = int(np.argmax(np.abs(residuals)))
    worst_text = f"{used[worst].tissue} residual {residuals[worst]:+.1f} mg/cm3 (measured {used[worst].hu:.0f} HU)"
    if abs(residuals[worst]) > acc.refuse_residual_mg_cm3:
        status = "refused"
        reasons.append(f"reference tissues disagree: {worst_text} beyond {acc.refuse_residual_mg_cm3:g}")
    elif abs(residuals[worst]) > acc.warn_residual_mg_cm3:
        status = "warning" if status == "ok" else status
        reasons.append(f"reference tissues disagree: {worst_text} beyond {acc.warn_residual_mg_cm3:g}")
    ratio = slope / table.nominal_slope
    lo, hi = acc.slope_ratio_range
    if not lo <= ratio <= hi:
        status = "refused"
        reasons.append(f"fitted slope {slope:.3f} is {ratio:.2f} times the nominal one (accepted {lo:g}-{hi:g})")
    if notes:
        status = "warning" if status == "ok" else status
        reasons.extend(notes)
    return Calibration(
        method=METHOD,
        slope=float(slope),
        intercept=float(intercept),
        r2=float(r2),
        residual_sd_mg_cm3=residual_sd,
        references=[_reference(s, table, float(r)) for s, r in zip(used, residuals, strict=True)],
        status=status,
        reason="; ".join(reasons) or None,
    )


def _reference(sample: TissueSample, table: CalibrationTable, residual: float) -> CalibrationReference:
    return CalibrationReference(
        tissue=sample.tissue,
        hu=sample.hu,
        n_voxels=sample.n_voxels,
        reference_density_mg_cm3=table.references[sample.tissue].equivalent_density_mg_cm3,
        residual_mg_cm3=residual,
    )


def hu_to_vbmd(calibration: Calibration | None, hu: float | None) -> float | None:
    """vBMD (mg/cm3 HA) of a trabecular HU; None when there is no HU or the calibration was refused."""
    if calibration is None or hu is None or calibration.status == "refused":
        return None
    return float(calibration.slope * hu + calibration.intercept)


@cache
def _acr_table() -> tuple[tuple[str, float | None, bool], ...]:
    data = json.loads(resources.files("imaging").joinpath("data/acr_qct.json").read_text())
    return tuple(
        (
            str(c["category"]),
            None if c["upper_mg_cm3"] is None else float(c["upper_mg_cm3"]),
            bool(c["upper_inclusive"]),
        )
        for c in data["categories"]
    )


def acr_category(vbmd_mg_cm3: float) -> AcrCategory:
    """ACR QCT category of a mean L1-L2 trabecular vBMD (thresholds in `imaging/data/acr_qct.json`)."""
    for category, upper, inclusive in _acr_table():
        if upper is None or vbmd_mg_cm3 < upper or (inclusive and vbmd_mg_cm3 == upper):
            return cast(AcrCategory, category)
    raise ValueError(f"no ACR category for {vbmd_mg_cm3}")  # unreachable: the last category is open-ended
