"""Batch scoring of whole cohorts: chunked, bounded in memory, resumable, on local processes or Dask.

    >>> summary = score_cohort("cohort.parquet", "scores.parquet", model_dir="models/default", workers=2)

Input: a cohort table (Parquet file, folder of Parquet files, CSV/TSV; canonical columns, see
`fusion.cohort_table`), or a FHIR Bulk Data export folder, optionally joined with a CT features table
(`fusion.cohort.sources`). Each chunk of `chunk_rows` rows is validated (`validate_cohort`), scored by
the model (`LoadedModel.predict_frame`, invalid rows refused one by one, not the whole chunk), diagnosed
and flagged (`fusion.cohort.flags`) in a worker, and written as one part of the work directory
(`fusion.cohort.workdir`). The output is assembled from the parts in input order. Columns:

- the input's columns (all of them by default; `keep_columns` chooses), `patient_id` first;
- `risk_mof_{h}y`, `risk_mof_{h}y_lo`, `risk_mof_{h}y_hi`, `risk_hip_{h}y`... for each horizon: cumulative
  incidence with death as a competing risk and its 95% interval (NaN for refused rows);
- `diagnosis_category`, `diagnosis_method`, `diagnosis_p_<class>` (see `fusion.cohort.flags`);
- `flags` (codes joined by ";") and one boolean `flag_<CODE>` per screening flag;
- `imputed_inputs` (how many model inputs were missing and imputed), `warnings` ("imputed: a, b",
  "refused: <reason>", and for a FHIR export the record's warnings), `status`: "scored", "refused" (an
  input out of range or a required input missing) or "no_record" (a FHIR export patient whose record
  could not be built, e.g. deceased before the index date).

The Parquet file's key-value metadata `osteorisk.cohort_scores` holds the model card (id, version,
sha256, trained_on, intended use), the horizons, the thresholds version and the input's name.

Resuming: the work directory (`OUT.work/` unless `work_dir` says otherwise) keeps one part per finished
chunk and a manifest with the input's fingerprint, the model's sha256 and the options; a rerun after an
interruption scores only the missing chunks, and refuses (unless `restart=True`) when the input, the
model or the options changed. Test hook: when the environment variable `OSTEORISK_COHORT_CRASH_AFTER_PARTS`
is N, the process ends abruptly (`os._exit(75)`, no clean-up, lock left behind) right after writing its
N-th part (`fusion.cohort.workdir.crash_after`); the resume tests use it to interrupt a real run.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa

from fusion.artifacts import LoadedModel, horizon_label, load_model
from fusion.cohort.engines import DaskEngine, LocalEngine, WorkerDiedError, make_engine
from fusion.cohort.flags import diagnosis_frame, flag_codes, screening_flag_frame
from fusion.cohort.sources import (
    RECORD_ERROR,
    Chunk,
    CsvInput,
    FeaturesTable,
    ParquetInput,
    input_kind,
    open_table_input,
    stage_bulk_export,
)
from fusion.cohort.workdir import (
    CRASH_EXIT_CODE,
    WorkDir,
    assemble_parts,
    crash_after,
    default_work_dir,
    fingerprint,
    write_part_file,
)
from fusion.cohort_table import validate_cohort
from fusion.errors import CohortError, ModelArtifactError, ModelInputError
from fusion.features import frame_features
from fusion.rules import thresholds
from fusion.types import DEFAULT_HORIZONS_YEARS, OUTCOMES

log = logging.getLogger(__name__)

WORK_FORMAT: Final = "osteorisk.cohort_score_work/1"
METADATA_KEY: Final = b"osteorisk.cohort_scores"
SCORES_FORMAT: Final = "osteorisk.cohort_scores/1"
DEFAULT_CHUNK_ROWS: Final = 65_536
STAGED_NAME: Final = "staged-cohort.parquet"
_ID_COLUMNS: Final = ("patient_id", "index_date")
_PREDICT_BATCH_ROWS: Final = 8_192


@dataclass(frozen=True)
class ScoreJob:
    """What a worker needs to score a chunk (small, sent with every chunk)."""

    model_dir: str
    model_sha256: str
    horizons: tuple[float, ...]
    keep_columns: tuple[str, ...] | None  # None: every input column
    part_dir: str | None = None  # set when workers share the client's filesystem: they write their parts


@dataclass(frozen=True)
class ChunkTask:
    job: ScoreJob
    chunk: Chunk


@dataclass(frozen=True)
class ScoredChunk:
    index: int
    table: pa.Table | None  # None when the worker wrote the part itself
    rows: int
    refused: int


@dataclass
class ScoreSummary:
    """What a scoring run did (PHI-free: counts, times, paths)."""

    output: Path
    rows: int = 0
    scored: int = 0
    refused: int = 0
    no_record: int = 0
    chunks: int = 0
    chunks_resumed: int = 0
    seconds: float = 0.0
    engine: str = "local"
    workers: int = 1
    model_id: str = ""
    model_sha256: str = ""
    flags: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["output"] = str(self.output)
        return out


# --- the worker side --------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _model(model_dir: str, sha256: str) -> LoadedModel:
    """The model, loaded (hash-verified) once per worker process and checked against the client's."""
    model = load_model(model_dir)
    if model.sha256 != sha256:
        import socket

        raise ModelArtifactError(
            f"the model at {model_dir} on worker {socket.gethostname()} differs from the client's (sha256 "
            f"{model.sha256[:12]}... instead of {sha256[:12]}...): every worker needs the same model directory",
            reason="MODEL_MISMATCH",
        )
    return model


