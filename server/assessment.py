"""One assessment, whatever the front door: the gRPC servicer and the in-process CLI both call `assess`.

The request is domain-level (`AssessmentRequest`): a clinical input, an optional imaging input, the index date,
outcomes and horizons. Inputs that name server-side resources (`FhirPatientRef`, `PacsSeriesRef`) resolve
only against the configured FHIR source and PACS; only the CLI, in the user's own process, builds the
`Local*` inputs that read paths the user typed. The servicer never does.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

from clinical.extract import build_record
from clinical.sources.base import FhirSource, open_source, single_patient_id
from clinical.sources.bundle import BundleSource
from clinical.types import ClinicalRecord, ClinicalVariables
from fusion.artifacts import LoadedModel
from fusion.assess import assess as assess_patient
from fusion.types import DEFAULT_HORIZONS_YEARS, OUTCOMES, RiskReport
from imaging.errors import ProcessingCancelledError
from imaging.io import (
    ReadOptions,
    label_map_from_bytes,
    load_dicom_bytes,
    load_dicom_datasets,
    load_nifti_bytes,
)
from imaging.pipeline import extract_features
from imaging.types import BoneFeatures
from server.errors import RequestError, ServerBusyError
from server.fhir_risk_assessment import build_risk_assessment
from server.pacs import PacsClient
from server.rpc_executor import blocking

# ---- clinical inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InlineVariables:
    variables: ClinicalVariables


@dataclass(frozen=True)
class InlineBundle:
    json: bytes
    patient_id: str = ""


@dataclass(frozen=True)
class FhirPatientRef:
    """A patient on the server's configured FHIR source."""

    patient_id: str


@dataclass(frozen=True)
class LocalFhir:
    """CLI only: a Bundle file, a Bulk Data directory or a FHIR base URL the user named."""

    source: str
    patient_id: str = ""


ClinicalInput = InlineVariables | InlineBundle | FhirPatientRef | LocalFhir

# ---- imaging inputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrecomputedFeatures:
    features: BoneFeatures


@dataclass(frozen=True)
class PacsSeriesRef:
    study_uid: str
    series_uid: str = ""


@dataclass(frozen=True)
class InlineCt:
    format: Literal["nifti", "dicom"]
    data: bytes = b""
    dicom_instances: tuple[bytes, ...] = ()
    labels_nifti: bytes = b""
    label_convention: str = "totalsegmentator"

    @property
    def size(self) -> int:
        return len(self.data) + sum(map(len, self.dicom_instances)) + len(self.labels_nifti)


@dataclass(frozen=True)
class LocalCt:
    """CLI only: a DICOM folder/file or NIfTI the user named, with an optional label map."""

    path: Path
    labels: Path | None = None
    label_convention: str = "totalsegmentator"


ImagingInput = PrecomputedFeatures | PacsSeriesRef | InlineCt | LocalCt


@dataclass(frozen=True)
class AssessmentRequest:
    clinical: ClinicalInput
    imaging: ImagingInput | None = None
    patient_id: str = ""
    index_date: date | None = None
    outcomes: tuple[str, ...] = OUTCOMES
    horizons_years: tuple[float, ...] = DEFAULT_HORIZONS_YEARS
    segmentation_backend: str | None = None


# ---- the runtime: what the server holds ---------------------------------------------------------------------


@dataclass
class FeatureCache:
    """BoneFeatures by key (series UID or payload hash, backend, labels), least recently used out first."""

    capacity: int = 256
    _items: OrderedDict[str, BoneFeatures] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> BoneFeatures | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: str, features: BoneFeatures) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._items[key] = features
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


@dataclass
class Runtime:
    """The loaded model and the configured upstreams; shared by every RPC (read-only after start-up)."""

    model: LoadedModel
    fhir: FhirSource | None = None
    pacs: PacsClient | None = None
    max_inline_image_bytes: int = 512 * 1024 * 1024
    feature_cache: FeatureCache = field(default_factory=FeatureCache)
    allow_local_inputs: bool = False  # True only in the CLI's own process
    monai_options: Mapping[str, object] | None = None  # the configured MONAI network, if any
    read_options: ReadOptions = field(default_factory=ReadOptions)  # e.g. the largest CT volume read
    ct_slots: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(2))
    max_fhir_bundle_bytes: int = 32 * 1024 * 1024

    def backend_options(self, backend: str | None) -> Mapping[str, object] | None:
        """Options of a segmentation backend from configuration (a request never names a path)."""
        if backend != "monai":
            return None
        if self.monai_options is None:
            raise RequestError(
                "segmentation_backend", "BACKEND_NOT_CONFIGURED", "this server has no MONAI network configured"
            )
        return self.monai_options


