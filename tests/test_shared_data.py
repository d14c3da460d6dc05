from __future__ import annotations

from tests.conftest import CHECKSUMS, SHARED_DATA, shared_path


def test_every_published_file_matches_its_checksum() -> None:
    listed = [line.split()[1] for line in CHECKSUMS.read_text().splitlines() if line.strip()]
    assert len(listed) == 40
    for relative in listed:
        assert shared_path(relative).is_file()
    assert SHARED_DATA.is_dir()
