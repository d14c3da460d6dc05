"""BoneFeatures of many CT studies, in parallel, one row per study; failures recorded, finished work kept.

    >>> summary = measure_studies("studies.csv", "features.parquet", workers=2)

The study list is a CSV/TSV file with a header (`patient_id`, `ct` (or `path`), optional `labels`,
`index_date`, `study_id`), or a text file of lines `PATIENT_ID PATH [LABELS]` (whitespace-separated,
`#` starts a comment). Relative paths are relative to the list's folder.

Each study runs `imaging.pipeline.extract_features` in a worker (local processes or Dask workers,
`fusion.cohort.engines`). The output (Parquet, or CSV/TSV by suffix) has one row per study, in list
order:

- `patient_id`, `study_id`, `ct`, `index_date` (the list's, else the CT's study date), `status` ("ok" or
  "failed"), `error_reason` (e.g. NOT_FOUND, NOT_DICOM, CT_UNUSABLE) and `error` (the message);
- the BoneFeatures summary: `l1_hu`, `mean_hu_l1_l4`, `vbmd_l1_l2_mg_cm3`, `acr_category`; per level
  (T11-L5) the trabecular attenuation `hu_<level>` (median HU, as the models use it; empty when the level
  is missing or excluded by QC) and `vbmd_<level>`; `genant_grade_max` (worst Genant grade of the
  measured levels), `levels_used`, `levels_excluded`;
- provenance: `series_uid`, `study_date`, `kvp`, `contrast`, `segmentation_backend`, `calibration_status`,
  `warnings` (joined by "; "), `n_warnings`, `seconds`, `qa_png`.

It is a features table for `cohort score --features` (only rows with status "ok" are used there).

Finished work is never lost: each result is appended to a journal (`results.jsonl`, one line per
study, flushed to disk) in the work directory as soon as it arrives; a rerun skips the studies already
in the journal (failed ones too, unless `retry_failed`), and a torn last line of a crashed run is
dropped. The study list's fingerprint is in the manifest: a changed list is refused unless `restart`.
The scoring module's test hook (`OSTEORISK_COHORT_CRASH_AFTER_PARTS=N`) ends the process abruptly after
N results are journalled. A study that hangs is not timed out (the engines cannot stop a running task).
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from fusion.cohort.engines import DaskEngine, LocalEngine, WorkerDiedError, make_engine
from fusion.cohort.workdir import CRASH_EXIT_CODE, WorkDir, crash_after, default_work_dir, fingerprint
from fusion.errors import CohortError

WORK_FORMAT: Final = "osteorisk.cohort_features_work/1"
JOURNAL: Final = "results.jsonl"
LEVELS: Final = ("T11", "T12", "L1", "L2", "L3", "L4", "L5")
MAX_STUDIES: Final = 10_000_000
_PATH_COLUMNS: Final = ("ct", "path", "ct_path")
_LABEL_COLUMNS: Final = ("labels", "label_map", "labels_path")
OUTPUT_COLUMNS: Final = (
    "patient_id",
    "study_id",
    "ct",
    "index_date",
    "status",
    "error_reason",
    "error",
    "l1_hu",
    "mean_hu_l1_l4",
    "vbmd_l1_l2_mg_cm3",
    "acr_category",
    *(f"hu_{lv.lower()}" for lv in LEVELS),
    *(f"vbmd_{lv.lower()}" for lv in LEVELS),
    "genant_grade_max",
    "levels_used",
    "levels_excluded",
    "series_uid",
    "study_date",
    "kvp",
    "contrast",
    "segmentation_backend",
    "calibration_status",
    "n_warnings",
    "warnings",
    "seconds",
    "qa_png",
)


@dataclass(frozen=True)
class Study:
    """One line of the study list."""

    key: int  # position in the list (0-based): the study's identity within a run
    patient_id: str
    ct: str
    labels: str | None = None
    index_date: date | None = None
    study_id: str | None = None


@dataclass(frozen=True)
class StudyTask:
    study: Study
    base: str  # folder relative paths are resolved against
    backend: str | None
    label_convention: str
    qa_dir: str | None


@dataclass
class FeaturesSummary:
    output: Path
    studies: int = 0
    ok: int = 0
    failed: int = 0
    resumed: int = 0
    seconds: float = 0.0
    engine: str = "local"
    workers: int = 1
    failures_by_reason: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["output"] = str(self.output)
        return out


# --- the study list ---------------------------------------------------------------------------------------


def _date(text: str | None, where: str) -> date | None:
    if text is None or not str(text).strip():
        return None
    try:
        return date.fromisoformat(str(text).strip()[:10])
    except ValueError:
        raise CohortError(f"{where}: index_date {text!r} is not a date (YYYY-MM-DD)", reason="BAD_STUDY_LIST") from None


def _pick(columns: Sequence[str], names: Sequence[str]) -> str | None:
    return next((c for c in names if c in columns), None)


def _read_table_list(path: Path, sep: str) -> list[Study]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=sep)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        ct_column = _pick(columns, _PATH_COLUMNS)
        if "patient_id" not in columns or ct_column is None:
            raise CohortError(
                f"{path.name}: the study list needs a header with patient_id and ct (or path); found "
                f"{', '.join(columns) or 'no header'}",
                reason="BAD_STUDY_LIST",
            )
        label_column = _pick(columns, _LABEL_COLUMNS)
        studies: list[Study] = []
        for number, row in enumerate(reader, start=2):
            where = f"{path.name} line {number}"
            patient, ct = (row.get("patient_id") or "").strip(), (row.get(ct_column) or "").strip()
            if not patient and not ct:
                continue
            if not patient or not ct:
                raise CohortError(f"{where}: patient_id and {ct_column} must both be given", reason="BAD_STUDY_LIST")
            labels = (row.get(label_column) or "").strip() if label_column else ""
            studies.append(
                Study(
                    key=len(studies),
                    patient_id=patient,
                    ct=ct,
                    labels=labels or None,
                    index_date=_date(row.get("index_date"), where),
                    study_id=(row.get("study_id") or "").strip() or None,
                )
            )
    return studies


def _read_text_list(path: Path) -> list[Study]:
    studies: list[Study] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            parts = shlex.split(text)
        except ValueError as exc:
            raise CohortError(f"{path.name} line {number}: {exc}", reason="BAD_STUDY_LIST") from None
        if len(parts) not in (2, 3):
            raise CohortError(
                f"{path.name} line {number}: expected 'PATIENT_ID PATH [LABELS]', got {len(parts)} fields",
                reason="BAD_STUDY_LIST",
            )
        studies.append(
            Study(key=len(studies), patient_id=parts[0], ct=parts[1], labels=parts[2] if len(parts) == 3 else None)
        )
    return studies


def read_studies(path: str | Path) -> list[Study]:
    """The studies of a list file (module docstring); raises `CohortError` naming the bad line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study list not found: {path}")
    name = path.name.lower()
    try:
        if name.endswith(".csv"):
            studies = _read_table_list(path, ",")
        elif name.endswith(".tsv"):
            studies = _read_table_list(path, "\t")
        else:
            studies = _read_text_list(path)
    except UnicodeDecodeError as exc:
        raise CohortError(f"{path.name}: not a text file ({exc.reason})", reason="BAD_STUDY_LIST") from None
    if not studies:
        raise CohortError(f"{path.name}: the study list is empty", reason="BAD_STUDY_LIST")
    if len(studies) > MAX_STUDIES:
        raise CohortError(f"{path.name}: more than {MAX_STUDIES:,} studies; split the list", reason="BAD_STUDY_LIST")
    seen: dict[tuple[str, str], int] = {}
    for s in studies:
        pair = (s.patient_id, s.ct)
        if pair in seen:
            raise CohortError(
                f"{path.name}: study {s.key + 1} repeats study {seen[pair] + 1} (patient {s.patient_id}, same CT path)",
                reason="BAD_STUDY_LIST",
            )
        seen[pair] = s.key
    return studies


