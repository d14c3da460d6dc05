"""Model artifacts: a model is a directory, loaded only after every file's sha256 is verified.

    MODEL_DIR/
      manifest.json      the ModelCard: id, version, created, features with units, training-data sha256,
                         metrics, intended use, references, and the sha256 of every other file
      model.json         the fitted parameters (JSON: linear models, Cox coefficients, baseline hazards,
                         bootstrap replicates, calibration maps, model terms)
      *.safetensors      arrays of tree ensembles and torch networks (safetensors: no code, no pickle)

`load_model(path)` reads `manifest.json`, hashes every file of the directory FIRST and refuses
(`ModelArtifactError`) a file whose hash differs, a file the manifest does not list, a listed file that is
missing or a name with a path in it; only then are the files parsed (JSON and safetensors: nothing is
ever unpickled or evaluated). `LoadedModel.sha256` is the sha256 of manifest.json, which pins every file.

Reproducibility: training is seeded and every float is written at 12 significant digits, so rebuilding
from the same data, code and seed gives byte-identical files and the same hash. The card's `created` is
therefore not the wall clock: it is `SOURCE_DATE_EPOCH` when set (the reproducible-builds convention),
else the Unix epoch, meaning "built reproducibly, no build time recorded".
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import ValidationError
from threadpoolctl import threadpool_limits

from fusion.design import Design, parse_term_labels
from fusion.errors import ModelArtifactError, ModelInputError
from fusion.features import frame_features
from fusion.imputation import ConditionalMeans, InputPlan
from fusion.models.calibration import CalibratedClassifier
from fusion.types import OUTCOMES, ModelCard, Outcome

FloatArray = npt.NDArray[np.float64]
MODEL_FORMAT = "osteorisk.model/1"
MANIFEST = "manifest.json"
MODEL_JSON = "model.json"
OUTCOME_PREFIX: dict[Outcome, str] = {"major_osteoporotic_fracture": "mof", "hip_fracture": "hip"}
MAX_FILE_BYTES = 512 * 1024 * 1024
_CHUNK_ROWS = 16_384


class SurvivalEstimator(Protocol):
    """What every competing-risks model offers (Cox, forest, network)."""

    def predict_cumulative_incidence(self, X: npt.ArrayLike, horizons: npt.ArrayLike) -> FloatArray: ...

    def predict_interval(
        self, X: npt.ArrayLike, horizons: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray, FloatArray]: ...

    def to_artifact(self) -> tuple[dict[str, Any], dict[str, FloatArray]]: ...


def created_timestamp() -> datetime:
    """The card's `created`: SOURCE_DATE_EPOCH when set, else the Unix epoch (see the module docstring)."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        seconds = int(raw)
    except ValueError:
        raise ModelArtifactError(f"SOURCE_DATE_EPOCH must be an integer, got {raw!r}") from None
    return datetime.fromtimestamp(seconds, tz=UTC)


def horizon_label(h: float) -> str:
    """1.0 -> '1', 2.5 -> '2.5' (column names such as risk_mof_10y)."""
    return f"{int(h)}" if float(h).is_integer() else f"{h:g}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_SURVIVAL_KINDS: dict[str, tuple[str, str]] = {
    "cox": ("fusion.models.cox", "CauseSpecificCox"),
    "forest": ("fusion.models.forest", "CauseSpecificForest"),
    "net": ("fusion.models.net", "DeepHitNet"),
}


def _survival_class(kind: str) -> Any:
    """The estimator class of a survival model kind (imported on first use)."""
    import importlib

    entry = _SURVIVAL_KINDS.get(kind)
    if entry is None:
        raise ModelArtifactError(f"{MODEL_JSON}: unknown survival model kind {kind!r}")
    return getattr(importlib.import_module(entry[0]), entry[1])


