"""CT in, `BoneFeatures` out: read, find the vertebrae, measure, calibrate, check, summarise, draw.

    >>> from imaging.pipeline import extract_features
    >>> features = extract_features(Path("ct_folder"), labels=Path("seg.nii.gz"), qa_png=Path("qa.png"))

Steps (the caller's `cancel` event is checked between them; `ProcessingCancelledError` when set):
1. read the CT (`imaging.io.load_ct`) unless a `Volume` is given; align a label map to it
   (`imaging.io.load_label_map`);
2. segment the vertebrae with a backend of `imaging.segmentation.registry` ("labels" when a label map is
   given, else "builtin");
3. measure each level in a box around it (`imaging.measure.vertebra`): body, trabecular ROI, HU statistics,
   heights, Genant grade, texture;
4. find the reference tissues on the mid-body slices, tell the contrast phase from the aorta and the tags,
   fit the phantomless calibration (`imaging.calibration`) and convert each level's median HU to vBMD;
5. QC (`imaging.qc`): per level and per scan; findings land in `qc` and `warnings`;
6. summary (never from an excluded level):
   - `l1_hu`: L1's trabecular median HU; None with an L1_UNAVAILABLE warning when L1 is missing or
     excluded (no silent substitution: T12 and L2 values are named in the warning);
   - `mean_hu_l1_l4`: mean of the median HU of the non-excluded levels among L1-L4 (L1_L4_INCOMPLETE
     when fewer than four);
   - `vbmd_l1_l2_mg_cm3`: mean vBMD of the non-excluded levels among L1-L2 (L1_L2_INCOMPLETE when one or
     none), `acr_category` from it (ACR-SPR-SSR QCT practice parameter; `imaging/data/acr_qct.json`);
   - `levels_used`: the levels that entered any of these;
7. the QA picture (`imaging.qa_picture`) when `qa_png` is given.

A scan on which no vertebral body could be measured at all raises `UnusableImageError`; a scan whose
levels are all excluded still returns its features (the exclusions, fracture grades included, are the
finding), with an empty summary and warnings saying why.

Thread safety: no module-level mutable state; the data tables are read once into immutable objects and
the picture is drawn on its own figure (no pyplot state), so many threads may call this at once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from imaging.calibration import (
    SpineSlice,
    Tissue,
    acr_category,
    fit_calibration,
    hu_to_vbmd,
    sample_reference_tissues,
)
from imaging.conventions import LUMBAR_L1_L4
from imaging.errors import ImageInputError, ProcessingCancelledError, UnusableImageError
from imaging.measure.vertebra import LevelResult, MeasureParams, measure_levels
from imaging.qc import (
    Finding,
    combine_contrast,
    contrast_from_image,
    contrast_from_tags,
    kvp_findings,
    level_findings,
    qc_thresholds,
    texts,
)
from imaging.segmentation.base import VertebraSegmentation
from imaging.types import (
    BoneFeatures,
    Calibration,
    FeatureSummary,
    ImageSource,
    LabelMap,
    VertebraMeasurement,
    Volume,
)

_ACR_LEVELS = ("L1", "L2")


def _check(cancel: threading.Event | None, step: str) -> None:
    if cancel is not None and cancel.is_set():
        raise ProcessingCancelledError(f"feature extraction cancelled before {step}")


def _read_inputs(
    ct: Path | str | Volume,
    labels: Path | str | LabelMap | None,
    label_convention: str,
    cancel: threading.Event | None,
) -> tuple[Volume, LabelMap | None]:
    from imaging import io as imaging_io

    if isinstance(ct, Volume):
        volume = ct
    elif isinstance(ct, str | Path):
        volume = imaging_io.load_ct(Path(ct), cancel=cancel)
    else:
        raise ImageInputError(f"ct must be a path or an imaging.types.Volume, got {type(ct).__name__}")
    _check(cancel, "reading the label map")
    if labels is None or isinstance(labels, LabelMap):
        return volume, labels
    if isinstance(labels, str | Path):
        return volume, imaging_io.load_label_map(Path(labels), reference=volume, convention=label_convention)
    raise ImageInputError(f"labels must be a path or an imaging.types.LabelMap, got {type(labels).__name__}")


def _segment(
    volume: Volume,
    label_map: LabelMap | None,
    backend: str | None,
    cancel: threading.Event | None,
    backend_options: Mapping[str, object] | None = None,
) -> tuple[VertebraSegmentation, list[str]]:
    from imaging.segmentation.registry import get_backend

    notes: list[str] = []
    name = backend or ("labels" if label_map is not None else "builtin")
    if name == "labels":
        if label_map is None:
            raise ImageInputError(
                "the labels backend needs a label map: pass labels= (CLI: --labels LABELMAP)",
                reason="LABEL_MAP_REQUIRED",
            )
        segmenter = get_backend(name, label_map=label_map)
    else:
        if label_map is not None:
            notes.append(f"a label map was given but the {name!r} backend was asked for: the label map was not used")
        segmenter = get_backend(name, **dict(backend_options or {}))
    return segmenter.segment(volume, cancel=cancel), notes


def _spine_slices(results: Sequence[LevelResult]) -> list[SpineSlice]:
    """The axial slice through each measured body's centre, with where the body lies on it."""
    slices = []
    for r in results:
        if r.body is None:
            continue
        centre = r.body.centroid_index()
        k_local = round(float(centre[2])) - int(r.body.offset[2])
        if not 0 <= k_local < r.body.body.shape[2]:
            continue
        ys = np.flatnonzero(r.body.body[:, :, k_local].any(axis=0))
        if ys.size == 0:
            continue
        slices.append(
            SpineSlice(
                slice_index=k_local + int(r.body.offset[2]),
                center_x=float(centre[0]),
                anterior_y=float(ys[-1] + r.body.offset[1]),
                posterior_y=float(ys[0] + r.body.offset[1]),
                level=r.info.level,
            )
        )
    return slices


