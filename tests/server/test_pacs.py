"""Fetching CT series from a real Orthanc over DICOMweb, and the PACS's failure modes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from server.config import DicomWebConfig
from server.errors import PacsNotFoundError, PacsUnavailableError, RequestError
from server.pacs import PacsClient, SeriesSummary, largest_ct_series, validate_uid
from tests.net import free_port
from tests.orthanc_server import OrthancServer
from tests.server.conftest import StoredSeries


def test_fetches_a_jpeg2000_series_in_its_stored_syntax(
    orthanc: OrthancServer, shared_series_in_orthanc: StoredSeries
) -> None:
    client = PacsClient(DicomWebConfig(base_url=orthanc.dicomweb_url))
    series_uid, instances = client.fetch_series(shared_series_in_orthanc.study_uid, shared_series_in_orthanc.series_uid)
    assert series_uid == shared_series_in_orthanc.series_uid
    assert len(instances) == 20
    assert instances[0].file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert instances[0].pixel_array.shape == (512, 512)


def test_chooses_the_ct_series_when_only_the_study_is_given(
    orthanc: OrthancServer, shared_series_in_orthanc: StoredSeries
) -> None:
    client = PacsClient(DicomWebConfig(base_url=orthanc.dicomweb_url))
    series_uid, _ = client.fetch_series(shared_series_in_orthanc.study_uid)
    assert series_uid == shared_series_in_orthanc.series_uid


def test_unknown_study_is_not_found(orthanc: OrthancServer) -> None:
    client = PacsClient(DicomWebConfig(base_url=orthanc.dicomweb_url))
    with pytest.raises(PacsNotFoundError):
        client.fetch_series("1.2.3.4", "1.2.3.4.5")
    with pytest.raises(PacsNotFoundError, match="no CT series"):
        client.fetch_series("1.2.3.4")


@pytest.mark.parametrize("bad", ["", "1.2.abc", "1..2", "01.2", "1.2/../../system", "1." * 40])
def test_uids_are_validated_before_any_url_is_built(bad: str) -> None:
    with pytest.raises(RequestError, match="not a DICOM UID"):
        validate_uid(bad, "imaging.pacs_series.study_uid")


def test_default_choice_prefers_the_series_with_most_instances() -> None:
    thick = SeriesSummary("1.1", "CT", "5mm", 60)
    thin = SeriesSummary("1.2", "CT", "1mm", 300)
    assert largest_ct_series([thick, thin]) == thin


class _Misbehaving(BaseHTTPRequestHandler):
    delay_s = 0.0
    status = 503

    def do_GET(self) -> None:
        time.sleep(self.delay_s)
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def misbehaving_pacs() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_pacs_down_slow_or_failing_is_unavailable(misbehaving_pacs: ThreadingHTTPServer) -> None:
    down = PacsClient(DicomWebConfig(base_url=f"http://127.0.0.1:{free_port()}/dicom-web"))
    with pytest.raises(PacsUnavailableError, match="cannot connect"):
        down.fetch_series("1.2.3", "1.2.3.4")
    url = f"http://127.0.0.1:{misbehaving_pacs.server_address[1]}/dicom-web"
    _Misbehaving.delay_s, _Misbehaving.status = 0.0, 503
    with pytest.raises(PacsUnavailableError, match="HTTP 503"):
        PacsClient(DicomWebConfig(base_url=url)).fetch_series("1.2.3", "1.2.3.4")
    _Misbehaving.delay_s = 2.0
    started = time.monotonic()
    with pytest.raises(PacsUnavailableError, match="in time"):
        PacsClient(DicomWebConfig(base_url=url, timeout_s=0.3)).fetch_series("1.2.3", "1.2.3.4")
    assert time.monotonic() - started < 1.9


class _NotDicom(BaseHTTPRequestHandler):
    """A proxy's login page, or a transfer cut short, where DICOM was expected."""

    truncated = False

    def do_GET(self) -> None:
        if self.truncated:
            self.send_response(200)
            self.send_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=b')
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"--b\r\nContent-Type: application/dicom\r\n\r\n\x00\x01")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html><body>Please log in</body></html>")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_answers_that_are_not_dicom_are_unavailable_not_internal() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotDicom)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = PacsClient(
            DicomWebConfig(base_url=f"http://127.0.0.1:{server.server_address[1]}/dicom-web", timeout_s=3)
        )
        for truncated in (False, True):
            _NotDicom.truncated = truncated
            with pytest.raises(PacsUnavailableError):
                client.fetch_series("1.2.3", "1.2.3.4")
    finally:
        server.shutdown()
