"""The committed gRPC stubs are exactly what `make protos` generates from protos/."""

from __future__ import annotations

from pathlib import Path

from server.proto_codegen import GENERATED_ROOT, generate, proto_files


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    fresh = generate(tmp_path / "generated")
    fresh_rel = {p.relative_to(tmp_path / "generated") for p in fresh}
    committed_rel = {
        p.relative_to(GENERATED_ROOT) for p in GENERATED_ROOT.rglob("*.py*") if "__pycache__" not in p.parts
    }
    assert fresh_rel == committed_rel, "stale stubs (files differ): run `make protos`"
    for rel in sorted(fresh_rel):
        assert (GENERATED_ROOT / rel).read_text() == (tmp_path / "generated" / rel).read_text(), (
            f"stale stub {rel}: run `make protos`"
        )


def test_contract_defines_the_v1_service() -> None:
    from server.generated.osteorisk.v1 import fracture_risk_service_pb2

    service = fracture_risk_service_pb2.DESCRIPTOR.services_by_name["FractureRiskService"]
    assert service.full_name == "osteorisk.v1.FractureRiskService"
    assert {m.name for m in service.methods} == {
        "Assess",
        "AssessStream",
        "ExtractBoneFeatures",
        "GetModelInfo",
    }
    stream = service.methods_by_name["AssessStream"]
    assert stream.client_streaming and stream.server_streaming
    assert [p.name for p in proto_files()] == [
        "bone_features.proto",
        "clinical_record.proto",
        "fracture_risk_service.proto",
        "model_card.proto",
        "risk_report.proto",
    ]


def test_every_message_field_is_documented() -> None:
    """Each field of the public contract carries a comment (units, ranges, required or optional)."""
    undocumented = []
    for proto in proto_files():
        lines = (Path("protos") / proto).read_text().splitlines()
        for i, line in enumerate(lines):
            stripped = line.strip()
            is_field = (
                "=" in stripped and stripped.endswith(";") and not stripped.startswith(("option ", "//", "syntax"))
            )
            if not is_field or stripped.split()[0].isupper():  # enum values document themselves by name
                continue
            if "//" in line:
                continue
            if not lines[i - 1].strip().startswith("//"):
                undocumented.append(f"{proto}:{i + 1}: {stripped}")
    assert not undocumented, "\n".join(undocumented)
