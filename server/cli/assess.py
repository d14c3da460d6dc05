"""`osteorisk assess`: one patient's diagnosis, screening flags and fracture risk (RiskReport).

In-process by default (the bundled model, or --model); with --server HOST:PORT the same request goes over
gRPC to a running service and the same JSON comes back. Clinical input: --fhir SOURCE [--patient ID] (a
Bundle file, a Bulk Data directory or a FHIR base URL), --patient ID alone (with --server: a patient on the
server's FHIR source), or inline variables (--var NAME=VALUE ..., --variables FILE.json). Imaging input:
--ct PATH [--labels LABELMAP] or --features FILE.json (BoneFeatures), or --study-uid [--series-uid] (with
--server: a study on the server's PACS).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clinical.types import ClinicalVariables, Variable
from fusion.artifacts import load_model
from fusion.bundled import default_model_dir
from fusion.types import DEFAULT_HORIZONS_YEARS, OUTCOMES
from imaging.types import BoneFeatures
from server.assessment import (
    AssessmentRequest,
    ClinicalInput,
    FhirPatientRef,
    ImagingInput,
    InlineVariables,
    LocalCt,
    LocalFhir,
    PacsSeriesRef,
    PrecomputedFeatures,
    Runtime,
    assess,
    parse_index_date,
)
from server.cli.arguments import horizon_years
from server.client import ClientOptions, assess_remote
from server.errors import RequestError
from server.report_text import render_report
from server.wire import to_wire


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "assess",
        help="assess one patient (RiskReport)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    clinical = parser.add_argument_group("clinical input")
    clinical.add_argument("--fhir", metavar="SOURCE", help="FHIR Bundle file, Bulk Data directory or base URL")
    clinical.add_argument("--patient", metavar="ID", default="", help="Patient logical id")
    clinical.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an inline clinical variable, e.g. age_years=72, sex=female, glucocorticoids=true",
    )
    clinical.add_argument("--variables", type=Path, metavar="FILE", help="ClinicalRecord or variables JSON")
    imaging = parser.add_argument_group("imaging input")
    imaging.add_argument("--ct", type=Path, metavar="PATH", help="DICOM folder or file, or NIfTI")
    imaging.add_argument("--labels", type=Path, metavar="LABELMAP", help="vertebra label map in the CT's geometry")
    imaging.add_argument("--label-convention", default="totalsegmentator", choices=("totalsegmentator", "verse"))
    imaging.add_argument("--backend", help="segmentation backend (builtin, labels, monai, totalsegmentator)")
    imaging.add_argument("--features", type=Path, metavar="FILE", help="BoneFeatures JSON computed earlier")
    imaging.add_argument("--study-uid", help="with --server: a study on the server's PACS")
    imaging.add_argument("--series-uid", default="", help="with --study-uid: the series (default: server chooses)")
    parser.add_argument("--index-date", help="YYYY-MM-DD (default: the CT study date, else today)")
    parser.add_argument("--outcome", action="append", choices=OUTCOMES, help="default: both")
    parser.add_argument(
        "--horizons", type=horizon_years, nargs="+", metavar="YEARS", help="years, 1-10 (default: 1 2 5 10)"
    )
    parser.add_argument("--model", type=Path, help="model directory (in-process; default: the bundled model)")
    parser.add_argument("--json", action="store_true", help="print the RiskReport JSON")
    remote = parser.add_argument_group("remote service")
    remote.add_argument("--server", metavar="HOST:PORT", help="send the request to a running osteorisk service")
    remote.add_argument("--tls-ca", type=Path, help="CA certificate to verify the server (enables TLS)")
    remote.add_argument("--tls-cert", type=Path, help="client certificate (mutual TLS)")
    remote.add_argument("--tls-key", type=Path, help="client private key (mutual TLS)")
    remote.add_argument("--token-file", type=Path, help="bearer token file (default: $OSTEORISK_TOKEN)")
    remote.add_argument("--timeout", type=float, default=120.0, help="seconds (the RPC deadline)")
    parser.set_defaults(func=run)


def _parse_value(text: str) -> bool | float | str:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _inline_variables(args: argparse.Namespace) -> ClinicalVariables | None:
    values: dict[str, Any] = {}
    if args.variables is not None:
        data = json.loads(args.variables.read_text())
        variables = data.get("variables", data) if isinstance(data, dict) else None
        if not isinstance(variables, dict):
            raise RequestError("--variables", "INVALID", f"{args.variables} holds no variables object")
        values.update(
            {k: (v if isinstance(v, dict) else {"value": v, "status": "observed"}) for k, v in variables.items()}
        )
    for item in args.var:
        name, sep, raw = item.partition("=")
        if not sep:
            raise RequestError("--var", "INVALID", f"--var needs NAME=VALUE, got {item!r}")
        if name not in ClinicalVariables.names():
            raise RequestError(
                "--var", "UNKNOWN_VARIABLE", f"unknown variable {name!r}; known: {', '.join(ClinicalVariables.names())}"
            )
        values[name] = Variable(value=_parse_value(raw), status="observed").model_dump()
    if not values:
        return None
    return ClinicalVariables.model_validate(values)


def build_request(args: argparse.Namespace) -> AssessmentRequest:
    variables = _inline_variables(args)
    clinical: ClinicalInput
    if args.fhir and variables is not None:
        raise RequestError("--fhir", "CONFLICT", "give either --fhir or inline variables, not both")
    if args.fhir:
        clinical = LocalFhir(args.fhir, args.patient)
    elif variables is not None:
        clinical = InlineVariables(variables)
    elif args.patient and args.server:
        clinical = FhirPatientRef(args.patient)
    else:
        raise RequestError(
            "--fhir",
            "REQUIRED",
            "a clinical input is needed: --fhir SOURCE, --var/--variables, or --patient with --server",
        )
    imaging: ImagingInput | None = None
    chosen = [name for name in ("ct", "features", "study_uid") if getattr(args, name)]
    if len(chosen) > 1:
        raise RequestError("--ct", "CONFLICT", "give one imaging input: --ct, --features or --study-uid")
    if args.ct:
        imaging = LocalCt(args.ct, args.labels, args.label_convention)
    elif args.features:
        imaging = PrecomputedFeatures(BoneFeatures.model_validate_json(args.features.read_text()))
    elif args.study_uid:
        imaging = PacsSeriesRef(args.study_uid, args.series_uid)
    return AssessmentRequest(
        clinical=clinical,
        imaging=imaging,
        patient_id=args.patient,
        index_date=parse_index_date(args.index_date or "", "--index-date"),
        outcomes=tuple(args.outcome or OUTCOMES),
        horizons_years=tuple(args.horizons or DEFAULT_HORIZONS_YEARS),
        segmentation_backend=args.backend,
    )


def run(args: argparse.Namespace) -> int:
    request = build_request(args)
    if args.server:
        options = ClientOptions(
            target=args.server,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            token=ClientOptions.token_from(args.token_file),
            timeout_s=args.timeout,
        )
        report = assess_remote(options, to_wire(request))
    else:
        if isinstance(request.imaging, PacsSeriesRef) or isinstance(request.clinical, FhirPatientRef):
            raise RequestError("--server", "REQUIRED", "--study-uid and --patient alone need --server")
        runtime = Runtime(model=load_model(args.model or default_model_dir()), allow_local_inputs=True)
        report = assess(runtime, request)
    print(report.model_dump_json(indent=2) if args.json else render_report(report))
    return 0
