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
