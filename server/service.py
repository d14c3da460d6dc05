"""The `osteorisk.v1.FractureRiskService` servicer: translates between the wire and the domain.

No science here: every answer comes from `imaging`, `clinical` and `fusion`. Domain exceptions are
turned into google.rpc statuses by `server.errors.status_for`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from grpc_status import rpc_status

from server.config import ServerConfig
from server.errors import NotImplementedYetError, status_for
from server.generated.osteorisk.v1 import (
    bone_features_pb2,
    fracture_risk_service_pb2,
    fracture_risk_service_pb2_grpc,
    model_card_pb2,
    risk_report_pb2,
)
from server.observability import AuditLog, Metrics

log = logging.getLogger(__name__)

SERVICE_NAME = fracture_risk_service_pb2.DESCRIPTOR.services_by_name["FractureRiskService"].full_name

R = TypeVar("R")


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    status = status_for(exc)
    if status.code == grpc.StatusCode.INTERNAL.value[0]:
        log.exception("unexpected error in RPC", exc_info=exc)
    context.abort_with_status(rpc_status.to_status(status))


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


class FractureRiskService(fracture_risk_service_pb2_grpc.FractureRiskServiceServicer):
    """Implements the v1 contract. Capabilities that have not landed answer UNIMPLEMENTED, naming what is missing."""

    def __init__(
        self, config: ServerConfig, *, metrics: Metrics, audit: AuditLog, on_ready: Callable[[], None]
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._audit = audit
        self._on_ready = on_ready

    def start_loading(self) -> None:
        """Load what the service needs, then report SERVING (no model exists to load yet)."""
        self._on_ready()

    @_unary
    def Assess(
        self, request: fracture_risk_service_pb2.AssessRequest, context: grpc.ServicerContext
    ) -> risk_report_pb2.RiskReport:
        raise NotImplementedYetError(
            "Assess is not available yet: it needs the fusion risk models and the clinical/imaging pipelines"
        )

    def AssessStream(
        self,
        request_iterator: Iterator[fracture_risk_service_pb2.AssessRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[fracture_risk_service_pb2.AssessStreamResponse]:
        _abort(context, NotImplementedYetError("AssessStream is not available yet: it needs Assess"))
        return iter(())

    @_unary
    def ExtractBoneFeatures(
        self, request: fracture_risk_service_pb2.ExtractBoneFeaturesRequest, context: grpc.ServicerContext
    ) -> bone_features_pb2.BoneFeatures:
        raise NotImplementedYetError("ExtractBoneFeatures is not available yet: it needs the imaging pipeline")

    @_unary
    def GetModelInfo(
        self, request: fracture_risk_service_pb2.GetModelInfoRequest, context: grpc.ServicerContext
    ) -> model_card_pb2.ModelCard:
        raise NotImplementedYetError("GetModelInfo is not available yet: no model can be loaded until fusion lands")