@dataclass(frozen=True)
class DiagnosisComponent:
    """The calibrated osteoporosis classifier shipped with a risk model (its own inputs and terms)."""

    plan: InputPlan
    design: Design
    classifier: CalibratedClassifier

    def probabilities(self, values: Mapping[str, float | None]) -> tuple[dict[str, float], list[tuple[str, float]]]:
        """Class probabilities of one patient, and the imputed inputs with the values used."""
        x, imputed = self.plan.row(values)
        probs = self.classifier.predict_proba(self.design.transform(x[None, :]))[0]
        classes = [str(c) for c in self.classifier.classes_]
        used = [(self.plan.names[j], float(x[j])) for j in imputed]
        return {c: float(p) for c, p in zip(classes, probs, strict=True)}, used


@dataclass(frozen=True)
class PatientRisk:
    """One patient's risks: per outcome (estimate, lo, hi) arrays over the horizons, and what was imputed."""

    horizons: FloatArray
    risks: dict[Outcome, tuple[FloatArray, FloatArray, FloatArray]]
    x: FloatArray  # raw inputs after imputation
    terms: FloatArray  # model terms (1, q)
    imputed: list[str]


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A verified model directory, ready to score: `card`, `sha256` (of manifest.json), `predict_frame`."""

    path: Path
    card: ModelCard
    sha256: str
    plan: InputPlan
    design: Design
    survival: Mapping[Outcome, SurvivalEstimator]
    classifier: CalibratedClassifier | None = None
    diagnosis: DiagnosisComponent | None = None

    @property
    def outcomes(self) -> tuple[Outcome, ...]:
        return tuple(self.survival)

    def _check_horizons(self, horizons: Sequence[float]) -> FloatArray:
        h = np.asarray(horizons, dtype=np.float64)
        lo, hi = self.card.min_horizon_years, self.card.max_horizon_years
        if h.ndim != 1 or h.size == 0 or not np.all(np.isfinite(h)) or (h < lo).any() or (h > hi).any():
            raise ModelInputError(f"horizons {list(horizons)} must lie in [{lo:g}, {hi:g}] years", reason="BAD_HORIZON")
        return h

    # ---- one patient (no pandas: microseconds) ---------------------------------------------------

    def predict_patient(self, values: Mapping[str, float | None], horizons: Sequence[float]) -> PatientRisk:
        """Risks of one patient from canonical feature values (None = missing)."""
        h = self._check_horizons(horizons)
        x, imputed = self.plan.row(values)
        terms = self.design.transform(x[None, :])
        risks = {outcome: tuple(a[0] for a in est.predict_interval(terms, h)) for outcome, est in self.survival.items()}
        return PatientRisk(
            horizons=h,
            risks=cast(dict[Outcome, tuple[FloatArray, FloatArray, FloatArray]], risks),
            x=x,
            terms=terms,
            imputed=[self.plan.names[j] for j in imputed],
        )

    # ---- a cohort ----------------------------------------------------------------------------------

    def predict_frame(
        self,
        df: pd.DataFrame,
        horizons: Sequence[float] = (1, 2, 5, 10),
        *,
        skip_invalid: bool = False,
        workers: int | None = None,
    ) -> pd.DataFrame:
        """Score a cohort table.

        Survival models: `patient_id`, then per outcome and horizon `risk_mof_{h}y`, `risk_mof_{h}y_lo`,
        `risk_mof_{h}y_hi` (and `risk_hip_...`): cumulative incidence with death competing and its 95%
        interval. Classifiers: `probability` (of the positive class; `_lo`/`_hi` Wald interval when
        uncalibrated) or `p_<class>` for several classes. Always a `warnings` column naming imputed inputs.

        A row with a required input missing or a value out of range raises `ModelInputError`; with
        `skip_invalid=True` it gets NaN risks and the reason in `warnings` instead.
        """
        raw = frame_features(df, self.plan.names)
        x, imputed, reasons = self.plan.matrix(raw)
        refused = np.array([r is not None for r in reasons], dtype=bool)
        if refused.any() and not skip_invalid:
            first = int(np.flatnonzero(refused)[0])
            raise ModelInputError(
                f"{int(refused.sum())} of {len(df)} rows cannot be scored (e.g. row {first}: {reasons[first]}); "
                "fix them or score with skip_invalid / --skip-invalid",
                reason="INVALID_ROWS",
            )
        out: dict[str, Any] = {}
        out["patient_id"] = (
            df["patient_id"].astype(str).to_numpy() if "patient_id" in df.columns else np.arange(len(df)).astype(str)
        )
        valid = np.flatnonzero(~refused)
        terms = self.design.transform(x[valid])
        if self.classifier is not None:
            self._classifier_columns(out, terms, valid, len(df))
        else:
            h = self._check_horizons(horizons)
            for outcome, est in self.survival.items():
                cols = _score_chunks(est, terms, h, workers)
                prefix = OUTCOME_PREFIX[outcome]
                for k, hz in enumerate(h):
                    name = f"risk_{prefix}_{horizon_label(float(hz))}y"
                    for suffix, arr in zip(("", "_lo", "_hi"), cols, strict=True):
                        column = np.full(len(df), np.nan)
                        column[valid] = arr[:, k]
                        out[name + suffix] = column
        out["warnings"] = _warning_strings(self.plan.names, imputed, reasons)
        return pd.DataFrame(out, index=df.index)

    def _classifier_columns(self, out: dict[str, Any], terms: FloatArray, valid: npt.NDArray[np.intp], n: int) -> None:
        assert self.classifier is not None
        probs = self.classifier.predict_proba(terms) if terms.shape[0] else np.zeros((0, self.classifier.classes_.size))
        classes = [str(c) for c in self.classifier.classes_]
        if len(classes) == 2:
            column = np.full(n, np.nan)
            column[valid] = probs[:, 1]
            out["probability"] = column
            if self.classifier.method == "none" and terms.shape[0]:
                lo, hi = self.classifier.base_.wald_interval(terms)
                for suffix, arr in (("_lo", lo), ("_hi", hi)):
                    column = np.full(n, np.nan)
                    column[valid] = arr
                    out["probability" + suffix] = column
        else:
            for k, name in enumerate(classes):
                column = np.full(n, np.nan)
                column[valid] = probs[:, k]
                out[f"p_{name}"] = column


def _score_chunks(
    est: SurvivalEstimator, terms: FloatArray, horizons: FloatArray, workers: int | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    n = terms.shape[0]
    if n <= _CHUNK_ROWS:
        return est.predict_interval(terms, horizons)
    bounds = [(i, min(i + _CHUNK_ROWS, n)) for i in range(0, n, _CHUNK_ROWS)]
    parts: list[tuple[FloatArray, FloatArray, FloatArray]]
    # The chunks run in parallel threads: one BLAS thread each (nested thread pools oversubscribe the CPUs).
    with (
        threadpool_limits(limits=1, user_api="blas"),
        ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool,
    ):
        parts = list(pool.map(lambda b: est.predict_interval(terms[b[0] : b[1]], horizons), bounds))
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def _warning_strings(
    names: Sequence[str], imputed: npt.NDArray[np.bool_], reasons: Sequence[str | None]
) -> npt.NDArray[np.object_]:
    """'imputed: a, b' per row (vectorised over distinct missingness patterns); refusals win."""
    n, p = imputed.shape
    texts = np.full(n, "", dtype=object)
    if p and imputed.any():
        if p <= 62:  # one int64 code per missingness pattern: a 1-D unique is fast
            codes = imputed.astype(np.int64) @ (np.int64(1) << np.arange(p, dtype=np.int64))
            _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
            patterns = imputed[first]
        else:
            patterns, inverse = np.unique(imputed, axis=0, return_inverse=True)
        labels: list[str] = [
            "" if not row.any() else "imputed: " + ", ".join(names[int(j)] for j in np.flatnonzero(row))
            for row in patterns
        ]
        texts = np.empty(len(labels), dtype=object)
        texts[:] = labels
        texts = texts[inverse.reshape(-1)]
    for i, reason in enumerate(reasons):
        if reason is not None:
            texts[i] = "refused: " + reason
    return texts


# ---- writing ------------------------------------------------------------------------------------


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def write_model_dir(out_dir: Path, card: ModelCard, files: Mapping[str, bytes]) -> Path:
    """Write `files` and a manifest listing their sha256, atomically replacing an older model directory.

    Refuses to overwrite a non-empty directory that is not a model directory."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ModelArtifactError(f"{out_dir} exists and is not a directory")
        if any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
            raise ModelArtifactError(f"{out_dir} is a non-empty directory without {MANIFEST}: refusing to overwrite it")
    for name in files:
        if name == MANIFEST or "/" in name or "\\" in name or name.startswith("."):
            raise ModelArtifactError(f"invalid model file name {name!r}")
    hashes = {name: hashlib.sha256(content).hexdigest() for name, content in sorted(files.items())}
    final = card.model_copy(update={"files": hashes})
    manifest = _json_bytes(final.model_dump(mode="json", by_alias=True))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)
    try:
        for name, content in files.items():
            (staging / name).write_bytes(content)
        (staging / MANIFEST).write_bytes(manifest)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
            staging.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def model_files(
    *,
    kind: str,
    plan: InputPlan,
    design: Design,
    survival: Mapping[Outcome, SurvivalEstimator] | None = None,
    classifier: CalibratedClassifier | None = None,
    diagnosis: DiagnosisComponent | None = None,
    target: str | None = None,
) -> dict[str, bytes]:
    """The file contents of a model directory (without the manifest)."""
    from safetensors.numpy import save

    body: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "kind": kind,
        "inputs": list(design.inputs),
        "terms": list(design.labels),
        "target": target,
        "outcomes": {},
    }
    if plan.conditional is not None:
        body["imputation"] = plan.conditional.to_json()
    files: dict[str, bytes] = {}
    for outcome, est in (survival or {}).items():
        meta, arrays = est.to_artifact()
        entry: dict[str, Any] = {"model": meta}
        if arrays:
            name = f"{OUTCOME_PREFIX[outcome]}.safetensors"
            files[name] = save({k: np.ascontiguousarray(v) for k, v in sorted(arrays.items())})
            entry["arrays"] = name
        body["outcomes"][outcome] = entry
    if classifier is not None:
        body["classifier"] = classifier.to_json()
    if diagnosis is not None:
        body["diagnosis"] = {
            "inputs": list(diagnosis.design.inputs),
            "terms": list(diagnosis.design.labels),
            "imputation": diagnosis.plan.conditional.to_json() if diagnosis.plan.conditional else None,
            "classifier": diagnosis.classifier.to_json(),
        }
    files[MODEL_JSON] = _json_bytes(body)
    return files