def _risk_columns(horizons: Sequence[float]) -> list[str]:
    names = []
    for prefix in ("mof", "hip"):
        for h in horizons:
            base = f"risk_{prefix}_{horizon_label(float(h))}y"
            names += [base, f"{base}_lo", f"{base}_hi"]
    return names


def _predict(model: LoadedModel, table: pd.DataFrame, horizons: Sequence[float]) -> pd.DataFrame:
    """`predict_frame` in cache-sized batches (the bootstrap replicates make each row's work large)."""
    if len(table) <= _PREDICT_BATCH_ROWS:
        return model.predict_frame(table, horizons, skip_invalid=True, workers=1)
    parts = [
        model.predict_frame(table.iloc[i : i + _PREDICT_BATCH_ROWS], horizons, skip_invalid=True, workers=1)
        for i in range(0, len(table), _PREDICT_BATCH_ROWS)
    ]
    return pd.concat(parts)


def score_chunk(task: ChunkTask) -> ScoredChunk:
    """Validate, score, diagnose and flag one chunk (runs in a worker; see the module docstring)."""
    job, chunk = task.job, task.chunk
    frame = chunk.frame.reset_index(drop=True)
    try:
        table = validate_cohort(frame, require="features")
    except CohortError as exc:
        raise CohortError(
            f"input rows {chunk.start}-{chunk.start + len(frame) - 1} (chunk {chunk.index}; row numbers below count "
            f"from the chunk's first row): {exc}",
            reason=exc.reason,
        ) from exc
    model = _model(job.model_dir, job.model_sha256)
    treatment = thresholds().treatment_horizon_years
    extra = () if treatment in job.horizons else (treatment,)
    if not (model.card.min_horizon_years <= treatment <= model.card.max_horizon_years):
        extra = ()
    no_record = (
        table[RECORD_ERROR].notna().to_numpy() if RECORD_ERROR in table.columns else np.zeros(len(table), dtype=bool)
    )
    predictions = _predict(model, table, (*job.horizons, *extra))
    if no_record.any():
        risk = [c for c in predictions.columns if c.startswith("risk_")]
        predictions.loc[no_record, risk] = np.nan
    refused = predictions["warnings"].astype(str).str.startswith("refused:").to_numpy() & ~no_record
    ten = horizon_label(treatment)
    mof = predictions.get(f"risk_mof_{ten}y")
    hip = predictions.get(f"risk_hip_{ten}y")
    flags = screening_flag_frame(
        table,
        risk_mof_10y=None if mof is None else mof.to_numpy(),
        risk_hip_10y=None if hip is None else hip.to_numpy(),
    )
    diagnosis = diagnosis_frame(model, table)
    raw = frame_features(table, list(model.plan.names))
    imputed = np.isnan(raw).sum(axis=1).astype(np.int16)
    imputed[refused | no_record] = 0
    warnings = predictions["warnings"].astype(str).to_numpy(dtype=object)
    if "source_warnings" in table.columns:
        warnings = _join_text(warnings, table["source_warnings"].fillna("").astype(str).to_numpy(dtype=object))
    if no_record.any():
        warnings[no_record] = "no record: " + table.loc[no_record, RECORD_ERROR].astype(str).to_numpy(dtype=object)
    status = np.where(no_record, "no_record", np.where(refused, "refused", "scored"))

    out: dict[str, Any] = {c: table[c] for c in _ID_COLUMNS if c in table.columns}
    for name in _risk_columns(job.horizons):
        if name in predictions.columns:
            out[name] = predictions[name].to_numpy()
    for name in diagnosis.columns:
        out[name] = diagnosis[name].to_numpy() if name.startswith("diagnosis_p_") else diagnosis[name]
    out["flags"] = flags["flags"].to_numpy()
    for code in flag_codes():
        out[f"flag_{code}"] = flags[f"flag_{code}"].to_numpy()
    out["imputed_inputs"] = imputed
    out["warnings"] = warnings
    out["status"] = pd.Categorical(status, categories=["scored", "refused", "no_record"])
    carried = [c for c in table.columns if c not in out and c not in (RECORD_ERROR, "source_warnings")]
    if job.keep_columns is not None:
        carried = [c for c in carried if c in job.keep_columns]
    result = pd.DataFrame(out)
    result = pd.concat([result, table[carried]], axis=1) if carried else result
    arrow = pa.Table.from_pandas(result, preserve_index=False)
    if job.part_dir is not None:
        write_part_file(job.part_dir, chunk.index, arrow)
        return ScoredChunk(chunk.index, None, len(result), int(refused.sum()))
    return ScoredChunk(chunk.index, arrow, len(result), int(refused.sum()))