def _measurement(result: LevelResult, findings: list[Finding], calibration: Calibration | None) -> VertebraMeasurement:
    excluding = [f for f in findings if f.excludes]
    s = result.stats
    h = result.heights
    return VertebraMeasurement(
        level=result.info.level,
        hu_mean=s.mean if s else None,
        hu_median=s.median if s else None,
        hu_sd=s.sd if s else None,
        hu_p05=s.p05 if s else None,
        hu_p25=s.p25 if s else None,
        hu_p75=s.p75 if s else None,
        hu_p95=s.p95 if s else None,
        roi_volume_ml=result.roi_volume_ml,
        vbmd_mg_cm3=hu_to_vbmd(calibration, s.median) if s else None,
        height_anterior_mm=h.anterior_mm if h else None,
        height_middle_mm=h.middle_mm if h else None,
        height_posterior_mm=h.posterior_mm if h else None,
        genant_grade=result.genant.grade if result.genant else None,
        texture=result.texture,
        confidence=result.info.confidence,
        qc=[f.code for f in findings],
        excluded=bool(excluding),
        exclusion_reason="; ".join(f.text for f in excluding) or None,
        center_mm=result.center_mm,
    )


def summarise(
    levels: Sequence[VertebraMeasurement], calibration: Calibration | None
) -> tuple[FeatureSummary, list[Finding]]:
    """The scan-level summary from non-excluded levels only (rules in the module docstring)."""
    by_name = {m.level: m for m in levels}
    usable = {m.level: m for m in levels if not m.excluded and m.hu_median is not None}
    findings: list[Finding] = []
    used: set[str] = set()

    def why(name: str) -> str:
        m = by_name.get(name)
        if m is None:
            return "not found"
        return f"excluded ({', '.join(m.qc)})" if m.excluded else "not measurable"

    l1 = usable.get("L1")
    if l1 is not None:
        used.add("L1")
    else:
        neighbours = [f"{n} {usable[n].hu_median:.0f} HU" for n in ("T12", "L2") if n in usable]
        hint = f"; adjacent levels: {', '.join(neighbours)}" if neighbours else ""
        findings.append(Finding("L1_UNAVAILABLE", f"L1 {why('L1')}: l1_hu left empty, not substituted{hint}"))

    lumbar = [usable[n] for n in LUMBAR_L1_L4 if n in usable]
    mean_l1_l4 = float(np.mean([m.hu_median for m in lumbar if m.hu_median is not None])) if lumbar else None
    used.update(m.level for m in lumbar)
    if len(lumbar) < len(LUMBAR_L1_L4):
        missing = [f"{n} {why(n)}" for n in LUMBAR_L1_L4 if n not in usable]
        basis = f"from {', '.join(m.level for m in lumbar)} only" if lumbar else "left empty"
        findings.append(Finding("L1_L4_INCOMPLETE", f"mean_hu_l1_l4 {basis}: {'; '.join(missing)}"))

    acr_levels = [usable[n] for n in _ACR_LEVELS if n in usable and usable[n].vbmd_mg_cm3 is not None]
    vbmd = float(np.mean([m.vbmd_mg_cm3 for m in acr_levels if m.vbmd_mg_cm3 is not None])) if acr_levels else None
    used.update(m.level for m in acr_levels)
    if len(acr_levels) < len(_ACR_LEVELS):
        reasons = []
        for n in _ACR_LEVELS:
            if n not in usable:
                reasons.append(f"{n} {why(n)}")
            elif usable[n].vbmd_mg_cm3 is None:
                status = calibration.status if calibration is not None else "absent"
                reasons.append(f"{n} has no vBMD (calibration {status})")
        basis = f"from {', '.join(m.level for m in acr_levels)} only" if acr_levels else "left empty"
        findings.append(
            Finding("L1_L2_INCOMPLETE", f"vbmd_l1_l2_mg_cm3 and acr_category {basis}: {'; '.join(reasons)}")
        )
    summary = FeatureSummary(
        l1_hu=l1.hu_median if l1 is not None else None,
        mean_hu_l1_l4=mean_l1_l4,
        vbmd_l1_l2_mg_cm3=vbmd,
        acr_category=acr_category(vbmd) if vbmd is not None else None,
        levels_used=[m.level for m in levels if m.level in used],
    )
    return summary, findings