# ---- loading ------------------------------------------------------------------------------------


def _verify(path: Path) -> tuple[ModelCard, str]:
    if not path.exists():
        raise ModelArtifactError(f"model directory not found: {path}", reason="MODEL_NOT_FOUND")
    if not path.is_dir():
        raise ModelArtifactError(f"{path} is not a model directory (expected a folder with {MANIFEST})")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ModelArtifactError(f"{path} has no {MANIFEST}: not a model directory")
    manifest_bytes = manifest_path.read_bytes()
    try:
        card = ModelCard.model_validate_json(manifest_bytes)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelArtifactError(f"{MANIFEST} is not a valid model card: {where}: {first['msg']}") from None
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() or p.is_symlink()}
    present.discard(MANIFEST)
    unlisted = sorted(present - set(card.files))
    if unlisted:
        raise ModelArtifactError(f"files not listed in the manifest: {', '.join(unlisted)}; refusing to load")
    for name, expected in sorted(card.files.items()):
        if name == MANIFEST or "/" in name or "\\" in name or name.startswith("."):
            raise ModelArtifactError(f"manifest lists an invalid file name {name!r}")
        file = path / name
        if file.is_symlink() or not file.is_file():
            raise ModelArtifactError(f"{name} is listed in the manifest but missing (or not a regular file)")
        if file.stat().st_size > MAX_FILE_BYTES:
            raise ModelArtifactError(f"{name} is larger than {MAX_FILE_BYTES} bytes")
        actual = sha256_file(file)
        if actual != expected:
            raise ModelArtifactError(
                f"{name}: sha256 {actual[:16]}... does not match the manifest ({expected[:16]}...): the file was "
                "modified or corrupted; refusing to load",
                reason="HASH_MISMATCH",
            )
    return card, hashlib.sha256(manifest_bytes).hexdigest()


