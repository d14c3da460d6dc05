"""The `totalsegmentator` backend: runs only where TotalSegmentator and its weights are installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from imaging.errors import BackendUnavailableError
from imaging.segmentation.totalseg import TotalSegmentatorBackend, missing_weights, weights_dir
from imaging.types import Volume

INSTALLED = importlib.util.find_spec("totalsegmentator") is not None


def _skip_unless_installed() -> None:
    if not INSTALLED:
        pytest.skip("TotalSegmentator not installed: pip install 'osteorisk[totalsegmentator]'")
    if missing_weights(fast=True, vertebrae_only=True):
        pytest.skip(
            f"TotalSegmentator weights not installed in {weights_dir()}: totalseg_download_weights -t total_fast"
        )


def test_weights_are_looked_for_where_totalsegmentator_keeps_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path))
    assert weights_dir() == tmp_path
    assert missing_weights(fast=True) == ("Dataset297_TotalSegmentator_total_3mm_1559subj",)
    fold = tmp_path / "Dataset297_TotalSegmentator_total_3mm_1559subj" / "trainer__plans__3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    assert missing_weights(fast=True) != ()  # a folder without a checkpoint is not weights
    (fold / "checkpoint_final.pth").write_bytes(b"\0")
    assert missing_weights(fast=True) == ()
    assert len(missing_weights(fast=False)) == 5
    assert missing_weights(fast=True, vertebrae_only=True) == ("Dataset298_TotalSegmentator_total_6mm_1559subj",)


def test_absent_package_or_weights_give_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "none"))
    backend = TotalSegmentatorBackend()
    assert not backend.is_available()
    volume = Volume(array=np.zeros((8, 8, 8), dtype=np.float32), affine=np.eye(4))
    expected = "weights .* are not installed .*nothing is downloaded" if INSTALLED else r"osteorisk\[totalsegmentator\]"
    with pytest.raises(BackendUnavailableError, match=expected):
        backend.segment(volume)


@pytest.mark.slow
def test_totalsegmentator_matches_the_reference_labels(shared_data: Callable[[str], Path]) -> None:
    _skip_unless_installed()
    ct = nib.as_closest_canonical(nib.load(shared_data("ct/totalseg/example_ct_sm.nii.gz")))
    ref = np.asarray(nib.as_closest_canonical(nib.load(shared_data("ct/totalseg/example_seg.nii.gz"))).dataobj)
    volume = Volume(array=np.asarray(ct.dataobj, dtype=np.float32), affine=ct.affine)
    result = TotalSegmentatorBackend(fast=True).segment(volume)
    assert {"T12", "L1", "L2"} <= set(result.level_names)
    for level, label in (("T12", 32), ("L1", 31), ("L2", 30)):
        mask, truth = result.mask(level), ref == label
        assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.7, level
