"""`osteorisk clinical` end to end on a real bundle file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from server.cli.main import main

WILLIA = "fhir/synthea/Willia_Runolfsdottir_074c3873-c476-40e3-8046-f67372eb5e05.json"


def test_json_output(shared_data: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clinical", str(shared_data(WILLIA)), "--index-date", "2013-06-01", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schema"] == "osteorisk.clinical/1"
    assert out["patient_id"] == "54034a85-d558-4047-b32a-ad82008f7199"
    assert out["variables"]["dxa_t_score_min"]["value"] == pytest.approx(-2.5458885935054747)


def test_table_and_default_index_date(shared_data: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clinical", str(shared_data(WILLIA)), "--patient", "54034a85-d558-4047-b32a-ad82008f7199"]) == 0
    captured = capsys.readouterr()
    assert "using today" in captured.err
    assert "dxa_t_score_min" in captured.out and "warnings:" in captured.out


def test_errors_are_one_line(
    tmp_path: Path, shared_data: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["clinical", str(bad), "--index-date", "2020-01-01"]) == 1
    assert "not JSON" in capsys.readouterr().err
    assert main(["clinical", str(shared_data(WILLIA)), "--index-date", "2020-02-30"]) == 1
    assert "not a date" in capsys.readouterr().err
    assert main(["clinical", str(shared_data(WILLIA)), "--patient", "nobody", "--index-date", "2020-01-01"]) == 1
    assert "nobody" in capsys.readouterr().err


def test_server_options_are_refused_for_a_file_and_checked(
    tmp_path: Path, shared_data: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t0ken")
    argv = ["clinical", str(shared_data(WILLIA)), "--index-date", "2020-01-01"]
    assert main([*argv, "--token-file", str(token_file), "--timeout", "5"]) == 1
    assert "--token-file, --timeout apply to a FHIR server URL" in capsys.readouterr().err
    for bad in ("0", "-1", "nan", "soon"):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--timeout", bad])
        assert exit_.value.code == 2
    assert "--timeout" in capsys.readouterr().err
