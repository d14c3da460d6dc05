"""Translation between the domain types (pydantic, JSON contracts) and their protobuf messages.

The JSON contracts of DESIGN.md and the proto3 JSON mapping share field names, so one generic path does
the work: domain -> JSON dict -> `json_format.ParseDict` (unknown fields refused, so a domain field that the
proto does not mirror fails loudly), and back with `MessageToDict` plus a small normalisation guided by the
pydantic model (proto3 writes an unset string as "" and an unset repeated field as []; the domain says None).
"""

from __future__ import annotations

import functools
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar, get_args, get_origin

from google.protobuf import json_format, struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from pydantic import BaseModel

from clinical.types import ClinicalRecord, ClinicalVariables
from fusion.types import ModelCard, RiskReport
from imaging.types import BoneFeatures
from server.fhir_risk_assessment import canonical_risk_assessment, risk_assessment_json
from server.generated.osteorisk.v1 import (
    bone_features_pb2,
    clinical_record_pb2,
    model_card_pb2,
    risk_report_pb2,
)

M = TypeVar("M", bound=Message)
_JSON_WELL_KNOWN = frozenset({"google.protobuf.Struct", "google.protobuf.ListValue"})  # Value: `_json_value`
D = TypeVar("D", bound=BaseModel)


def _drop_none(value: Any) -> Any:
    """JSON without nulls: proto3 has no null for scalars (a None is an unset field)."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def to_proto(model: BaseModel, message: M) -> M:
    """Fill `message` from a domain object; raises json_format.ParseError on any unmirrored field."""
    json_format.ParseDict(
        _drop_none(model.model_dump(mode="json", by_alias=True)), message, ignore_unknown_fields=False
    )
    return message


def _optional_inner(annotation: Any) -> tuple[bool, Any]:
    """(allows None, the non-None annotation) of a field annotation."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        allows_none = len(args) < len(get_args(annotation))
        return allows_none, args[0] if len(args) == 1 else annotation
    return False, annotation