# --- one study (in a worker) -------------------------------------------------------------------------------


def _resolve(base: str, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else Path(base) / candidate


def _level_values(bone: Any, level: str) -> tuple[float | None, float | None]:
    measurement = bone.level(level)
    if measurement is None or measurement.excluded:
        return None, None
    hu = measurement.hu_median if measurement.hu_median is not None else measurement.hu_mean
    return hu, measurement.vbmd_mg_cm3


def _row_from_features(study: Study, bone: Any) -> dict[str, Any]:
    summary = bone.summary
    row: dict[str, Any] = {
        "l1_hu": summary.l1_hu,
        "mean_hu_l1_l4": summary.mean_hu_l1_l4,
        "vbmd_l1_l2_mg_cm3": summary.vbmd_l1_l2_mg_cm3,
        "acr_category": summary.acr_category,
        "levels_used": ",".join(summary.levels_used),
        "levels_excluded": ",".join(m.level for m in bone.levels if m.excluded),
    }
    for level in LEVELS:
        hu, vbmd = _level_values(bone, level)
        row[f"hu_{level.lower()}"] = hu
        row[f"vbmd_{level.lower()}"] = vbmd
    grades = [m.genant_grade for m in bone.levels if m.genant_grade is not None and not m.excluded]
    row["genant_grade_max"] = max(grades) if grades else None
    source = bone.source
    row.update(
        series_uid=source.series_uid,
        study_date=source.study_date.isoformat() if source.study_date else None,
        kvp=source.kvp,
        contrast=source.contrast,
        segmentation_backend=bone.segmentation.backend,
        calibration_status=bone.calibration.status if bone.calibration is not None else None,
        n_warnings=len(bone.warnings),
        warnings="; ".join(bone.warnings),
    )
    if study.index_date is None and source.study_date is not None:
        row["index_date"] = source.study_date.isoformat()
    return row


def _failed_row(study: Study, reason: str | None = None, error: str | None = None) -> dict[str, Any]:
    """A study's row before (or without) a measurement: its identity and status "failed"."""
    return {
        "key": study.key,
        "patient_id": study.patient_id,
        "study_id": study.study_id,
        "ct": study.ct,
        "index_date": study.index_date.isoformat() if study.index_date else None,
        "status": "failed",
        "error_reason": reason,
        "error": error,
    }


def measure_study(task: StudyTask) -> dict[str, Any]:
    """One study's row (module docstring); every failure becomes a row with its reason, never an exception."""
    from imaging.errors import ImagingError
    from imaging.pipeline import extract_features

    study = task.study
    started = time.perf_counter()
    row = _failed_row(study)
    ct = _resolve(task.base, study.ct)
    labels = _resolve(task.base, study.labels) if study.labels else None
    qa_png = None
    if task.qa_dir is not None:
        qa_png = Path(task.qa_dir) / f"study-{study.key:06d}.png"
    try:
        for what, path in (("CT", ct), ("label map", labels)):
            if path is not None and not path.exists():
                raise FileNotFoundError(f"{what} not found: {path}")
        bone = extract_features(
            ct, labels=labels, label_convention=task.label_convention, backend=task.backend, qa_png=qa_png
        )
    except FileNotFoundError as exc:
        row.update(error_reason="NOT_FOUND", error=str(exc))
    except ImagingError as exc:
        row.update(error_reason=exc.reason, error=" ".join(str(exc).split()))
    except MemoryError:
        row.update(error_reason="OUT_OF_MEMORY", error="the CT did not fit in the worker's memory")
    except Exception as exc:  # a bug or an unforeseen file: recorded, the batch goes on
        row.update(error_reason="INTERNAL_ERROR", error=f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}")
    else:
        row.update(_row_from_features(study, bone))
        row["status"] = "ok"
        row["qa_png"] = str(qa_png) if qa_png is not None else None
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


# --- the journal ---------------------------------------------------------------------------------------------


def _read_journal(path: Path) -> dict[int, dict[str, Any]]:
    """key -> latest row; a torn last line (a crash mid-write) is cut off the file."""
    rows: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return rows
    good = 0
    with path.open("rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break
            try:
                row = json.loads(line)
            except ValueError:
                break
            rows[int(row["key"])] = row
            good += len(line)
    if good != path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(good)
    return rows


class _Journal:
    def __init__(self, path: Path) -> None:
        self._handle = path.open("a", encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row, default=str, allow_nan=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: missing numbers are None."""
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}


# --- the batch ---------------------------------------------------------------------------------------------


def _write_table(frame: pd.DataFrame, out: Path, tmp: Path) -> None:
    name = out.name.lower()
    if name.endswith((".parquet", ".pq")):
        frame.to_parquet(tmp, index=False)
    elif name.endswith(".csv"):
        frame.to_csv(tmp, index=False)
    elif name.endswith(".tsv"):
        frame.to_csv(tmp, index=False, sep="\t")
    else:
        raise CohortError(
            f"{out.name}: the features table is written as .parquet, .csv or .tsv", reason="UNSUPPORTED_FORMAT"
        )
    os.replace(tmp, out)


def _frame(rows: dict[int, dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame([rows[k] for k in sorted(rows)], columns=["key", *OUTPUT_COLUMNS])
    frame = frame.drop(columns="key")
    numeric = [
        c
        for c in OUTPUT_COLUMNS
        if c.startswith(("hu_", "vbmd_"))
        or c in ("l1_hu", "mean_hu_l1_l4", "vbmd_l1_l2_mg_cm3", "kvp", "seconds", "genant_grade_max")
    ]
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["n_warnings"] = pd.to_numeric(frame["n_warnings"], errors="coerce").astype("Int32")
    text = [c for c in OUTPUT_COLUMNS if c not in numeric and c != "n_warnings"]
    for column in text:
        frame[column] = frame[column].astype("string")
    return frame


def measure_studies(
    studies: str | Path,
    out: str | Path,
    *,
    engine: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    backend: str | None = None,
    label_convention: str = "totalsegmentator",
    qa_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    restart: bool = False,
    retry_failed: bool = False,
    keep_work: bool = False,
    quiet: bool = True,
    dask_processes: bool = True,
    engine_instance: LocalEngine | DaskEngine | None = None,
) -> FeaturesSummary:
    """Measure every study of the list into a features table (module docstring)."""
    started = time.perf_counter()
    list_path, out = Path(studies), Path(out)
    if not out.name.lower().endswith((".parquet", ".pq", ".csv", ".tsv")):
        raise CohortError(
            f"{out.name}: the features table is written as .parquet, .csv or .tsv", reason="UNSUPPORTED_FORMAT"
        )
    items = read_studies(list_path)
    qa = str(Path(qa_dir).resolve()) if qa_dir is not None else None
    if qa is not None:
        Path(qa).mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": WORK_FORMAT,
        "input": fingerprint(list_path),
        "features": None,
        "model_sha256": None,
        "options": {"backend": backend, "label_convention": label_convention, "qa_dir": qa},
    }
    work = WorkDir.open(Path(work_dir) if work_dir is not None else default_work_dir(out), manifest, restart=restart)
    own_engine = engine_instance is None
    runner = engine_instance or make_engine(engine, workers=workers, scheduler=scheduler, processes=dask_processes)
    summary = FeaturesSummary(output=out, studies=len(items), engine=runner.name, workers=runner.workers)
    try:
        journal_path = work.path / JOURNAL
        rows = _read_journal(journal_path)
        done = {k for k, r in rows.items() if r.get("status") == "ok" or not retry_failed}
        summary.resumed = len(done)
        base = str(list_path.resolve().parent)
        tasks = (StudyTask(s, base, backend, label_convention, qa) for s in items if s.key not in done)
        _run(runner, tasks, rows, journal_path, len(items), len(done), quiet)
        frame = _frame(rows)
        _write_table(frame, out, work.temporary_path(out.name))
    finally:
        if own_engine:
            runner.close()
        work.close()
    if not keep_work:
        work.remove()
    summary.ok = int((frame["status"] == "ok").sum())
    summary.failed = int((frame["status"] == "failed").sum())
    summary.failures_by_reason = {str(k): int(v) for k, v in frame["error_reason"].value_counts().items()}
    summary.seconds = time.perf_counter() - started
    return summary


def _run(
    runner: LocalEngine | DaskEngine,
    tasks: Iterator[StudyTask],
    rows: dict[int, dict[str, Any]],
    journal_path: Path,
    total: int,
    done: int,
    quiet: bool,
) -> None:
    from tqdm import tqdm

    crash_at = crash_after()
    written = 0
    journal = _Journal(journal_path)
    bar = tqdm(total=total, initial=done, unit="studies", file=sys.stderr, disable=quiet, desc="measuring")
    try:
        for completed in runner.run(measure_study, tasks):
            if completed.error is not None:  # the worker died or the task could not run at all
                study = completed.task.study
                error = completed.error
                died = isinstance(error, WorkerDiedError)
                row = _failed_row(
                    study,
                    str(getattr(error, "reason", type(error).__name__)),
                    " ".join(str(error).split())[:500] + ("; rerun with --retry-failed" if died else ""),
                )
            else:
                row = completed.result or {}
            row = _clean(row)
            journal.append(row)
            rows[int(row["key"])] = row
            bar.update(1)
            written += 1
            if crash_at is not None and written >= crash_at:
                bar.close()
                os._exit(CRASH_EXIT_CODE)  # the documented test hook (see fusion.cohort.scoring)
    finally:
        bar.close()
        journal.close()
