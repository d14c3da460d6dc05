"""Fixtures for the server's integration tests: a real Orthanc PACS with a real CT series in it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.orthanc_server import OrthancServer, orthanc_available

UID_PREFIX = "1.2.826.0.1.3680043.10.1437."  # test UIDs (a prefix for this project's generated UIDs)


@dataclass(frozen=True)
class StoredSeries:
    study_uid: str
    series_uid: str
    files: tuple[Path, ...]


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    why_not = orthanc_available()
    if why_not:
        pytest.skip(why_not)
    server = OrthancServer.start(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_series_in_orthanc(
    orthanc: OrthancServer, shared_data: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> StoredSeries:
    """The shared JPEG 2000 CT series, given the study/series/instance UIDs its anonymisation removed."""
    source = shared_data("ct/totalseg/example_ct_dicom")
    out = tmp_path_factory.mktemp("dicom-with-uids")
    study_uid = generate_uid(prefix=UID_PREFIX, entropy_srcs=["study"])
    series_uid = generate_uid(prefix=UID_PREFIX, entropy_srcs=["series"])
    files = []
    for index, path in enumerate(sorted(source.iterdir())):
        dataset = pydicom.dcmread(path)
        dataset.StudyInstanceUID = study_uid
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid(prefix=UID_PREFIX, entropy_srcs=["instance", str(index)])
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        target = out / f"{index:03d}.dcm"
        dataset.save_as(target, enforce_file_format=True)
        files.append(target)
    orthanc.upload(files)
    return StoredSeries(study_uid, series_uid, tuple(files))


def wait_serving(channel: object, timeout_s: float = 60.0) -> int:
    """Poll grpc.health.v1 until SERVING (the model loads in the background); return the last status."""
    import time

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    status = health_pb2.HealthCheckResponse.UNKNOWN
    while time.monotonic() < deadline:
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
        except grpc.RpcError as err:  # not listening yet
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        if status == health_pb2.HealthCheckResponse.SERVING:
            break
        time.sleep(0.05)
    return int(status)
