"""Shared test fixtures: the hash-checked real data in ../shared/data."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

# The session-scoped real FHIR server (sekmet-fhir on 127.0.0.1); see tests/fhir_server.py.
from tests.fhir_server import sekmet_fhir  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("OSTEORISK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
CHECKSUMS = Path(__file__).resolve().parent / "shared_data.sha256"


@cache
def _expected_sha256() -> dict[str, str]:
    pairs = (line.split() for line in CHECKSUMS.read_text().splitlines() if line.strip())
    return {path: digest for digest, path in pairs}


@cache
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shared_path(relative: str) -> Path:
    """A file or folder of ../shared/data, every file under it checked against its published sha256."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.fail(f"shared test data missing: {path} (set OSTEORISK_SHARED_DATA to the data folder)")
    expected = _expected_sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        key = file.relative_to(SHARED_DATA).as_posix()
        if key not in expected:
            pytest.fail(f"{key} has no published checksum in {CHECKSUMS.name}")
        if _sha256(file) != expected[key]:
            pytest.fail(f"{key} does not match its published sha256: the shared data changed")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Callable[[str], Path]:
    """`shared_data("ct/totalseg/example_ct_sm.nii.gz")` -> a verified path."""
    return shared_path
