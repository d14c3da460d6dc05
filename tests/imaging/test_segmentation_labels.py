"""The `labels` backend on the real TotalSegmentator label map and on small label maps built here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from imaging.errors import GeometryError, ImageInputError, ProcessingCancelledError
from imaging.segmentation.base import LevelFlag
from imaging.segmentation.registry import get_backend
from imaging.types import LabelMap, Volume


def _canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.as_closest_canonical(nib.load(path))
    return np.asarray(image.dataobj), image.affine


@pytest.fixture(scope="module")
def example(shared_data: Callable[[str], Path]) -> tuple[Volume, LabelMap]:
    ct, ct_affine = _canonical(shared_data("ct/totalseg/example_ct_sm.nii.gz"))
    seg, seg_affine = _canonical(shared_data("ct/totalseg/example_seg.nii.gz"))
    return Volume(array=ct.astype(np.float32), affine=ct_affine), LabelMap(array=seg, affine=seg_affine)


def test_real_label_map_gives_its_levels_with_edge_flags(example: tuple[Volume, LabelMap]) -> None:
    volume, label_map = example
    result = get_backend("labels", label_map=label_map).segment(volume)
    assert result.level_names == ("T11", "T12", "L1", "L2")
    assert [info.label for info in result.levels] == [33, 32, 31, 30]
    t11, t12, l1, l2 = result.levels
    # T11 is a 70-voxel sliver at the top slice; T12 and L2 reach the first/last slice; L1 is whole.
    assert set(t11.flags) == {LevelFlag.CUT_BY_SCAN_EDGE, LevelFlag.SMALL_MASK} and t11.confidence < 0.5
    assert LevelFlag.CUT_BY_SCAN_EDGE in t12.flags and LevelFlag.CUT_BY_SCAN_EDGE in l2.flags
    assert l1.flags == () and l1.confidence == 1.0
    assert not result.body_only and result.info.backend == "labels"
    # organs and ribs are dropped; the vertebra masks are the reference's exactly
    assert set(np.unique(result.labels.array).tolist()) == {0, 30, 31, 32, 33}
    np.testing.assert_array_equal(result.mask("L1"), label_map.array == 31)
    assert result.labels.same_geometry(volume)


def _stack(ids: list[int], shape: tuple[int, int, int] = (20, 20, 40)) -> np.ndarray:
    """Vertebra-like blocks stacked along the superior axis, the first id most cranial."""
    array = np.zeros(shape, dtype=np.uint8)
    height = shape[2] // len(ids)
    for i, label in enumerate(ids):
        top = shape[2] - i * height
        array[5:15, 5:15, top - height + 2 : top - 1] = label
    return array


def test_verse_labels_are_read_with_the_verse_convention() -> None:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    volume = Volume(array=np.zeros((20, 20, 40), dtype=np.float32), affine=affine)
    verse = LabelMap(array=_stack([19, 20, 21, 28]), affine=affine, convention="verse")
    # 28 is T13 in VerSe: it sits caudal here, so the stacking check warns.
    result = get_backend("labels", label_map=verse).segment(volume)
    assert result.level_names == ("T12", "T13", "L1", "L2")
    assert result.labels.convention == "verse"
    assert any("not stacked cranial to caudal" in w for w in result.warnings)

    in_order = LabelMap(array=_stack([19, 20, 21]), affine=affine, convention="verse")
    result = get_backend("labels", label_map=in_order).segment(volume)
    assert result.level_names == ("T12", "L1", "L2") and result.warnings == ()
    assert all(info.confidence == 1.0 for info in result.levels)


def test_verse_ids_read_as_totalsegmentator_are_refused_with_a_hint() -> None:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    volume = Volume(array=np.zeros((20, 20, 40), dtype=np.float32), affine=affine)
    wrong = LabelMap(array=_stack([19, 20, 21]), affine=affine)
    expected = r"no vertebra id of the 'totalsegmentator'.*ids present: 19, 20, 21.*verse"
    with pytest.raises(ImageInputError, match=expected):
        get_backend("labels", label_map=wrong).segment(volume)


def test_a_label_map_without_vertebrae_is_refused() -> None:
    affine = np.eye(4)
    organs = np.zeros((10, 10, 10), dtype=np.uint8)
    organs[2:5, 2:5, 2:5] = 5  # liver
    organs[6:8, 6:8, 6:8] = 2  # kidney
    with pytest.raises(ImageInputError, match="no vertebra id") as info:
        get_backend("labels", label_map=LabelMap(array=organs, affine=affine, convention="totalsegmentator")).segment(
            Volume(array=np.zeros((10, 10, 10), dtype=np.float32), affine=affine)
        )
    assert info.value.reason == "NO_VERTEBRA_LABELS"


def test_misaligned_label_map_is_refused() -> None:
    volume = Volume(array=np.zeros((20, 20, 40), dtype=np.float32), affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    shifted = np.diag([2.0, 2.0, 2.0, 1.0])
    shifted[2, 3] = 30.0
    with pytest.raises(GeometryError, match=r"geometry .* differs from the CT's.*load_label_map"):
        get_backend("labels", label_map=LabelMap(array=_stack([31]), affine=shifted)).segment(volume)


def test_fragmented_and_interpolated_label_maps() -> None:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    volume = Volume(array=np.zeros((20, 20, 40), dtype=np.float32), affine=affine)
    array = _stack([31])
    array[5:15, 5:15, 18:21] = 0  # cut L1 in two halves
    result = get_backend("labels", label_map=LabelMap(array=array, affine=affine)).segment(volume)
    assert result.levels[0].flags == (LevelFlag.FRAGMENTED,) and result.levels[0].confidence == pytest.approx(0.8)

    blurred = _stack([31, 30]).astype(np.float32) * 0.97
    with pytest.raises(ImageInputError, match="fractional"):
        get_backend("labels", label_map=LabelMap(array=blurred, affine=affine))
    with pytest.raises(ImageInputError, match="unknown label convention"):
        get_backend("labels", label_map=LabelMap(array=_stack([31]), affine=affine, convention="nnunet"))


def test_cancelled_before_the_work() -> None:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    volume = Volume(array=np.zeros((20, 20, 40), dtype=np.float32), affine=affine)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ProcessingCancelledError):
        get_backend("labels", label_map=LabelMap(array=_stack([31]), affine=affine)).segment(volume, cancel=cancel)
