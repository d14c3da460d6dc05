"""The configured PACS, over DICOMweb (QIDO-RS to find series, WADO-RS to fetch them).

The base URL comes from configuration only; a request names a study and series by UID, which are
validated as DICOM UIDs before they reach a URL. Instances are fetched in their stored transfer syntax
(`transfer-syntax=*`): decoding is imaging's job, and a PACS that cannot transcode (e.g. JPEG 2000) works.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.errors import InvalidDicomError

from server.config import DicomWebConfig
from server.errors import PacsNotFoundError, PacsUnavailableError, RequestError

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
_ANY_TRANSFER_SYNTAX = (("application/dicom", "*"),)


def validate_uid(value: str, field: str) -> str:
    """A DICOM UID (PS3.5 9.1: digits and dots, no leading zeros, at most 64 characters) or RequestError."""
    if not value or len(value) > 64 or not _UID.match(value):
        raise RequestError(field, "INVALID_UID", f"{field} is not a DICOM UID (digits and dots, at most 64): {value!r}")
    return value


@dataclass(frozen=True)
class SeriesSummary:
    """What QIDO-RS says of a series, enough to choose one."""

    series_uid: str
    modality: str
    description: str
    instances: int


SeriesChooser = Callable[[Sequence[SeriesSummary]], SeriesSummary]


def largest_ct_series(candidates: Sequence[SeriesSummary]) -> SeriesSummary:
    """Default choice among a study's CT series: the one with most instances (thin axial reconstructions)."""
    return max(candidates, key=lambda s: (s.instances, s.series_uid))


class PacsClient:
    """Fetches CT series from the one configured DICOMweb server."""

    def __init__(self, config: DicomWebConfig, *, choose: SeriesChooser = largest_ct_series) -> None:
        self._config = config
        self._choose = choose
        self._headers: dict[str, str] = {}
        if config.bearer_token_file is not None:
            self._headers["Authorization"] = "Bearer " + config.bearer_token_file.read_text().strip()

    def _client(self, session: requests.Session, timeout_s: float | None) -> DICOMwebClient:
        timeout = self._config.timeout_s if timeout_s is None else max(0.1, min(timeout_s, self._config.timeout_s))
        session.headers.update(self._headers)
        client = DICOMwebClient(url=self._config.base_url.rstrip("/"), session=session, timeout=timeout)
        # The library's own retries (5 attempts with growing waits, on any exception) would outlive the caller's
        # deadline; a failed fetch is reported at once and the caller decides whether to retry.
        client.set_http_retry_params(retry=False)
        return client

    def fetch_series(
        self,
        study_uid: str,
        series_uid: str = "",
        *,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, list[pydicom.Dataset]]:
        """(series UID, its instances). With no series UID, the study's CT series is chosen."""
        validate_uid(study_uid, "imaging.pacs_series.study_uid")
        if series_uid:
            validate_uid(series_uid, "imaging.pacs_series.series_uid")
        with requests.Session() as session:
            client = self._client(session, timeout_s)
            try:
                if not series_uid:
                    series_uid = self._choose_series(client, study_uid)
                if cancel is not None and cancel.is_set():
                    return series_uid, []
                instances = client.retrieve_series(study_uid, series_uid, media_types=_ANY_TRANSFER_SYNTAX)
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status in (400, 404):
                    raise PacsNotFoundError(f"the PACS has no series {series_uid} in study {study_uid}") from exc
                raise PacsUnavailableError(f"the PACS answered HTTP {status}") from exc
            except requests.Timeout as exc:
                raise PacsUnavailableError("the PACS did not answer in time") from exc
            except requests.ConnectionError as exc:
                raise PacsUnavailableError("cannot connect to the PACS") from exc
            except requests.RequestException as exc:  # a truncated or garbled transfer
                raise PacsUnavailableError(f"the PACS transfer failed ({type(exc).__name__})") from exc
            except (ValueError, KeyError, InvalidDicomError) as exc:  # not multipart DICOM (e.g. a proxy's page)
                raise PacsUnavailableError("the PACS answered something that is not DICOM") from exc
        if not instances:
            raise PacsNotFoundError(f"the PACS returned no instances for series {series_uid}")
        return series_uid, instances

    def _choose_series(self, client: DICOMwebClient, study_uid: str) -> str:
        found = client.search_for_series(study_uid)
        candidates = []
        for item in found:
            header = pydicom.Dataset.from_json(item)
            if str(header.get("Modality", "")) != "CT":
                continue
            candidates.append(
                SeriesSummary(
                    series_uid=str(header.get("SeriesInstanceUID", "")),
                    modality="CT",
                    description=str(header.get("SeriesDescription", "")),
                    instances=int(header.get("NumberOfSeriesRelatedInstances", 0) or 0),
                )
            )
        if not candidates:
            raise PacsNotFoundError(f"study {study_uid} has no CT series on the PACS")
        return self._choose(candidates).series_uid
