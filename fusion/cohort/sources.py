"""Cohort inputs read in chunks, never whole: Parquet files and folders, CSV/TSV, FHIR Bulk Data exports.

Chunk `i` is always rows `[i * chunk_rows, (i + 1) * chunk_rows)` of the input (a folder of Parquet files
is the concatenation of its files in name order), so that a resumed run finds the same chunks. Parquet is
read by row groups with `pyarrow` (only the row groups that hold unfinished chunks are read); CSV/TSV by
pandas' chunked reader (a resumed run parses, but does not score, the finished chunks again).

A FHIR Bulk Data export (a folder of `*.ndjson` / `*.ndjson.gz` files) is first turned into a canonical
cohort table (`stage_bulk_export`): `clinical.bulk.iter_cohort_records` builds each patient's
ClinicalRecord at its index date in worker processes, in bounded memory, and the rows are written to a
Parquet file in batches; scoring then reads that file like any other.

The features table (`FeaturesTable`) holds the CT features per patient, e.g. the output of `osteorisk
cohort features`: `patient_id`, optionally `index_date`, and BoneFeatures summary columns (`l1_hu`,
`mean_hu_l1_l4`, `vbmd_l1_l2_mg_cm3`, `hu_l1`..`hu_l4`, `genant_grade_max`). It is one row per study,
small next to the cohort, and held in memory. Rows with a `status` other than "ok" are ignored. A patient
with several studies contributes its earliest one (by `index_date`) unless the cohort rows carry an
`index_date` to match on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fusion.cohort_table import validate_cohort
from fusion.errors import CohortError
from fusion.features import IMAGING_SUMMARY_FEATURES, LEVEL_FEATURES

log = logging.getLogger(__name__)

InputKind = Literal["parquet", "csv", "tsv", "parquet_folder", "fhir_bulk"]
TABLE_SUFFIXES: Final = (".parquet", ".pq", ".csv", ".csv.gz", ".tsv", ".tsv.gz")
NDJSON_SUFFIXES: Final = (".ndjson", ".ndjson.gz")
FEATURE_COLUMNS: Final = (*IMAGING_SUMMARY_FEATURES, *LEVEL_FEATURES, "genant_grade_max")
RECORD_ERROR: Final = "record_error"
MAX_CHUNK_ROWS: Final = 5_000_000


@dataclass(frozen=True)
class Chunk:
    """Rows [start, start + len(frame)) of the input."""

    index: int
    start: int
    frame: pd.DataFrame


def _kind_of_file(path: Path) -> InputKind:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".tsv", ".tsv.gz")):
        return "tsv"
    raise CohortError(
        f"{path.name}: unknown cohort input; use a Parquet/CSV/TSV file ({', '.join(TABLE_SUFFIXES)}), a folder of "
        "Parquet files or a FHIR Bulk Data export folder (*.ndjson)",
        reason="UNSUPPORTED_FORMAT",
    )


def input_kind(path: str | Path) -> InputKind:
    """What a `--in` path is (a file by suffix; a folder by the files it holds)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cohort input not found: {path}")
    if path.is_file():
        return _kind_of_file(path)
    files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
    if any(p.name.lower().endswith(NDJSON_SUFFIXES) for p in files):
        return "fhir_bulk"
    if any(p.name.lower().endswith((".parquet", ".pq")) for p in files):
        return "parquet_folder"
    raise CohortError(
        f"{path}: the folder holds neither Parquet files nor FHIR Bulk Data NDJSON files",
        reason="UNSUPPORTED_FORMAT",
    )


def check_chunk_rows(chunk_rows: int) -> int:
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or not 1 <= chunk_rows <= MAX_CHUNK_ROWS:
        raise CohortError(f"chunk_rows must be an integer in 1..{MAX_CHUNK_ROWS:,}, got {chunk_rows!r}")
    return chunk_rows


# --- Parquet ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    """One row group of one file and its first row in the whole input."""

    file: int
    row_group: int
    start: int
    rows: int