def _design(inputs: Sequence[str], terms: Sequence[str]) -> Design:
    return Design(inputs=tuple(inputs), terms=tuple(parse_term_labels(list(terms))))


def load_model(path: str | Path) -> LoadedModel:
    """Verify every file's sha256 against the manifest, then parse the model (JSON and safetensors only)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    card, digest = _verify(path)
    if MODEL_JSON not in card.files:
        raise ModelArtifactError(f"the manifest does not list {MODEL_JSON}")
    try:
        body = json.loads((path / MODEL_JSON).read_text(encoding="utf-8"))
        if body.get("format") != MODEL_FORMAT:
            raise ModelArtifactError(f"{MODEL_JSON}: unknown format {body.get('format')!r} (expected {MODEL_FORMAT})")
        design = _design(body["inputs"], body["terms"])
        if [s.name for s in card.features] != list(design.inputs):
            raise ModelArtifactError("the manifest's features differ from the model's inputs")
        conditional = (
            ConditionalMeans.from_json(body["imputation"], len(card.features)) if body.get("imputation") else None
        )
        plan = InputPlan.from_specs(card.features, conditional)
        survival: dict[Outcome, SurvivalEstimator] = {}
        stored = body.get("outcomes", {})
        unknown = sorted(set(stored) - set(OUTCOMES))
        if unknown:
            raise ModelArtifactError(f"{MODEL_JSON}: unknown outcomes {unknown}")
        for outcome in (o for o in OUTCOMES if o in stored):
            entry = stored[outcome]
            cls = _survival_class(body["kind"])
            arrays = load_file(str(path / entry["arrays"])) if "arrays" in entry else {}
            survival[cast(Outcome, outcome)] = cls.from_artifact(entry["model"], arrays)
        classifier = CalibratedClassifier.from_json(body["classifier"]) if body.get("classifier") else None
        diagnosis = None
        if body.get("diagnosis"):
            d = body["diagnosis"]
            d_imputation = d.get("imputation")
            diagnosis = DiagnosisComponent(
                plan=InputPlan.from_specs(
                    card.diagnosis_features,
                    ConditionalMeans.from_json(d_imputation, len(card.diagnosis_features)) if d_imputation else None,
                ),
                design=_design(d["inputs"], d["terms"]),
                classifier=CalibratedClassifier.from_json(d["classifier"]),
            )
            if list(diagnosis.plan.names) != list(diagnosis.design.inputs):
                raise ModelArtifactError("the manifest's diagnosis_features differ from the classifier's inputs")
    except (KeyError, TypeError, ValueError, SafetensorError, ModelInputError) as exc:
        raise ModelArtifactError(f"malformed model directory {path.name}: {type(exc).__name__}: {exc}") from exc
    if not survival and classifier is None:
        raise ModelArtifactError(f"{MODEL_JSON} holds neither a survival model nor a classifier")
    return LoadedModel(
        path=path,
        card=card,
        sha256=digest,
        plan=plan,
        design=design,
        survival=survival,
        classifier=classifier,
        diagnosis=diagnosis,
    )
