"""Server configuration: TOML file, environment overrides, validation with the key named, data roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config import ConfigError, load_config


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "osteorisk.toml"
    path.write_text(
        'port = 6000\nmax_workers = 6\n[fhir]\nsource = "https://fhir.example/r4"\ntimeout_s = 5\n'
        '[dicomweb]\nbase_url = "https://pacs.example/dicom-web"\n'
    )
    environ = {"OSTEORISK_PORT": "7000", "OSTEORISK_METRICS_PORT": "9100", "OSTEORISK_MAX_CONCURRENT_RPCS": "64"}
    config = load_config(path, environ=environ)
    assert config.port == 7000  # the environment wins
    assert config.max_workers == 6 and config.max_concurrent_rpcs == 64
    assert config.metrics_port == 9100
    assert config.fhir is not None and config.fhir.is_url and config.fhir.timeout_s == 5
    assert config.dicomweb is not None and config.dicomweb.base_url.startswith("https://pacs")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("port = 99999\n", "port"),
        ("port = [\n", "not valid TOML"),
        ("max_workers = 8\nmax_threads = 4\n", "max_threads"),
        ("max_workers = 8\nmax_concurrent_rpcs = 4\n", "max_concurrent_rpcs"),
        ("unknown_key = 1\n", "unknown_key"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named):
        load_config(path, environ={})


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml", environ={})


def test_server_side_paths_must_lie_in_the_data_roots(tmp_path: Path) -> None:
    inside = tmp_path / "data" / "bundle.json"
    inside.parent.mkdir()
    inside.write_text("{}")
    env = {"OSTEORISK_DATA_ROOTS": str(tmp_path / "data"), "OSTEORISK_FHIR_SOURCE": str(inside)}
    assert load_config(None, environ=env).fhir is not None
    outside = {**env, "OSTEORISK_FHIR_SOURCE": str(tmp_path / "data" / ".." / "elsewhere.json")}
    with pytest.raises(ConfigError, match="outside the data roots"):
        load_config(None, environ=outside)
    with pytest.raises(ConfigError, match="model_dir"):
        load_config(None, environ={**env, "OSTEORISK_MODEL_DIR": "/etc"})
    url = {**env, "OSTEORISK_FHIR_SOURCE": "https://fhir.example/r4"}
    assert load_config(None, environ=url).fhir is not None  # URLs are not paths