class ParquetInput:
    """One Parquet file or a folder of them, in chunks of `chunk_rows` rows (module docstring)."""

    def __init__(self, path: str | Path, *, chunk_rows: int, columns: Sequence[str] | None = None) -> None:
        self.path = Path(path)
        self.chunk_rows = check_chunk_rows(chunk_rows)
        self.columns = list(columns) if columns is not None else None
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in (".parquet", ".pq"))
            self.files = [p for p in self.files if not p.name.startswith(".")]
        else:
            self.files = [self.path]
        if not self.files:
            raise CohortError(f"{self.path}: no Parquet files", reason="EMPTY_TABLE")
        self._segments: list[_Segment] = []
        start = 0
        schemas = []
        for k, file in enumerate(self.files):
            try:
                meta = pq.ParquetFile(file).metadata
                schemas.append(pq.read_schema(file))
            except (pa.ArrowException, OSError) as exc:
                message = " ".join(str(exc).split())[:200]
                raise CohortError(f"{file.name}: cannot read as Parquet: {message}", reason="UNREADABLE_TABLE") from exc
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                if rows:
                    self._segments.append(_Segment(k, g, start, rows))
                    start += rows
        self.rows = start
        if self.rows == 0:
            raise CohortError(f"{self.path.name}: the cohort table has no rows", reason="EMPTY_TABLE")
        names = [set(s.names) for s in schemas]
        if len(self.files) > 1 and any(n != names[0] for n in names[1:]):
            raise CohortError(
                f"{self.path.name}: the Parquet files of the folder have different columns", reason="SCHEMA_MISMATCH"
            )
        self.column_names = list(schemas[0].names)
        if "patient_id" not in self.column_names:
            raise CohortError(
                f"{self.path.name}: no patient_id column (columns: {', '.join(self.column_names[:30])})",
                reason="MISSING_COLUMN",
            )

    @property
    def chunks_total(self) -> int:
        return -(-self.rows // self.chunk_rows)

    def chunk_rows_of(self, index: int) -> int:
        return min(self.chunk_rows, self.rows - index * self.chunk_rows)

    def chunks(self, skip: set[int] | frozenset[int] = frozenset()) -> Iterator[Chunk]:
        """The chunks not in `skip`, in order; row groups holding only skipped chunks are not read."""
        wanted = [i for i in range(self.chunks_total) if i not in skip]
        for first, last in _runs(wanted):
            yield from self._read_run(first, last)

    def _read_run(self, first: int, last: int) -> Iterator[Chunk]:
        c = self.chunk_rows
        start, stop = first * c, min((last + 1) * c, self.rows)
        segments = [s for s in self._segments if s.start < stop and s.start + s.rows > start]
        pieces: list[pa.RecordBatch] = []
        held = 0
        chunk = first
        for file_index in sorted({s.file for s in segments}):
            groups = [s for s in segments if s.file == file_index]
            offset = groups[0].start
            reader = pq.ParquetFile(self.files[file_index])
            batches = reader.iter_batches(
                batch_size=c, row_groups=[s.row_group for s in groups], columns=self.columns, use_pandas_metadata=True
            )
            for batch in batches:
                lo, hi = max(offset, start), min(offset + batch.num_rows, stop)
                if lo < hi:
                    piece = batch.slice(lo - offset, hi - lo)
                    while piece.num_rows:
                        need = min(c, self.rows - chunk * c) - held
                        take = piece.slice(0, need)
                        pieces.append(take)
                        held += take.num_rows
                        piece = piece.slice(take.num_rows)
                        if held == min(c, self.rows - chunk * c):
                            yield Chunk(chunk, chunk * c, _to_pandas(pieces))
                            pieces, held, chunk = [], 0, chunk + 1
                offset += batch.num_rows
        if pieces:  # pragma: no cover - the run's rows always end on a chunk boundary
            yield Chunk(chunk, chunk * c, _to_pandas(pieces))


def _to_pandas(batches: list[pa.RecordBatch]) -> pd.DataFrame:
    frame: pd.DataFrame = pa.Table.from_batches(batches).to_pandas()
    return frame


def _runs(indices: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Consecutive runs (first, last) of sorted integers."""
    if not indices:
        return
    first = previous = indices[0]
    for i in indices[1:]:
        if i != previous + 1:
            yield first, previous
            first = i
        previous = i
    yield first, previous


# --- CSV ----------------------------------------------------------------------------------------------


class CsvInput:
    """A CSV or TSV file (gzip by suffix) in chunks of `chunk_rows` rows; identifiers read as text."""

    def __init__(self, path: str | Path, *, chunk_rows: int, sep: str = ",") -> None:
        self.path = Path(path)
        self.chunk_rows = check_chunk_rows(chunk_rows)
        self.sep = sep
        self.rows: int | None = None
        try:
            header = pd.read_csv(self.path, sep=sep, nrows=0)
        except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            message = " ".join(str(exc).split())[:200]
            raise CohortError(f"{self.path.name}: cannot read as CSV: {message}", reason="UNREADABLE_TABLE") from exc
        self.column_names = [str(c) for c in header.columns]
        if "patient_id" not in self.column_names:
            raise CohortError(
                f"{self.path.name}: no patient_id column in the header ({', '.join(self.column_names[:30])})",
                reason="MISSING_COLUMN",
            )

    @property
    def chunks_total(self) -> int | None:
        return None

    def chunks(self, skip: set[int] | frozenset[int] = frozenset()) -> Iterator[Chunk]:
        try:
            reader = pd.read_csv(self.path, sep=self.sep, dtype={"patient_id": str}, chunksize=self.chunk_rows)
            start = 0
            for index, frame in enumerate(reader):
                if index not in skip:
                    frame.index = pd.RangeIndex(start, start + len(frame))
                    yield Chunk(index, start, frame)
                start += len(frame)
        except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            message = " ".join(str(exc).split())[:200]
            raise CohortError(f"{self.path.name}: cannot read as CSV: {message}", reason="UNREADABLE_TABLE") from exc


def open_table_input(path: str | Path, *, chunk_rows: int) -> ParquetInput | CsvInput:
    """The chunked reader of a cohort table file or a folder of Parquet files."""
    path = Path(path)
    kind = input_kind(path)
    if kind in ("parquet", "parquet_folder"):
        return ParquetInput(path, chunk_rows=chunk_rows)
    if kind == "fhir_bulk":
        raise CohortError(f"{path} is a FHIR Bulk Data export: stage it first", reason="UNSUPPORTED_FORMAT")
    return CsvInput(path, chunk_rows=chunk_rows, sep="\t" if kind == "tsv" else ",")


# --- the features table ----------------------------------------------------------------------------------


class FeaturesTable:
    """CT features by patient (module docstring), joined onto cohort chunks."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        kind = input_kind(self.path)
        if kind in ("parquet", "parquet_folder"):
            raw = pd.read_parquet(self.path)
        elif kind in ("csv", "tsv"):
            raw = pd.read_csv(self.path, sep="\t" if kind == "tsv" else ",", dtype={"patient_id": str})
        else:
            raise CohortError(f"{self.path.name}: a features table is a Parquet or CSV file", reason="BAD_FEATURES")
        if "status" in raw.columns:
            raw = raw[raw["status"].astype(str) == "ok"]
        if "patient_id" not in raw.columns:
            raise CohortError(f"{self.path.name}: the features table has no patient_id column", reason="BAD_FEATURES")
        if "index_date" not in raw.columns and "study_date" in raw.columns:
            raw = raw.rename(columns={"study_date": "index_date"})
        self.columns = [c for c in FEATURE_COLUMNS if c in raw.columns]
        if not self.columns:
            raise CohortError(
                f"{self.path.name}: the features table has none of the CT feature columns "
                f"({', '.join(FEATURE_COLUMNS)})",
                reason="BAD_FEATURES",
            )
        keep = ["patient_id", *(["index_date"] if "index_date" in raw.columns else []), *self.columns]
        table = validate_cohort(raw[keep].reset_index(drop=True), require=())
        self.has_dates = "index_date" in table.columns
        if self.has_dates:
            table = table.sort_values(["patient_id", "index_date"], kind="stable", na_position="last")
        self.by_visit = table.drop_duplicates(
            ["patient_id", "index_date"] if self.has_dates else ["patient_id"], keep="first"
        )
        self.by_patient = table.drop_duplicates(["patient_id"], keep="first").set_index("patient_id")
        self.duplicates = len(table) - len(self.by_patient)
        if self.duplicates:
            log.info("features table: %d patients have several studies; the earliest is used", self.duplicates)

    def __len__(self) -> int:
        return len(self.by_patient)

    def index_dates(self) -> dict[str, date]:
        """patient id -> index date (the study date) of every patient with a dated study."""
        if not self.has_dates:
            return {}
        dated = self.by_patient["index_date"].dropna()
        return {str(k): v.date() for k, v in dated.items()}

    def _matched(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One features row (or missing values) per row of `frame`, positions kept."""
        ids = frame["patient_id"].astype(str).to_numpy()
        by_patient = self.by_patient[self.columns].reindex(ids).reset_index(drop=True)
        if not (self.has_dates and "index_date" in frame.columns):
            return by_patient
        when = pd.to_datetime(frame["index_date"], errors="coerce").dt.normalize().to_numpy()
        dated = ~pd.isna(when)
        if not dated.any():
            return by_patient
        left = pd.DataFrame({"patient_id": ids[dated], "index_date": when[dated], "_row": np.flatnonzero(dated)})
        left = left.sort_values("index_date", kind="stable")
        right = self.by_visit.dropna(subset=["index_date"]).sort_values("index_date", kind="stable")
        matched = pd.merge_asof(left, right, on="index_date", by="patient_id", direction="backward")
        out = by_patient.copy()
        out.loc[dated] = np.nan
        out.loc[matched["_row"].to_numpy(), self.columns] = matched[self.columns].to_numpy()
        return out

    def join(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The chunk with the CT feature columns filled, where the chunk has none, from the patient's latest
        study on or before the row's `index_date` (rows without a date: the patient's earliest study)."""
        matched = self._matched(frame)
        out = frame.copy()
        for column in self.columns:
            values = matched[column].to_numpy(dtype=np.float64, na_value=np.nan)
            if column in out.columns:
                out[column] = out[column].where(out[column].notna(), pd.Series(values, index=out.index))
            else:
                out[column] = values
        return out


# --- FHIR Bulk Data -------------------------------------------------------------------------------------


def _record_row(record: Any) -> dict[str, Any]:
    """A canonical cohort row from a ClinicalRecord (values as the cohort table spells them)."""
    from clinical.types import ClinicalVariables

    row: dict[str, Any] = {"patient_id": record.patient_id, "index_date": record.index_date}
    defaulted = []
    for name in ClinicalVariables.names():
        variable = record.variables.get(name)
        row[name] = None if variable.is_missing else variable.value
        if variable.status == "imputed" and not variable.is_missing:
            defaulted.append(name)
    notes = [*record.warnings, *(f"DEFAULTED_INPUT: {n} was imputed by the clinical source" for n in defaulted)]
    row["source_warnings"] = "; ".join(notes)
    row[RECORD_ERROR] = None
    return row


def stage_bulk_export(
    directory: str | Path,
    out: Path,
    *,
    index_date: date | None,
    features: FeaturesTable | None,
    workers: int,
    batch_rows: int = 50_000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the canonical cohort table of a Bulk Data export to `out` (Parquet); returns its rows.

    The index date is `index_date` for every patient or, without it, each patient's study date from the
    features table (patients without one are skipped). A patient whose record cannot be built (e.g.
    deceased before the index date) gets a row with the reason in `record_error`."""
    from clinical.bulk import iter_cohort_records
    from clinical.errors import ClinicalError

    if index_date is not None:
        dates: date | dict[str, date] = index_date
    else:
        dates = features.index_dates() if features is not None else {}
        if not dates:
            raise CohortError(
                "a FHIR Bulk Data export needs an index date: --index-date YYYY-MM-DD, or a features table whose "
                "index_date (or study_date) column dates each patient's CT",
                reason="MISSING_INDEX_DATE",
            )
    writer: pq.ParquetWriter | None = None
    rows: list[dict[str, Any]] = []
    total = 0

    def flush() -> None:
        nonlocal writer, rows
        if not rows:
            return
        frame = pd.DataFrame(rows)
        frame = validate_cohort(frame, require=())
        if features is not None:
            frame = features.join(frame)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(out, _staging_schema(table.schema))
        writer.write_table(table.cast(writer.schema))
        if progress is not None:
            progress(len(rows))
        rows = []

    try:
        for result in iter_cohort_records(directory, dates, workers=workers):
            if result.record is not None:
                rows.append(_record_row(result.record))
            else:
                rows.append(
                    {
                        "patient_id": result.patient_id,
                        "source_warnings": "",
                        RECORD_ERROR: f"{result.reason or 'ERROR'}: {result.error}",
                    }
                )
            total += 1
            if len(rows) >= batch_rows:
                flush()
        flush()
    except ClinicalError as exc:
        raise CohortError(f"{Path(directory).name}: {exc}", reason=getattr(exc, "reason", "BAD_EXPORT")) from exc
    finally:
        if writer is not None:
            writer.close()
    if total == 0:
        raise CohortError(f"{Path(directory).name}: no patient of the export could be staged", reason="EMPTY_TABLE")
    return total


def _staging_schema(schema: pa.Schema) -> pa.Schema:
    """The staging file's schema: every clinical/imaging column typed whatever the first batch held."""
    from clinical.types import ClinicalVariables

    fields = []
    for field in schema:
        if pa.types.is_null(field.type):
            if field.name in ClinicalVariables.names() or field.name in FEATURE_COLUMNS:
                kind = (
                    pa.string()
                    if field.name == "sex"
                    else (pa.int8() if field.name not in _FLOAT_CLINICAL + FEATURE_COLUMNS else pa.float64())
                )
                fields.append(pa.field(field.name, kind))
            else:
                fields.append(pa.field(field.name, pa.string()))
        else:
            fields.append(field)
    return pa.schema(fields, metadata=schema.metadata)


_FLOAT_CLINICAL: Final = ("age_years", "weight_kg", "height_cm", "bmi_kg_m2", "dxa_t_score_min")
