"""A real Orthanc PACS with its DICOMweb plugin on 127.0.0.1, for integration tests.

Needs the Debian packages `orthanc` and `orthanc-dicomweb` (`.ci/run` installs them). `OrthancServer.start`
writes a private configuration (loopback only, no DICOM port, storage in a temporary folder) and waits until
the REST API answers; `upload` stores DICOM files through `POST /instances`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.net import free_port, stop_process

ORTHANC_BINARY = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def orthanc_available() -> str | None:
    """None when Orthanc and its DICOMweb plugin are installed, else why not."""
    if not Path(ORTHANC_BINARY).exists():
        return "Orthanc is not installed (Debian package 'orthanc')"
    if not DICOMWEB_PLUGIN.exists():
        return "the Orthanc DICOMweb plugin is not installed (Debian package 'orthanc-dicomweb')"
    return None


@dataclass
class OrthancServer:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @classmethod
    def start(cls, directory: Path, *, timeout_s: float = 30.0) -> OrthancServer:
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = {
            "Name": "osteorisk-test",
            "StorageDirectory": str(directory / "storage"),
            "IndexDirectory": str(directory / "storage"),
            "HttpPort": port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "HttpBindAddress": "127.0.0.1",
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
            "OrthancExplorerEnabled": False,
        }
        config_path = directory / "orthanc.json"
        config_path.write_text(json.dumps(config))
        log = (directory / "orthanc.log").open("wb")
        process = subprocess.Popen([ORTHANC_BINARY, str(config_path)], stdout=log, stderr=subprocess.STDOUT)
        server = cls(process, port, directory)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {process.returncode}; see {directory / 'orthanc.log'}")
            try:
                if httpx.get(f"{server.url}/system", timeout=1.0).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        server.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout_s} s; see {directory / 'orthanc.log'}")

    def upload(self, files: Iterable[Path]) -> int:
        """Store DICOM files; returns how many were stored."""
        stored = 0
        with httpx.Client(timeout=30.0) as client:
            for path in files:
                response = client.post(f"{self.url}/instances", content=path.read_bytes())
                response.raise_for_status()
                stored += 1
        return stored

    def stop(self) -> None:
        stop_process(self.process)