def _join_text(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both = (a != "") & (b != "")
    joined: np.ndarray = np.where(both, a + "; " + b, np.where(a != "", a, b)).astype(object)
    return joined


# --- the client side --------------------------------------------------------------------------------------


def _check_horizons(model: LoadedModel, horizons: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(h) for h in horizons)
    lo, hi = model.card.min_horizon_years, model.card.max_horizon_years
    if not values or any(not (lo <= h <= hi) for h in values) or len(set(values)) != len(values):
        raise ModelInputError(
            f"horizons {list(values)} must be distinct years in the model's range [{lo:g}, {hi:g}]",
            reason="BAD_HORIZON",
        )
    return values


def _check_model(model: LoadedModel) -> None:
    if not model.survival or set(model.survival) != set(OUTCOMES):
        raise ModelInputError(
            f"model {model.card.id} is a {model.card.kind} model of {', '.join(model.outcomes) or model.card.target}: "
            "cohort scoring needs a fracture risk model predicting both major osteoporotic and hip fracture "
            "(score other models with `osteorisk predict`)",
            reason="MODEL_KIND",
        )


def _progress_bar(total: int | None, initial: int, quiet: bool, unit: str = "rows", desc: str = "scoring") -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit=unit,
        unit_scale=True,
        file=sys.stderr,
        disable=quiet,
        dynamic_ncols=True,
        desc=desc,
        smoothing=0.1,
    )


