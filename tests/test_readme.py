"""The README's examples stay true: its configuration example is a valid server configuration."""

from __future__ import annotations

import re
from pathlib import Path

from server.config import load_config

README = Path(__file__).resolve().parent.parent / "README.md"


def test_configuration_example_loads(tmp_path: Path) -> None:
    (block,) = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)
    path = tmp_path / "osteorisk.toml"
    path.write_text(block)
    config = load_config(path, environ={})
    assert config.tls is not None and config.tls.client_ca_file is not None
    assert config.fhir is not None and config.fhir.is_url and config.fhir.smart_client_id == "osteorisk"
    assert config.dicomweb is not None
    assert config.auth.token_file is not None
    assert config.monai is not None and config.monai.label_mapping is not None
