"""The synthetic CT phantom: deterministic, anatomically plausible, and its truth matches its image."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from imaging.conventions import level_to_label
from imaging.phantom import Phantom, Tissue, make_phantom

SMALL = {"shape": (128, 128), "spacing": (2.8, 2.8, 2.5)}


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom(seed=11, **SMALL)


def test_same_seed_same_phantom_other_seed_differs() -> None:
    a = make_phantom(seed=5, **SMALL)
    b = make_phantom(seed=5, **SMALL)
    c = make_phantom(seed=6, **SMALL)
    assert np.array_equal(a.volume.array, b.volume.array)
    assert a.truth == b.truth
    assert not np.array_equal(a.volume.array, c.volume.array)


def test_default_levels_labels_and_orientation(phantom: Phantom) -> None:
    truth = phantom.truth
    assert truth.level_names == ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")
    assert phantom.volume.orientation == ("R", "A", "S")
    assert phantom.volume.array.dtype == np.float32
    ids = level_to_label("totalsegmentator")
    present = set(np.unique(phantom.labels.array)) - {0}
    assert present == {ids[name] for name in truth.level_names}
    # Cranial levels sit higher (k grows cranially) and every level is fully in the field by default.
    zs = [t.center_mm[2] for t in truth.levels]
    assert zs == sorted(zs, reverse=True)
    assert all(t.in_field == "full" for t in truth.levels)
    assert truth.lowest_rib_level == "T12"
    assert [t.has_ribs for t in truth.levels] == [True, True, True] + [False] * 6


def test_vertebral_dimensions_are_plausible(phantom: Phantom) -> None:
    for t in phantom.truth.levels:
        if t.is_sacrum:
            continue
        assert 33 <= t.width_mm <= 55
        assert 26 <= t.depth_mm <= 38
        assert 19 <= t.height_posterior_mm <= 31
    # Label extents along x agree with the body widths (posterior elements make the vertebra wider).
    l3 = phantom.truth.level("L3")
    assert l3 is not None
    body = phantom.body_labels.array == l3.label
    xs = np.nonzero(body.any(axis=(1, 2)))[0]
    width = (xs.max() - xs.min() + 1) * phantom.volume.spacing[0]
    assert abs(width - l3.width_mm) < 2 * phantom.volume.spacing[0] + 1


def test_trabecular_core_has_the_true_attenuation(phantom: Phantom) -> None:
    hu = phantom.volume.array
    for t in phantom.truth.levels:
        if t.is_sacrum:
            continue
        core = (phantom.tissues.array == Tissue.TRABECULAR_BONE) & (phantom.body_labels.array == t.label)
        values = hu[ndimage.binary_erosion(core)]  # away from the partial-volume rim
        assert values.size > 50
        assert abs(float(np.median(values)) - t.trabecular_hu) < 8.0, t.name


def test_reference_tissues_match_truth(phantom: Phantom) -> None:
    hu, tissues, truth = phantom.volume.array, phantom.tissues.array, phantom.truth.tissues
    for code, expected in (
        (Tissue.SUBCUTANEOUS_FAT, truth.subcutaneous_fat),
        (Tissue.MUSCLE, truth.muscle),
        (Tissue.AORTA, truth.aorta),
    ):
        assert abs(float(np.median(hu[tissues == code])) - expected) < 6.0, code.name
    assert float(np.median(hu[tissues == Tissue.AIR])) < -950


def test_contrast_raises_the_aorta() -> None:
    native = make_phantom(seed=3, contrast=False, **SMALL).truth
    enhanced = make_phantom(seed=3, contrast=True, **SMALL).truth
    assert native.contrast == "native" and 30 <= native.tissues.aorta <= 55
    assert enhanced.contrast == "contrast" and enhanced.tissues.aorta >= 180


@pytest.mark.parametrize(("shape", "grade"), [("wedge", 1), ("biconcave", 2), ("crush", 3)])
def test_fracture_height_loss_follows_genant_grade(shape: str, grade: int) -> None:
    p = make_phantom(seed=21, fractures={"L1": (shape, grade)}, **SMALL)  # type: ignore[dict-item]
    t = p.truth.level("L1")
    assert t is not None and t.genant_grade == grade and t.fracture == shape
    lo, hi = {1: (0.20, 0.25), 2: (0.25, 0.40), 3: (0.40, 1.0)}[grade]
    assert lo <= t.height_loss_fraction <= hi
    l2 = p.truth.level("L2")
    assert l2 is not None
    expected = l2.height_posterior_mm
    smallest = min(t.height_anterior_mm, t.height_middle_mm, t.height_posterior_mm)
    reference = expected if shape == "crush" else t.height_posterior_mm
    assert smallest / reference < 1 - lo + 0.05


@pytest.mark.parametrize(
    ("transitional", "lowest_rib", "extra", "convention"),
    [
        ("13_rib_pairs", "T13", "T13", "verse"),
        ("11_rib_pairs", "T11", None, "totalsegmentator"),
        ("lumbarised_s1", "T12", "L6", "verse"),
        ("sacralised_l5", "T12", None, "totalsegmentator"),
    ],
)
def test_transitional_anatomy(transitional: str, lowest_rib: str, extra: str | None, convention: str) -> None:
    p = make_phantom(seed=8, transitional=transitional, **SMALL)  # type: ignore[arg-type]
    truth = p.truth
    assert truth.transitional == transitional and truth.transitional_description
    assert truth.lowest_rib_level == lowest_rib
    assert truth.label_convention == convention
    if extra:
        assert extra in truth.level_names
        level = truth.level(extra)
        assert level is not None and level.label in np.unique(p.labels.array)


def test_a_narrow_field_cuts_levels() -> None:
    full = make_phantom(seed=2, **SMALL).truth
    l3, t11 = full.level("L3"), full.level("T11")
    assert l3 is not None and t11 is not None
    p = make_phantom(seed=2, z_extent_mm=(l3.center_mm[2], t11.center_mm[2]), **SMALL)
    fields = {t.name: t.in_field for t in p.truth.levels}
    assert fields == {
        "T10": "absent",
        "T11": "partial",
        "T12": "full",
        "L1": "full",
        "L2": "full",
        "L3": "partial",
        "L4": "absent",
        "L5": "absent",
        "S1": "absent",
    }
    assert p.truth.level("L1") == full.level("L1")


def test_metal_is_saturated_and_recorded() -> None:
    p = make_phantom(seed=4, metal="pedicle_screws", metal_level="L3", **SMALL)
    assert p.truth.metal_levels == ("L3",)
    assert float(p.volume.array.max()) > 2500
    assert np.any(p.tissues.array == Tissue.METAL)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        make_phantom(seed=1, levels=("L1", "L3"))
    with pytest.raises(ValueError, match="not a vertebra"):
        make_phantom(seed=1, fractures={"C3": ("wedge", 1)})
    with pytest.raises(KeyError, match="Genant grade"):
        make_phantom(seed=1, fractures={"L1": ("wedge", 4)})
    with pytest.raises(ValueError, match="no id"):
        make_phantom(seed=1, transitional="13_rib_pairs", label_convention="totalsegmentator")


def test_thoracic_phantom_has_lungs_and_ribs_on_every_level() -> None:
    p = make_phantom(seed=6, levels=("T6", "T7", "T8", "T9"), **SMALL)
    assert all(t.has_ribs for t in p.truth.levels) and p.truth.lowest_rib_level == "T9"
    lung = p.tissues.array == Tissue.LUNG
    assert lung.any(axis=(0, 1)).mean() > 0.9  # lungs on (nearly) every slice
    assert np.count_nonzero(p.tissues.array == Tissue.RIB) > 500
