"""`osteorisk features`: JSON that validates against BoneFeatures, the readable table, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from imaging.types import BoneFeatures


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli.main", "features", *args], capture_output=True, text=True, timeout=120
    )


def test_json_output_validates_and_writes_the_qa_picture(shared_data: Callable[[str], Path], tmp_path: Path) -> None:
    png = tmp_path / "qa.png"
    proc = _cli(
        str(shared_data("ct/totalseg/example_ct_sm.nii.gz")),
        "--labels",
        str(shared_data("ct/totalseg/example_seg.nii.gz")),
        "--qa-png",
        str(png),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    features = BoneFeatures.model_validate_json(proc.stdout)
    assert features.segmentation.backend == "labels" and features.summary.l1_hu is not None
    assert '"schema": "osteorisk.bone_features/1"' in proc.stdout
    assert png.stat().st_size > 50_000


def test_table_output_lists_levels_and_summary(shared_data: Callable[[str], Path]) -> None:
    proc = _cli(
        str(shared_data("ct/totalseg/example_ct_sm.nii.gz")),
        "--labels",
        str(shared_data("ct/totalseg/example_seg.nii.gz")),
        "--label-convention",
        "totalsegmentator",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[2].split()[:3] == ["level", "HU", "med"]
    assert any(line.startswith("L1 ") for line in lines)
    assert any(line.startswith("L1 HU ") and "ACR category" in line for line in lines)
    assert "[excluded]" in proc.stdout and "warnings:" in proc.stdout


def test_bad_input_is_one_line_and_exit_1(shared_data: Callable[[str], Path], tmp_path: Path) -> None:
    not_ct = tmp_path / "notes.txt"
    not_ct.write_text("not a CT")
    missing = tmp_path / "nope.nii.gz"
    wrong_labels = shared_data("ct/totalseg/example_seg_dicom.nii.gz")  # another scan's geometry
    cases = [
        (str(not_ct),),
        (str(missing),),
        (str(shared_data("ct/totalseg/example_ct_sm.nii.gz")), "--labels", str(wrong_labels)),
        (str(shared_data("ct/totalseg/example_ct_sm.nii.gz")), "--backend", "labels"),
    ]
    for args in cases:
        proc = _cli(*args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("osteorisk features: error: ")
    usage = _cli(str(not_ct), "--label-convention", "nnunet")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