def _metadata(model: LoadedModel, horizons: Sequence[float], input_name: str) -> dict[bytes, bytes]:
    card = model.card
    info = {
        "format": SCORES_FORMAT,
        "model": {
            "id": card.id,
            "version": card.version,
            "sha256": model.sha256,
            "kind": card.kind,
            "trained_on": card.trained_on,
            "intended_use": card.intended_use,
            "not_for_clinical_use": card.not_for_clinical_use,
            "features": list(model.plan.names),
        },
        "horizons_years": list(horizons),
        "thresholds_version": thresholds().version,
        "flags": list(flag_codes()),
        "input": input_name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return {METADATA_KEY: json.dumps(info, sort_keys=True).encode("utf-8")}


def read_scores_metadata(path: str | Path) -> dict[str, Any]:
    """The `osteorisk.cohort_scores` metadata of a scored file ({} for a file scored elsewhere)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(METADATA_KEY)
    if raw is None:
        return {}
    info: dict[str, Any] = json.loads(raw)
    return info


def _tasks(
    reader: ParquetInput | CsvInput,
    done: set[int],
    job: ScoreJob,
    features: FeaturesTable | None,
    index_date: date | None,
) -> Iterator[ChunkTask]:
    for chunk in reader.chunks(skip=done):
        frame = chunk.frame
        if index_date is not None:
            frame = frame.assign(index_date=pd.Timestamp(index_date))
        if features is not None:
            frame = features.join(frame)
        yield ChunkTask(job, Chunk(chunk.index, chunk.start, frame))


def score_cohort(
    source: str | Path,
    out: str | Path,
    *,
    model_dir: str | Path,
    engine: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    horizons: Sequence[float] = DEFAULT_HORIZONS_YEARS,
    features: str | Path | None = None,
    index_date: date | None = None,
    keep_columns: Sequence[str] | None = None,
    work_dir: str | Path | None = None,
    restart: bool = False,
    keep_work: bool = False,
    quiet: bool = True,
    dask_processes: bool = True,
    engine_instance: LocalEngine | DaskEngine | None = None,
) -> ScoreSummary:
    """Score a cohort into a Parquet file (module docstring); returns what was done.

    `keep_columns`: input columns to carry into the output besides the identifiers (None: all; () none).
    `index_date`: the index date of every row (a table must then have no `index_date` column); for a FHIR
    export, the index date of every patient (else each patient's CT date from the features table).
    `engine_instance`: an engine the caller owns (kept open), instead of one made from `engine`.
    Raises `CohortError` (bad input, a work directory that cannot be resumed), `ModelArtifactError`,
    `ModelInputError`; a chunk that fails stops the run, and the finished parts stay for a resume."""
    started = time.perf_counter()
    source, out = Path(source), Path(out)
    if not out.name.lower().endswith((".parquet", ".pq")):
        raise CohortError(f"the output must be a Parquet file (.parquet), got {out.name}", reason="UNSUPPORTED_FORMAT")
    kind = input_kind(source)
    if source.resolve() == out.resolve():
        raise CohortError("the output would overwrite the input; choose another --out", reason="BAD_OUTPUT")
    model = load_model(model_dir)
    _check_model(model)
    hs = _check_horizons(model, horizons)
    feature_table = FeaturesTable(features) if features is not None else None
    keep = None if keep_columns is None else tuple(keep_columns)
    job = ScoreJob(str(Path(model_dir).resolve()), model.sha256, hs, keep)
    manifest = {
        "format": WORK_FORMAT,
        "input": fingerprint(source),
        "features": fingerprint(features) if features is not None else None,
        "model_sha256": model.sha256,
        "options": {
            "chunk_rows": chunk_rows,
            "horizons": list(hs),
            "keep_columns": None if keep is None else list(keep),
            "index_date": None if index_date is None else index_date.isoformat(),
            "thresholds_version": thresholds().version,
        },
    }
    table_reader: ParquetInput | CsvInput | None = None
    if kind != "fhir_bulk":  # a table is checked before any work directory is made
        table_reader = open_table_input(source, chunk_rows=chunk_rows)
        if index_date is not None and "index_date" in table_reader.column_names:
            raise CohortError(
                f"{source.name} has an index_date column and --index-date was given: use one", reason="INDEX_DATE_TWICE"
            )
    work = WorkDir.open(Path(work_dir) if work_dir is not None else default_work_dir(out), manifest, restart=restart)
    own_engine = engine_instance is None
    succeeded = False
    try:
        runner = engine_instance or make_engine(engine, workers=workers, scheduler=scheduler, processes=dask_processes)
    except BaseException:
        work.close()
        work.remove_if_unused()
        raise
    if runner.shares_filesystem:
        job = replace(job, part_dir=str(work.path.resolve()))
    summary = ScoreSummary(
        output=out, engine=runner.name, workers=runner.workers, model_id=model.card.id, model_sha256=model.sha256
    )
    try:
        reader: ParquetInput | CsvInput
        if table_reader is None:
            reader = _stage(source, work, chunk_rows, feature_table, index_date, runner.workers, quiet)
            feature_table, index_date = None, None  # joined and dated while staging
        else:
            reader = table_reader
        done = set(work.finished_parts())
        summary.chunks_resumed = len(done)
        done_rows = sum(_part_rows(p) for p in work.finished_parts().values())
        _score_parts(reader, work, job, runner, done, done_rows, feature_table, index_date, quiet)
        parts = work.finished_parts()
        total = reader.chunks_total
        if total is not None and len(parts) != total:  # pragma: no cover - every chunk either finished or raised
            raise CohortError(f"{len(parts)} of {total} chunks finished", reason="INCOMPLETE")
        summary.rows = assemble_parts(
            parts.values(), out, metadata=_metadata(model, hs, source.name), tmp=work.temporary_path(out.name)
        )
        summary.chunks = len(parts)
        _count(out, summary)
        succeeded = True
    finally:
        if own_engine:
            runner.close()
        work.close()
        if not succeeded:
            work.remove_if_unused()
    if not keep_work:
        work.remove()
    summary.seconds = time.perf_counter() - started
    return summary


def _stage(
    source: Path,
    work: WorkDir,
    chunk_rows: int,
    features: FeaturesTable | None,
    index_date: date | None,
    workers: int,
    quiet: bool,
) -> ParquetInput:
    """The staged cohort table of a FHIR export (made once per work directory)."""
    staged = work.path / STAGED_NAME
    if not (staged.is_file() and work.manifest.get("staged")):
        tmp = work.temporary_path(STAGED_NAME)
        bar = _progress_bar(None, 0, quiet, unit="patients", desc="reading the FHIR export")
        try:
            rows = stage_bulk_export(
                source, tmp, index_date=index_date, features=features, workers=workers, progress=bar.update
            )
        finally:
            bar.close()
        os.replace(tmp, staged)
        work.update_manifest(staged={"rows": rows})
    return ParquetInput(staged, chunk_rows=chunk_rows)


def _part_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    rows: int = pq.ParquetFile(path).metadata.num_rows
    return rows


def _score_parts(
    reader: ParquetInput | CsvInput,
    work: WorkDir,
    job: ScoreJob,
    runner: LocalEngine | DaskEngine,
    done: set[int],
    done_rows: int,
    features: FeaturesTable | None,
    index_date: date | None,
    quiet: bool,
) -> None:
    crash_at = crash_after()
    written = 0
    total = reader.rows if isinstance(reader, ParquetInput) else None
    bar = _progress_bar(total, done_rows, quiet)
    try:
        tasks = _tasks(reader, done, job, features, index_date)
        for completed in runner.run(score_chunk, tasks):
            if isinstance(completed.error, WorkerDiedError):
                raise CohortError(
                    f"{completed.error}; the finished chunks are kept: rerun the same command to resume (with fewer "
                    "--workers or a smaller --chunk-rows if memory ran out)",
                    reason=completed.error.reason,
                ) from completed.error
            if completed.error is not None:
                raise completed.error
            scored = completed.result
            assert scored is not None
            if scored.table is not None:
                work.write_part(scored.index, scored.table)
            bar.update(scored.rows)
            written += 1
            if crash_at is not None and written >= crash_at:
                bar.close()
                os._exit(CRASH_EXIT_CODE)  # the documented test hook: an abrupt end, nothing cleaned up
    finally:
        bar.close()


def _count(out: Path, summary: ScoreSummary) -> None:
    """Status and flag counts of the assembled output (reads only those columns)."""
    import pyarrow.parquet as pq

    names = ["status", *(f"flag_{c}" for c in flag_codes())]
    present = [n for n in names if n in pq.read_schema(out).names]
    table = pq.read_table(out, columns=present).to_pandas()
    counts = table["status"].value_counts()
    summary.scored = int(counts.get("scored", 0))
    summary.refused = int(counts.get("refused", 0))
    summary.no_record = int(counts.get("no_record", 0))
    summary.flags = {n.removeprefix("flag_"): int(table[n].sum()) for n in present if n.startswith("flag_")}
