from __future__ import annotations

import subprocess
import sys

SUBCOMMANDS = ("features", "clinical", "assess", "train", "predict", "evaluate", "synth", "cohort", "serve")


def test_help_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "server.cli.main", "--help"], capture_output=True, text=True, check=True
    )
    for name in SUBCOMMANDS:
        assert f"    {name} " in out.stdout


def test_usage_error_exits_2_with_one_message() -> None:
    proc = subprocess.run([sys.executable, "-m", "server.cli.main", "no-such-command"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_monai_backend_options_are_checked_before_any_work(tmp_path: object) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "server.cli.main", "features", "missing.nii.gz", "--backend", "monai"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "--backend monai needs --monai-model DIR" in proc.stderr
