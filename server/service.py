"""The `osteorisk.v1.FractureRiskService` servicer: translates between the wire and the domain.

No science here: every answer comes from `imaging`, `clinical` and `fusion` through `server.assessment`.
Domain exceptions become google.rpc statuses (`server.errors.status_for`). The model is loaded in the
background at start-up; until it is, health says NOT_SERVING and RPCs answer UNAVAILABLE.
"""

from __future__ import annotations

import functools
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.rpc import status_pb2
from grpc_status import rpc_status

from clinical.sources.auth import make_auth
from clinical.sources.base import FhirSource, open_source
from fusion.artifacts import load_model
from fusion.bundled import default_model_dir
from imaging.io import ReadOptions
from server import convert, wire
from server.assessment import FeatureCache, PrecomputedFeatures, Runtime, assess, extract_bone_features
from server.config import FhirSourceConfig, ServerConfig
from server.errors import RequestError, status_for
from server.generated.osteorisk.v1 import (
    bone_features_pb2,
    fracture_risk_service_pb2,
    fracture_risk_service_pb2_grpc,
    model_card_pb2,
    risk_report_pb2,
)
from server.observability import AuditLog, Metrics
from server.pacs import PacsClient
from server.report_encoder import encode_risk_report
from server.rpc_executor import blocking
from server.security import current_caller

log = logging.getLogger(__name__)

SERVICE_NAME = fracture_risk_service_pb2.DESCRIPTOR.services_by_name["FractureRiskService"].full_name

R = TypeVar("R")


class ServiceNotReadyError(Exception):
    """The model has not been loaded yet (or failed to load): UNAVAILABLE."""


def _status(exc: Exception) -> status_pb2.Status:
    """The status of a failed request; an unexpected error is logged by type and place only (its message may
    carry patient data), and the caller gets INTERNAL without details."""
    if isinstance(exc, ServiceNotReadyError):
        return status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message=str(exc))
    status = status_for(exc)
    if status.code == grpc.StatusCode.INTERNAL.value[0]:
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        place = f"{where.filename}:{where.lineno}" if where else "?"
        log.error("unexpected error in RPC", extra={"error_type": type(exc).__name__, "where": place})
    return status


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    context.abort_with_status(rpc_status.to_status(_status(exc)))


def _unary(method: Callable[..., R]) -> Callable[..., R]:
    """Run a unary method, mapping domain exceptions to statuses (the method never leaks a traceback)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> R:
        try:
            return method(self, request, context)
        except Exception as exc:  # mapped once, here, at the edge
            _abort(context, exc)
            raise  # unreachable: abort raises

    return wrapper


def _cancel_event(context: grpc.ServicerContext) -> threading.Event:
    """An event set when the RPC ends for any reason (the caller cancelled or its deadline passed)."""
    event = threading.Event()
    if not context.add_callback(event.set):  # the RPC has already ended
        event.set()
    return event


def _requests(iterator: Iterator[R]) -> Iterator[R]:
    """A stream's requests; waiting for the client's next one lends this thread's place to other RPCs."""
    while True:
        with blocking():
            request = next(iterator, None)
        if request is None:
            return
        yield request


def _open_fhir(config: FhirSourceConfig) -> FhirSource:
    """The configured FHIR source; a REST server gets its credentials and timeout from the configuration."""
    if not config.is_url:
        return open_source(config.source)
    auth = make_auth(
        token_file=config.bearer_token_file,
        smart_client_id=config.smart_client_id,
        smart_private_key=config.smart_private_key_file,
        smart_scope=config.smart_scope,
        smart_token_url=config.smart_token_url,
    )
    return open_source(config.source, auth=auth, timeout_s=config.timeout_s)


def _monai_options(config: ServerConfig) -> dict[str, object] | None:
    if config.monai is None:
        return None
    options: dict[str, object] = {"model_dir": config.monai.model_dir}
    if config.monai.label_mapping is not None:
        options["label_mapping"] = config.monai.label_mapping
    return options