MAX_HORIZONS = 10  # distinct horizons a request may ask for (years 1..10; a dashboard needs a handful)


def _check_outcomes(request: AssessmentRequest) -> None:
    if len(set(request.horizons_years)) > MAX_HORIZONS or len(request.horizons_years) > 4 * MAX_HORIZONS:
        raise RequestError(
            "horizons_years", "TOO_MANY_HORIZONS", f"at most {MAX_HORIZONS} distinct horizons per request"
        )
    if len(request.outcomes) > 2 * len(OUTCOMES):
        raise RequestError("outcomes", "TOO_MANY_OUTCOMES", f"at most {len(OUTCOMES)} outcomes per request")
    for outcome in request.outcomes:
        if outcome not in OUTCOMES:
            raise RequestError(
                "outcomes", "UNKNOWN_OUTCOME", f"unknown outcome {outcome!r}; use one of {list(OUTCOMES)}"
            )
    for horizon in request.horizons_years:
        if not 1.0 <= horizon <= 10.0:
            raise RequestError("horizons_years", "HORIZON_OUT_OF_RANGE", f"horizon {horizon} years is outside 1..10")


@contextmanager
def _ct_slot(runtime: Runtime, timeout_s: float | None) -> Iterator[None]:
    """Hold one of the server's CT slots (each study may need a gigabyte or more), waiting within the deadline."""
    with blocking():  # waiting for a slot, fetching and measuring: other RPCs run meanwhile
        if not runtime.ct_slots.acquire(timeout=timeout_s):
            raise ServerBusyError("every CT slot of this server stayed busy until the deadline: retry later")
        try:
            yield
        finally:
            runtime.ct_slots.release()


def extract_bone_features(
    runtime: Runtime,
    imaging: ImagingInput,
    *,
    backend: str | None = None,
    cancel: threading.Event | None = None,
    timeout_s: float | None = None,
) -> BoneFeatures:
    """BoneFeatures for any imaging input (cached by series UID or payload hash, backend and labels).

    CT work holds one of the server's CT slots; volumes over `Runtime.read_options.max_voxels` are refused
    before they are allocated."""
    if isinstance(imaging, PrecomputedFeatures):
        return imaging.features
    options = runtime.backend_options(backend)  # a backend the server cannot run is refused before any work
    if isinstance(imaging, PacsSeriesRef):
        if runtime.pacs is None:
            raise RequestError("imaging.pacs_series", "NO_PACS_CONFIGURED", "this server has no PACS configured")
        key = f"pacs:{imaging.study_uid}:{imaging.series_uid}:{backend}"
        if imaging.series_uid and (cached := runtime.feature_cache.get(key)) is not None:
            return cached
        with _ct_slot(runtime, timeout_s):
            series_uid, instances = runtime.pacs.fetch_series(
                imaging.study_uid, imaging.series_uid, timeout_s=timeout_s, cancel=cancel
            )
            if cancel is not None and cancel.is_set():
                raise ProcessingCancelledError("the caller gave up while the series was being fetched")
            volume = load_dicom_datasets(instances, options=runtime.read_options, kind="dicomweb")
            del instances
            features = extract_features(volume, backend=backend, backend_options=options, cancel=cancel)
        runtime.feature_cache.put(f"pacs:{imaging.study_uid}:{series_uid}:{backend}", features)
        return features
    if isinstance(imaging, InlineCt):
        if imaging.size > runtime.max_inline_image_bytes:
            raise RequestError(
                "imaging.inline_image",
                "PAYLOAD_TOO_LARGE",
                f"inline image of {imaging.size} bytes exceeds this server's limit of "
                f"{runtime.max_inline_image_bytes} bytes; store the study on the PACS instead",
            )
        if imaging.format == "nifti" and not imaging.data:
            raise RequestError("imaging.inline_image.data", "EMPTY", "NIFTI format needs the file in `data`")
        if imaging.format == "dicom" and not imaging.dicom_instances:
            raise RequestError("imaging.inline_image.dicom_instances", "EMPTY", "DICOM format needs `dicom_instances`")
        digest = hashlib.sha256()
        for part in (imaging.data, *imaging.dicom_instances, b"labels", imaging.labels_nifti):
            digest.update(hashlib.sha256(part).digest())
        key = f"inline:{digest.hexdigest()}:{imaging.label_convention}:{backend}"
        if (cached := runtime.feature_cache.get(key)) is not None:
            return cached
        with _ct_slot(runtime, timeout_s):
            if imaging.format == "nifti":
                volume = load_nifti_bytes(imaging.data, options=runtime.read_options)
            else:
                volume = load_dicom_bytes(imaging.dicom_instances, options=runtime.read_options)
            labels = (
                label_map_from_bytes(imaging.labels_nifti, reference=volume, convention=imaging.label_convention)
                if imaging.labels_nifti
                else None
            )
            features = extract_features(volume, labels=labels, backend=backend, backend_options=options, cancel=cancel)
        runtime.feature_cache.put(key, features)
        return features
    if not runtime.allow_local_inputs:
        raise RequestError("imaging", "LOCAL_PATHS_REFUSED", "this server does not read local paths")
    return extract_features(
        imaging.path,
        labels=imaging.labels,
        label_convention=imaging.label_convention,
        backend=backend,
        backend_options=options,
        cancel=cancel,
    )


