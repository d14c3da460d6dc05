"""Quality control of the bone measurements, per level and per scan.

Codes, what they mean, whether they exclude a level from the averages, their thresholds and sources are
data: `imaging/data/qc_codes.json` (read once by `qc_codes()` / `qc_thresholds()`). A finding is a
code plus a message; it lands in the level's `qc` list and in `BoneFeatures.warnings` as "CODE: message".
Excluded levels are never averaged into the summary.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal, cast

from imaging.measure.vertebra import LevelResult
from imaging.types import ContrastPhase

Action = Literal["flag", "exclude"]
Scope = Literal["level", "scan"]


@dataclass(frozen=True)
class QcCode:
    """One quality-control code of `imaging/data/qc_codes.json`."""

    code: str
    scope: Scope
    action: Action
    description: str
    source: str


@dataclass(frozen=True)
class QcThresholds:
    """The thresholds of `imaging/data/qc_codes.json`."""

    min_roi_ml: float
    min_trabecular_hu: float
    max_trabecular_hu: float
    metal_hu: float
    metal_min_voxels: int
    exclude_from_genant_grade: int
    flag_confidence: float
    exclude_confidence: float
    max_outlier_fraction: float
    native_max_hu: float
    contrast_min_hu: float
    nominal_kvp: float


@dataclass(frozen=True)
class Finding:
    """A QC finding: a known code and a message naming the values."""

    code: str
    message: str

    @property
    def excludes(self) -> bool:
        """True when the code keeps the level out of every average."""
        known = qc_codes().get(self.code)
        return known is not None and known.action == "exclude"

    @property
    def text(self) -> str:
        return f"{self.code}: {self.message}"


def _data() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(resources.files("imaging").joinpath("data/qc_codes.json").read_text())
    return loaded


@cache
def qc_codes() -> dict[str, QcCode]:
    """Every QC code by name."""
    codes = cast(dict[str, dict[str, str]], _data()["codes"])
    return {
        name: QcCode(
            code=name,
            scope=cast(Scope, spec["scope"]),
            action=cast(Action, spec["action"]),
            description=spec["description"],
            source=spec["source"],
        )
        for name, spec in codes.items()
    }


@cache
def qc_thresholds() -> QcThresholds:
    """The QC thresholds."""
    raw = cast(dict[str, dict[str, float]], _data()["thresholds"])
    values = {name: spec["value"] for name, spec in raw.items()}
    return QcThresholds(
        min_roi_ml=float(values["min_roi_ml"]),
        min_trabecular_hu=float(values["min_trabecular_hu"]),
        max_trabecular_hu=float(values["max_trabecular_hu"]),
        metal_hu=float(values["metal_hu"]),
        metal_min_voxels=int(values["metal_min_voxels"]),
        exclude_from_genant_grade=int(values["exclude_from_genant_grade"]),
        flag_confidence=float(values["flag_confidence"]),
        exclude_confidence=float(values["exclude_confidence"]),
        max_outlier_fraction=float(values["max_outlier_fraction"]),
        native_max_hu=float(values["native_max_hu"]),
        contrast_min_hu=float(values["contrast_min_hu"]),
        nominal_kvp=float(values["nominal_kvp"]),
    )


def level_findings(result: LevelResult) -> list[Finding]:
    """QC findings of one measured level, in a stable order (exclusions first)."""
    t = qc_thresholds()
    out: list[Finding] = []
    level = result.info.level
    if result.body is None:
        out.append(Finding("NO_BODY_FOUND", f"{level}: no vertebral body could be cut out of its mask"))
    if result.edges_touched:
        out.append(
            Finding("CUT_BY_SCAN_EDGE", f"{level}: the body touches the {'/'.join(result.edges_touched)} scan edge")
        )
    if result.body is not None and (result.roi_volume_ml or 0.0) < t.min_roi_ml:
        out.append(
            Finding(
                "ROI_TOO_SMALL",
                f"{level}: trabecular ROI {result.roi_volume_ml or 0.0:.2f} mL < {t.min_roi_ml:g} mL",
            )
        )
    if result.stats is not None and not t.min_trabecular_hu <= result.stats.median <= t.max_trabecular_hu:
        out.append(
            Finding(
                "HU_IMPLAUSIBLE",
                f"{level}: ROI median {result.stats.median:.0f} HU outside "
                f"[{t.min_trabecular_hu:g}, {t.max_trabecular_hu:g}] HU",
            )
        )
    if result.metal_voxels >= t.metal_min_voxels:
        out.append(
            Finding("METAL", f"{level}: {result.metal_voxels} voxels above {t.metal_hu:g} HU in or near the vertebra")
        )
    if result.genant is not None:
        g = result.genant
        if g.grade >= t.exclude_from_genant_grade:
            out.append(
                Finding(
                    "VERTEBRAL_FRACTURE",
                    f"{level}: Genant grade {g.grade}, height loss {g.height_loss:.0%} ({g.basis})",
                )
            )
        elif g.grade >= 1:
            out.append(
                Finding("MILD_DEFORMITY", f"{level}: Genant grade 1, height loss {g.height_loss:.0%} ({g.basis})")
            )
    if result.height_note is not None:
        out.append(Finding("NO_GENANT_GRADE", f"{level}: {result.height_note}"))
    confidence = result.info.confidence
    if confidence < t.exclude_confidence:
        out.append(
            Finding("UNRELIABLE_LEVEL", f"{level}: segmentation confidence {confidence:.2f} < {t.exclude_confidence:g}")
        )
    elif confidence < t.flag_confidence:
        out.append(
            Finding("LOW_CONFIDENCE", f"{level}: segmentation confidence {confidence:.2f} < {t.flag_confidence:g}")
        )
    if result.stats is not None:
        if result.stats.high_outlier_fraction > t.max_outlier_fraction:
            out.append(
                Finding(
                    "BONE_ISLAND",
                    f"{level}: {result.stats.high_outlier_fraction:.1%} of ROI voxels above "
                    f"{result.stats.upper_fence:.0f} HU left out",
                )
            )
        if result.stats.low_outlier_fraction > t.max_outlier_fraction:
            out.append(
                Finding(
                    "VEIN_CONTAMINATION",
                    f"{level}: {result.stats.low_outlier_fraction:.1%} of ROI voxels below "
                    f"{result.stats.lower_fence:.0f} HU left out",
                )
            )
    if result.body is not None and result.body.method == "no_canal_seen":
        out.append(Finding("BODY_SPLIT_UNCERTAIN", f"{level}: vertebral canal not seen on the mid-sagittal plane"))
    seen = {f.code for f in out}
    for flag in result.info.flags:
        if flag not in seen:
            known = qc_codes().get(flag)
            out.append(Finding(flag, f"{level}: {known.description if known else 'flagged by the segmentation'}"))
            seen.add(flag)
    out.sort(key=lambda f: not f.excludes)
    return out


def contrast_from_tags(agent: str | None) -> ContrastPhase:
    """Contrast phase from the DICOM ContrastBolusAgent (0018,0010): absent -> unknown; 'none'-like -> native."""
    if agent is None:
        return "unknown"
    text = agent.strip().lower()
    if text in {"", "none", "no", "nil", "n/a", "na", "0", "without", "no contrast"}:
        return "native"
    return "contrast"


def contrast_from_image(aorta_hu: float | None) -> ContrastPhase:
    """Contrast phase from the median HU of aortic blood (thresholds in `qc_codes.json`)."""
    if aorta_hu is None:
        return "unknown"
    t = qc_thresholds()
    if aorta_hu >= t.contrast_min_hu:
        return "contrast"
    if aorta_hu <= t.native_max_hu:
        return "native"
    return "unknown"


def combine_contrast(
    tags: ContrastPhase, image: ContrastPhase, aorta_hu: float | None, agent: str | None
) -> tuple[ContrastPhase, list[Finding]]:
    """The scan's contrast phase from tags and image (enhanced when either says so) and the findings."""
    findings: list[Finding] = []
    aorta = f"aorta {aorta_hu:.0f} HU" if aorta_hu is not None else "aorta not found"
    tag = f"ContrastBolusAgent {agent!r}" if agent is not None else "no contrast tag"
    if "contrast" in (tags, image):
        phase: ContrastPhase = "contrast"
        findings.append(
            Finding(
                "CONTRAST_ENHANCED",
                f"contrast-enhanced scan ({aorta}; {tag}): trabecular HU biased upward, not corrected",
            )
        )
    elif "native" in (tags, image):
        phase = "native"
    else:
        phase = "unknown"
        findings.append(Finding("CONTRAST_PHASE_UNKNOWN", f"contrast phase unknown ({aorta}; {tag})"))
    if {tags, image} == {"contrast", "native"}:
        findings.append(Finding("CONTRAST_TAG_IMAGE_DISAGREE", f"tags say {tags}, image says {image} ({aorta}; {tag})"))
    return phase, findings


def kvp_findings(kvp: float | None) -> list[Finding]:
    """KVP_UNKNOWN / KVP_NOT_120 findings of the tube voltage."""
    nominal = qc_thresholds().nominal_kvp
    if kvp is None:
        return [Finding("KVP_UNKNOWN", f"tube voltage not in the header; {nominal:g} kVp assumed, unchecked")]
    if abs(kvp - nominal) > 0.5:
        return [
            Finding(
                "KVP_NOT_120",
                f"{kvp:g} kVp (not {nominal:g}): bone HU and the calibration constants depend on the tube voltage",
            )
        ]
    return []


def texts(findings: Iterable[Finding]) -> list[str]:
    """'CODE: message' strings."""
    return [f.text for f in findings]
