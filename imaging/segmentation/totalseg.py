"""The `totalsegmentator` backend: TotalSegmentator's 'total' model, in-process on CPU, weights installed beforehand.

TotalSegmentator (Wasserthal et al., Radiology: Artificial Intelligence 2023;5(5):e230024,
doi:10.1148/ryai.230024) is an optional extra: `pip install 'osteorisk[totalsegmentator]'`, then install
its weights once, before serving (`totalseg_download_weights -t total_fast`, or `totalseg_import_weights`
on an offline machine). This backend never downloads: it checks that the weights are present where
TotalSegmentator looks for them (`$TOTALSEG_WEIGHTS_PATH`, else `$TOTALSEG_HOME_DIR/nnunet/results`, else
`~/.totalsegmentator/nnunet/results`) and raises BackendUnavailableError naming the fix when they are not.

`fast=True` (default) runs the 3 mm model (dataset 297, about a minute on CPU for an abdomen);
`fast=False` the 1.5 mm models (datasets 291-295, much slower on CPU). `vertebrae_only=True` (default) asks
for the vertebrae T9-S1 only (`roi_subset`), which TotalSegmentator runs on a crop found by its 6 mm model
(dataset 298, installed with `total_fast`): faster on CPU. The output label ids are
TotalSegmentator's (26 S1 ... 50 C1); levels, flags and confidences follow the `labels` backend.
TotalSegmentator may send anonymous usage statistics unless `send_usage_stats` is false in its
config.json: this backend warns when it is not.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from imaging.errors import BackendUnavailableError
from imaging.segmentation.base import VertebraSegmentation, check_cancelled, check_volume
from imaging.segmentation.labels import LabelsBackend
from imaging.segmentation.mask_qc import MaskQcPolicy
from imaging.types import LabelMap, SegmentationInfo, Volume

INSTALL_HINT = "pip install 'osteorisk[totalsegmentator]'"
_DATASETS_FAST = ("Dataset297_TotalSegmentator_total_3mm_1559subj",)
_DATASET_CROP = "Dataset298_TotalSegmentator_total_6mm_1559subj"  # the 6 mm model that crops to a roi_subset
_VERTEBRAE = tuple(f"vertebrae_{level}" for level in ("T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"))
_DATASETS_FULL = (
    "Dataset291_TotalSegmentator_part1_organs_1559subj",
    "Dataset292_TotalSegmentator_part2_vertebrae_1532subj",
    "Dataset293_TotalSegmentator_part3_cardiac_1559subj",
    "Dataset294_TotalSegmentator_part4_muscles_1559subj",
    "Dataset295_TotalSegmentator_part5_ribs_1559subj",
)
# TotalSegmentator keeps global state (environment variables, a config file): one run at a time.
_RUN_LOCK = threading.Lock()


def totalsegmentator_home() -> Path:
    """TotalSegmentator's home directory (its own rule: $TOTALSEG_HOME_DIR, else ~/.totalsegmentator)."""
    if "TOTALSEG_HOME_DIR" in os.environ:
        return Path(os.environ["TOTALSEG_HOME_DIR"])
    home = Path.home()
    return (Path("/tmp") if str(home) == "/" else home) / ".totalsegmentator"  # noqa: S108 - TotalSegmentator's rule


def weights_dir() -> Path:
    """Where TotalSegmentator looks for its nnU-Net weights."""
    if "TOTALSEG_WEIGHTS_PATH" in os.environ:
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    return totalsegmentator_home() / "nnunet" / "results"


def missing_weights(*, fast: bool = True, vertebrae_only: bool = False) -> tuple[str, ...]:
    """The weight datasets the chosen model needs that are not installed (no checkpoint file found)."""
    root = weights_dir()
    needed = (_DATASETS_FAST if fast else _DATASETS_FULL) + ((_DATASET_CROP,) if vertebrae_only else ())
    return tuple(
        name for name in needed if not (root / name).is_dir() or not any((root / name).rglob("checkpoint_final.pth"))
    )


def _package_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("totalsegmentator") is not None
    except (ImportError, ValueError):
        return False


class TotalSegmentatorBackend:
    """TotalSegmentator 'total' (fast by default) on CPU; keyword-only configuration."""

    name = "totalsegmentator"

    def __init__(self, *, fast: bool = True, vertebrae_only: bool = True, qc: MaskQcPolicy | None = None) -> None:
        self.fast = fast
        self.vertebrae_only = vertebrae_only
        self.qc = qc or MaskQcPolicy()

    def is_available(self) -> bool:
        return _package_installed() and not missing_weights(fast=self.fast, vertebrae_only=self.vertebrae_only)

    def _check_available(self) -> None:
        if not _package_installed():
            raise BackendUnavailableError(f"TotalSegmentator is not installed: {INSTALL_HINT}")
        missing = missing_weights(fast=self.fast, vertebrae_only=self.vertebrae_only)
        if missing:
            task = "total_fast" if self.fast else "total"
            raise BackendUnavailableError(
                f"TotalSegmentator weights {', '.join(missing)} are not installed in {weights_dir()} (nothing is "
                f"downloaded at run time): run `totalseg_download_weights -t {task}` once before serving, or set "
                "TOTALSEG_WEIGHTS_PATH to where they are"
            )

    def segment(self, volume: Volume, *, cancel: threading.Event | None = None) -> VertebraSegmentation:
        check_volume(volume)
        self._check_available()
        check_cancelled(cancel, "TotalSegmentator")
        import nibabel as nib
        from totalsegmentator.python_api import totalsegmentator

        image = nib.Nifti1Image(np.asarray(volume.array, dtype=np.float32), np.asarray(volume.affine))
        with _RUN_LOCK:
            result = totalsegmentator(
                image,
                None,
                ml=True,
                fast=self.fast,
                task="total",
                roi_subset=list(_VERTEBRAE) if self.vertebrae_only else None,
                device="cpu",
                quiet=True,
                skip_saving=True,
            )
        canonical = nib.as_closest_canonical(result)
        label_map = LabelMap(
            array=np.asarray(canonical.dataobj).astype(np.uint8),
            affine=canonical.affine,
            convention="totalsegmentator",
        )
        check_cancelled(cancel, "reading TotalSegmentator's labels")
        labelled = LabelsBackend(label_map=label_map, qc=self.qc).segment(volume, cancel=cancel)
        warnings = list(labelled.warnings)
        if _usage_stats_enabled():
            warnings.append(
                "TotalSegmentator is configured to send anonymous usage statistics; set send_usage_stats to false "
                f"in {totalsegmentator_home() / 'config.json'} on clinical systems"
            )
        return VertebraSegmentation(
            labels=labelled.labels,
            levels=labelled.levels,
            info=SegmentationInfo(
                backend="totalsegmentator",
                label_convention="totalsegmentator",
                model=f"TotalSegmentator total{' fast (3 mm)' if self.fast else ' (1.5 mm)'} {_version()}".strip(),
                parameters={"fast": str(self.fast), "vertebrae_only": str(self.vertebrae_only), "device": "cpu"},
            ),
            body_only=False,
            warnings=tuple(warnings),
        )


def _usage_stats_enabled() -> bool:
    config = totalsegmentator_home() / "config.json"
    try:
        return bool(json.loads(config.read_text()).get("send_usage_stats", True))
    except (OSError, ValueError):
        return True


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("TotalSegmentator")
    except PackageNotFoundError:
        return ""