def _model_class(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


@dataclass(frozen=True)
class _FieldInfo:
    """What the translation needs to know of one domain field (worked out once per type)."""

    allows_none: bool
    required: bool
    model: type[BaseModel] | None  # a nested domain type
    item_model: type[BaseModel] | None  # the domain type of a list's items


@functools.cache
def _field_table(model_type: type[BaseModel]) -> dict[str, _FieldInfo]:
    table = {}
    for name, field in model_type.model_fields.items():
        allows_none, inner = _optional_inner(field.annotation)
        item = get_args(inner)[0] if get_origin(inner) is list and get_args(inner) else None
        table[field.alias or name] = _FieldInfo(
            allows_none, field.is_required(), _model_class(inner), _model_class(item)
        )
    return table


def _normalise(model_type: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """Turn proto3 defaults back into the domain's None where the domain field is optional; recurse."""
    fields = _field_table(model_type)
    out: dict[str, Any] = {}
    for key, value in data.items():
        info = fields.get(key)
        if info is None:  # a proto field the domain lacks: kept, so that validation refuses it
            out[key] = value
            continue
        if info.allows_none and value in ("", [], {}):
            continue
        if value == "" and not info.required:  # an unset string: the domain's default (e.g. the schema id)
            continue
        if info.model is not None and isinstance(value, dict):
            value = _normalise(info.model, value)
        elif info.item_model is not None and isinstance(value, list):
            value = [_normalise(info.item_model, v) for v in value]
        out[key] = value
    return out


def _plain(value: Any, field: FieldDescriptor) -> Any:
    """One field's value as JSON-like Python (messages as dicts, google.protobuf.Value/Struct as JSON)."""
    if field.type != FieldDescriptor.TYPE_MESSAGE or field.message_type is None:
        return value
    full_name = field.message_type.full_name
    if full_name == "google.protobuf.Value":
        return _json_value(value)
    if full_name in _JSON_WELL_KNOWN:
        return json_format.MessageToDict(value)
    return _message_dict(value)


def _json_value(message: struct_pb2.Value) -> Any:
    """A google.protobuf.Value as JSON: a string, bool or finite number directly (the common case of every
    clinical variable), anything else (null, lists, structs, NaN) through `json_format` with its errors."""
    which = message.WhichOneof("kind")
    if which == "string_value" or which == "bool_value":
        return getattr(message, which)
    if which == "number_value" and math.isfinite(message.number_value):
        return message.number_value
    return json_format.MessageToDict(message)


def _message_dict(message: Message) -> dict[str, Any]:
    """The fields a message carries, by proto name (C-implemented ListFields: unset fields are absent)."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {k: _plain(v, value_field) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_plain(item, field) for item in value]
        else:
            out[field.name] = _plain(value, field)
    return out


def _fill_required(model_type: type[BaseModel], data: dict[str, Any], message: Message) -> dict[str, Any]:
    """Proto3 leaves a scalar at its default (0, "", false) unset; a required domain field gets that value back."""
    descriptor = message.DESCRIPTOR
    for key, info in _field_table(model_type).items():
        proto_field = descriptor.fields_by_name.get(key)
        if proto_field is None:
            continue
        if key not in data:
            if info.required and proto_field.type != FieldDescriptor.TYPE_MESSAGE:
                data[key] = proto_field.default_value
        elif info.item_model is not None and proto_field.is_repeated:
            items = getattr(message, key)
            data[key] = [_fill_required(info.item_model, d, m) for d, m in zip(data[key], items, strict=True)]
        elif info.model is not None and isinstance(data[key], dict):
            data[key] = _fill_required(info.model, data[key], getattr(message, key))
    return data


def from_proto(message: Message, model_type: type[D], *, wire_only: tuple[str, ...] = ()) -> D:
    """The domain object of a protobuf message (validated by the domain type).

    `wire_only` names proto fields that the domain type does not hold (e.g. a card's own sha256).
    """
    data = _fill_required(model_type, _message_dict(message), message)
    for key in wire_only:
        data.pop(key, None)
    return model_type.model_validate(_normalise(model_type, data))


def bone_features_to_proto(features: BoneFeatures) -> bone_features_pb2.BoneFeatures:
    return to_proto(features, bone_features_pb2.BoneFeatures())


def bone_features_from_proto(message: bone_features_pb2.BoneFeatures) -> BoneFeatures:
    return from_proto(message, BoneFeatures)


def clinical_record_to_proto(record: ClinicalRecord) -> clinical_record_pb2.ClinicalRecord:
    return to_proto(record, clinical_record_pb2.ClinicalRecord())


def clinical_variables_from_proto(message: clinical_record_pb2.ClinicalVariables) -> ClinicalVariables:
    """Inline variables of a request. A variable sent with a value and no status is "observed"."""
    data = _message_dict(message)
    for variable in data.values():
        if variable.get("value") is not None and not variable.get("status"):
            variable["status"] = "observed"
    return ClinicalVariables.model_validate(_normalise(ClinicalVariables, data))


def clinical_variables_to_proto(variables: ClinicalVariables) -> clinical_record_pb2.ClinicalVariables:
    return to_proto(variables, clinical_record_pb2.ClinicalVariables())


def risk_report_to_proto(report: RiskReport) -> risk_report_pb2.RiskReport:
    """The report on the wire; its FHIR RiskAssessment travels as JSON text (`fhir_risk_assessment_json`)."""
    message = to_proto(report.model_copy(update={"fhir_risk_assessment": None}), risk_report_pb2.RiskReport())
    if report.fhir_risk_assessment is not None:
        message.fhir_risk_assessment_json = risk_assessment_json(report.fhir_risk_assessment)
    return message


def risk_report_from_proto(message: risk_report_pb2.RiskReport) -> RiskReport:
    """The report a server sent, its FHIR RiskAssessment read from JSON text and validated again."""
    report = from_proto(message, RiskReport, wire_only=("fhir_risk_assessment_json",))
    if not message.fhir_risk_assessment_json:
        return report
    try:
        resource = json.loads(message.fhir_risk_assessment_json)
    except ValueError as exc:
        raise ValueError(f"fhir_risk_assessment_json is not JSON: {exc}") from None
    if not isinstance(resource, dict):
        raise ValueError("fhir_risk_assessment_json is not a JSON object")
    return report.model_copy(update={"fhir_risk_assessment": canonical_risk_assessment(resource)})


def model_card_to_proto(card: ModelCard, *, sha256: str) -> model_card_pb2.ModelCard:
    """The card on the wire, with the sha256 of the manifest.json it was read from."""
    message = to_proto(card, model_card_pb2.ModelCard())
    message.sha256 = sha256
    return message


def model_card_from_proto(message: model_card_pb2.ModelCard) -> ModelCard:
    return from_proto(message, ModelCard, wire_only=("sha256",))
