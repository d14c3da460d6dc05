from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from imaging.conventions import LEVELS, convention_names, label_to_level, level_rank, level_to_label
from imaging.errors import ImageInputError


def test_conventions_cover_the_documented_ids() -> None:
    assert convention_names() == ("totalsegmentator", "verse")
    ts = label_to_level("totalsegmentator")
    assert (ts[26], ts[27], ts[31], ts[32], ts[50]) == ("S1", "L5", "L1", "T12", "C1")
    verse = label_to_level("verse")
    assert (verse[1], verse[8], verse[19], verse[20], verse[25], verse[28]) == ("C1", "T1", "T12", "L1", "L6", "T13")
    assert level_to_label("verse")["L1"] == 20


def test_levels_run_cranial_to_caudal() -> None:
    assert level_rank("C1") == 0
    assert level_rank("T12") < level_rank("T13") < level_rank("L1") < level_rank("L6") < level_rank("S1")
    assert len(LEVELS) == 7 + 13 + 6 + 1


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ImageInputError, match="unknown label convention 'nnunet'"):
        label_to_level("nnunet")
    with pytest.raises(ImageInputError, match="unknown vertebra level"):
        level_rank("L7")


def test_totalsegmentator_ids_order_the_real_label_map_caudal_to_cranial(shared_data: Callable[[str], Path]) -> None:
    """In the shared example, the vertebra ids present lie in the expected superior-inferior order."""
    seg = nib.as_closest_canonical(nib.load(shared_data("ct/totalseg/example_seg.nii.gz")))
    data = np.asarray(seg.dataobj)
    ts = label_to_level("totalsegmentator")
    present = [label for label in ts if np.any(data == label)]
    assert {ts[label] for label in present} >= {"T12", "L1", "L2"}
    # canonical RAS: higher z index is more superior, so a more cranial level has a higher mean z
    mean_z = {ts[label]: float(np.nonzero(data == label)[2].mean()) for label in present}
    ordered = sorted(mean_z, key=lambda level: -mean_z[level])
    assert ordered == sorted(ordered, key=level_rank)