def extract_features(
    ct: Path | str | Volume,
    *,
    labels: Path | str | LabelMap | None = None,
    label_convention: str = "totalsegmentator",
    backend: str | None = None,
    backend_options: Mapping[str, object] | None = None,
    qa_png: Path | str | None = None,
    cancel: threading.Event | None = None,
    params: MeasureParams | None = None,
) -> BoneFeatures:
    """Bone features of one CT series (see the module docstring for the steps and the summary rules).

    `backend_options` go to the backend (e.g. `{"model_dir": ..., "label_mapping": ...}` for "monai").
    """
    _check(cancel, "reading the CT")
    volume, label_map = _read_inputs(ct, labels, label_convention, cancel)
    _check(cancel, "segmenting the vertebrae")
    segmentation, notes = _segment(volume, label_map, backend, cancel, backend_options)
    thresholds = qc_thresholds()
    params = params or MeasureParams(metal_hu=thresholds.metal_hu)
    _check(cancel, "measuring the vertebrae")
    results = measure_levels(volume, segmentation, params=params, cancel=cancel)
    if not any(r.stats is not None for r in results):
        found = ", ".join(segmentation.level_names) or "none"
        raise UnusableImageError(
            f"no vertebral body could be measured (levels found: {found}); check the field of view and the "
            "segmentation (a QA picture needs at least one measured level)"
        )

    _check(cancel, "calibrating")
    acquisition = volume.acquisition
    samples = sample_reference_tissues(volume, _spine_slices(results))
    aorta_hu = samples["blood"].hu if "blood" in samples else None
    image_phase = contrast_from_image(aorta_hu)
    tag_phase = contrast_from_tags(acquisition.contrast_agent)
    phase, scan_findings = combine_contrast(tag_phase, image_phase, aorta_hu, acquisition.contrast_agent)
    kvp_notes = kvp_findings(acquisition.kvp)
    scan_findings.extend(kvp_notes)
    exclude: list[Tissue] = []
    cal_notes = [f.text for f in kvp_notes if f.code != "KVP_UNKNOWN"]
    if phase == "contrast":
        exclude.append("blood")
        cal_notes.append("contrast-enhanced: aortic blood not used as a reference, trabecular HU biased upward")
    calibration = fit_calibration(samples, exclude=exclude, notes=cal_notes)
    if calibration.status == "refused":
        scan_findings.append(Finding("CALIBRATION_REFUSED", calibration.reason or "calibration refused"))
    elif calibration.status == "warning":
        scan_findings.append(Finding("CALIBRATION_WARNING", calibration.reason or "calibration with a reservation"))

    _check(cancel, "quality control")
    per_level = [level_findings(r) for r in results]
    levels = [_measurement(r, f, calibration) for r, f in zip(results, per_level, strict=True)]
    summary, summary_findings = summarise(levels, calibration)

    warnings = [*acquisition.warnings, *segmentation.warnings, *notes, *texts(scan_findings)]
    for findings in per_level:
        warnings.extend(texts(findings))
    warnings.extend(texts(summary_findings))

    info = segmentation.info
    parameters = {**info.parameters, **params.provenance(), "calibration.method": calibration.method}
    features = BoneFeatures(
        source=ImageSource(
            kind=acquisition.kind,
            series_uid=acquisition.series_uid,
            study_uid=acquisition.study_uid,
            study_date=acquisition.study_date,
            modality=acquisition.modality,
            manufacturer=acquisition.manufacturer,
            kvp=acquisition.kvp,
            contrast=phase,
            contrast_agent=acquisition.contrast_agent,
            kernel=acquisition.kernel,
            slice_thickness_mm=acquisition.slice_thickness_mm,
            spacing_mm=volume.spacing,
            shape=volume.shape,
            selection_reason=acquisition.selection_reason,
        ),
        segmentation=info.model_copy(update={"parameters": parameters}),
        levels=levels,
        summary=summary,
        calibration=calibration,
        warnings=warnings,
    )
    if qa_png is not None:
        _check(cancel, "drawing the QA picture")
        from imaging.qa_picture import draw_qa_picture

        draw_qa_picture(volume, results, features, samples, Path(qa_png))
    return features