def _record_from(source: FhirSource, patient_id: str, index_date: date) -> tuple[str, ClinicalRecord]:
    try:
        pid = patient_id or single_patient_id(source)
        return pid, build_record(source, pid, index_date)
    finally:
        source.close()


def _clinical_record(
    runtime: Runtime, clinical: ClinicalInput, patient_id: str, index_date: date
) -> tuple[str, ClinicalRecord]:
    if isinstance(clinical, InlineVariables):
        if not patient_id:
            raise RequestError("patient_id", "REQUIRED", "patient_id is required with inline variables")
        return patient_id, ClinicalRecord(patient_id=patient_id, index_date=index_date, variables=clinical.variables)
    if isinstance(clinical, InlineBundle):
        source = BundleSource.from_bytes(clinical.json, max_bytes=runtime.max_fhir_bundle_bytes)
        return _record_from(source, clinical.patient_id or patient_id, index_date)
    if isinstance(clinical, FhirPatientRef):
        if runtime.fhir is None:
            raise RequestError(
                "clinical.fhir_patient", "NO_FHIR_CONFIGURED", "this server has no FHIR source configured"
            )
        if not clinical.patient_id:
            raise RequestError("clinical.fhir_patient.patient_id", "REQUIRED", "patient_id is required")
        with blocking():  # the FHIR server's answers: other RPCs run meanwhile
            return clinical.patient_id, build_record(runtime.fhir, clinical.patient_id, index_date)
    if not runtime.allow_local_inputs:
        raise RequestError("clinical", "LOCAL_PATHS_REFUSED", "this server does not read local paths")
    return _record_from(open_source(clinical.source), clinical.patient_id or patient_id, index_date)


def assess(
    runtime: Runtime,
    request: AssessmentRequest,
    *,
    cancel: threading.Event | None = None,
    timeout_s: float | None = None,
    today: date | None = None,
) -> RiskReport:
    """Run one assessment: imaging first (its study date is the default index date), then clinical, then fusion."""
    _check_outcomes(request)
    warnings: list[str] = []
    bone = None
    if request.imaging is not None:
        bone = extract_bone_features(
            runtime, request.imaging, backend=request.segmentation_backend, cancel=cancel, timeout_s=timeout_s
        )
    index_date = request.index_date
    if index_date is None:
        if bone is not None and bone.source.study_date is not None:
            index_date = bone.source.study_date
        else:
            index_date = today or date.today()
            warnings.append(f"INDEX_DATE_DEFAULTED: no index date and no CT study date; used today ({index_date})")
    patient_id, record = _clinical_record(runtime, request.clinical, request.patient_id, index_date)
    if request.patient_id and patient_id != request.patient_id:
        raise RequestError("patient_id", "PATIENT_MISMATCH", "patient_id differs from the clinical input's patient")
    report = assess_patient(
        runtime.model,
        patient_id=patient_id,
        index_date=index_date,
        clinical=record,
        bone=bone,
        outcomes=request.outcomes,
        horizons=request.horizons_years,
    )
    if warnings:
        report = report.model_copy(update={"warnings": [*warnings, *report.warnings]})
    return report.model_copy(update={"fhir_risk_assessment": build_risk_assessment(report)})


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
EARLIEST_INDEX_DATE = date(1900, 1, 1)
MAX_DAYS_AHEAD = 366  # an assessment may be dated a year ahead (planning), not further


def parse_index_date(text: str, field: str = "index_date", *, today: date | None = None) -> date | None:
    """A date written YYYY-MM-DD between 1900-01-01 and a year from today; None for empty text."""
    if not text:
        return None
    try:
        if not _ISO_DATE.match(text):
            raise ValueError(text)
        value = date.fromisoformat(text)
    except ValueError:
        raise RequestError(field, "INVALID_DATE", f"{field} must be YYYY-MM-DD, got {text!r}") from None
    latest = (today or date.today()) + timedelta(days=MAX_DAYS_AHEAD)
    if not EARLIEST_INDEX_DATE <= value <= latest:
        raise RequestError(field, "DATE_OUT_OF_RANGE", f"{field} {value} lies outside {EARLIEST_INDEX_DATE}..{latest}")
    return value