class FractureRiskService(fracture_risk_service_pb2_grpc.FractureRiskServiceServicer):
    """Implements the v1 contract over `server.assessment`."""

    def __init__(
        self, config: ServerConfig, *, metrics: Metrics, audit: AuditLog, on_ready: Callable[[], None]
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._audit = audit
        self._on_ready = on_ready
        self._runtime: Runtime | None = None
        self._load_error: str | None = None
        self._stopping = threading.Event()

    def begin_shutdown(self) -> None:
        """Streams end at their next request boundary (running requests finish within the grace period)."""
        self._stopping.set()

    def close(self) -> None:
        """After the server has stopped: release the upstream connections."""
        if self._runtime is not None and self._runtime.fhir is not None:
            self._runtime.fhir.close()

    # ---- start-up -----------------------------------------------------------------------------------------

    def start_loading(self) -> None:
        """Load the model (verifying every hash) and open the upstreams in the background, then SERVING."""
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()

    def _load(self) -> None:
        try:
            model = load_model(self._config.model_dir or default_model_dir())
            fhir = _open_fhir(self._config.fhir) if self._config.fhir else None
            pacs = PacsClient(self._config.dicomweb) if self._config.dicomweb else None
            self._runtime = Runtime(
                model=model,
                fhir=fhir,
                pacs=pacs,
                max_inline_image_bytes=self._config.max_inline_image_bytes,
                feature_cache=FeatureCache(capacity=self._config.feature_cache_entries),
                monai_options=_monai_options(self._config),
                read_options=ReadOptions(max_voxels=self._config.max_ct_voxels),
                ct_slots=threading.Semaphore(self._config.max_concurrent_ct),
                max_fhir_bundle_bytes=self._config.max_fhir_bundle_bytes,
            )
        except Exception as exc:
            self._load_error = " ".join(str(exc).split())
            log.error(
                "model or upstream failed to load; the server stays NOT_SERVING", extra={"error": self._load_error}
            )
            return
        self._metrics.set_model(model.card.id, model.card.version, model.sha256)
        log.info("model loaded", extra={"model": model.card.id, "version": model.card.version})
        self._on_ready()

    def _ready(self) -> Runtime:
        if self._runtime is None:
            reason = f"model failed to load: {self._load_error}" if self._load_error else "model is still loading"
            raise ServiceNotReadyError(f"not ready: {reason}")
        return self._runtime

    # ---- RPCs ---------------------------------------------------------------------------------------------

    def _assess_one(
        self,
        request: fracture_risk_service_pb2.AssessRequest,
        context: grpc.ServicerContext,
        cancel: threading.Event | None,
    ) -> risk_report_pb2.RiskReport:
        """One assessment; `cancel` (None: made here when the request has CT work to stop) ends that work."""
        runtime = self._ready()
        domain_request = wire.assessment_request(request)
        if cancel is None and not isinstance(domain_request.imaging, PrecomputedFeatures | None):
            cancel = _cancel_event(context)
        outcome = "ERROR"
        patient = domain_request.patient_id
        try:
            report = assess(runtime, domain_request, cancel=cancel, timeout_s=context.time_remaining())
            patient, outcome = report.patient_id, "OK"
            return encode_risk_report(report)
        finally:
            self._audit.record(
                caller=current_caller().id,
                method="Assess",
                patient_id=patient or "(unknown)",
                model_id=runtime.model.card.id,
                model_version=runtime.model.card.version,
                outcome=outcome,
            )

    @_unary
    def Assess(
        self, request: fracture_risk_service_pb2.AssessRequest, context: grpc.ServicerContext
    ) -> risk_report_pb2.RiskReport:
        return self._assess_one(request, context, None)

    def AssessStream(
        self, request_iterator: Iterator[fracture_risk_service_pb2.AssessRequest], context: grpc.ServicerContext
    ) -> Iterator[fracture_risk_service_pb2.AssessStreamResponse]:
        """One response per request, in order; a request's failure is reported in its response, the stream goes on.

        Flow control is gRPC's: the next request is read only after the previous response was handed over.
        """
        try:
            self._ready()
        except ServiceNotReadyError as exc:
            _abort(context, exc)
        cancel = _cancel_event(context)  # one for the whole stream
        for position, request in enumerate(_requests(request_iterator)):
            request_id = request.request_id or f"#{position}"
            try:
                report = self._assess_one(request, context, cancel)
                yield fracture_risk_service_pb2.AssessStreamResponse(request_id=request_id, report=report)
            except Exception as exc:
                yield fracture_risk_service_pb2.AssessStreamResponse(request_id=request_id, error=_status(exc))
            if cancel.is_set() or self._stopping.is_set():  # caller gone, or the server shutting down
                return

    @_unary
    def ExtractBoneFeatures(
        self, request: fracture_risk_service_pb2.ExtractBoneFeaturesRequest, context: grpc.ServicerContext
    ) -> bone_features_pb2.BoneFeatures:
        runtime = self._ready()
        imaging = wire.imaging_input(request, "image")
        if imaging is None:
            raise RequestError("image", "REQUIRED", "one image input is required: pacs_series or inline_image")
        backend = wire.segmentation_backend(request.segmentation_backend)
        outcome = "ERROR"
        try:
            features = extract_bone_features(
                runtime, imaging, backend=backend, cancel=_cancel_event(context), timeout_s=context.time_remaining()
            )
            outcome = "OK"
            return convert.bone_features_to_proto(features)
        finally:  # a patient's CT was read: audited like an assessment (the series stands for the patient)
            self._audit.record(
                caller=current_caller().id,
                method="ExtractBoneFeatures",
                patient_id=f"(series {getattr(imaging, 'series_uid', '') or 'inline'})",
                model_id=runtime.model.card.id,
                model_version=runtime.model.card.version,
                outcome=outcome,
            )

    @_unary
    def GetModelInfo(
        self, request: fracture_risk_service_pb2.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> model_card_pb2.ModelCard:
        runtime = self._ready()
        return convert.model_card_to_proto(runtime.model.card, sha256=runtime.model.sha256)
