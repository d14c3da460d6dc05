"""Export the JSON Schemas of the public JSON contracts (DESIGN.md) into `server/json_schemas/`.

Run with `make schemas`; `tests/test_domain_types.py` fails when the committed files are stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from clinical.types import ClinicalRecord
from fusion.types import ModelCard, RiskReport
from imaging.types import BoneFeatures

SCHEMA_DIR = Path(__file__).resolve().parent / "json_schemas"

CONTRACTS: dict[str, type[BaseModel]] = {
    "bone_features": BoneFeatures,
    "clinical": ClinicalRecord,
    "risk_report": RiskReport,
    "model_card": ModelCard,
}


def schema_text(model: type[BaseModel]) -> str:
    """The model's JSON Schema (serialisation mode: what the CLI and server write), as stable text."""
    return json.dumps(model.model_json_schema(mode="serialization", by_alias=True), indent=2, sort_keys=True) + "\n"


def export(out_dir: Path = SCHEMA_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in CONTRACTS.items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(schema_text(model))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SCHEMA_DIR)
    args = parser.parse_args(argv)
    for path in export(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
