"""Whole cohorts from a FHIR Bulk Data export, patient by patient, in bounded memory.

Bulk Data files are per resource type; records are per patient. Holding a whole export in memory does not
scale (a 100,000-patient export is gigabytes of JSON, several times that as Python objects), so the
export is regrouped on disk, in two passes:

1. **partition**: every line of the wanted types is parsed once to find its patient and appended to one
   of P temporary partition files chosen by a stable hash of the patient id (CRC-32, the same in every
   process); P is the export's size over `partition_bytes`. Files are cut into newline-aligned byte ranges
   so that several processes can share one large `Observation.ndjson`;
2. **group**: one partition at a time is read back and grouped by patient; each group is yielded (or,
   for `iter_cohort_records`, turned into a `ClinicalRecord` by `clinical.extract.build_record` in a
   worker process).

Peak memory is that of one partition per process (about `partition_bytes` of JSON as Python objects),
whatever the size of the export. While a partition is parsed and its records built, Python's cycle
collector is paused (`gc_paused`): JSON trees hold no cycles, and collections that walk a partition's
objects again and again cost more than the work itself. Records travel back from workers as JSON bytes
and are decoded one at a time as the caller iterates. Temporary files are removed as soon as their
partition is read, and all of them when iteration ends or is abandoned.

Public API:
- `iter_patient_resources(directory, *, resource_types=...) -> Iterator[(patient_id, resources)]`: the
  Patient first, then that patient's resources of the wanted types; patients in sorted order within a
  partition, partitions in order (deterministic for a given export);
- `iter_cohort_records(directory, index_dates, ...) -> Iterator[CohortRecord]`: a record, or the error
  that prevented one, per patient (the index date per patient from a mapping, or one date for all);
  resources are checked in the elements the extraction reads (`validation="elements"`, the default;
  "full" validates them whole with the R4B models at about half the throughput: `clinical.fhir_check`);
- `iter_clinical_records(...) -> Iterator[ClinicalRecord]`: the same, raising the first error;
- `PatientResources(patient_id, resources, shared)`: one yielded group as a `FhirSource`, for callers that
  run `build_record` themselves.

Scripts that use `workers > 1` must guard their entry point (`if __name__ == "__main__":`): workers are
started with "spawn", which is safe in threaded processes (a gRPC server) where "fork" is not.
"""

from __future__ import annotations

import heapq
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import zlib
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

import orjson

from clinical import errors as clinical_errors
from clinical.errors import ClinicalError, FhirInputError, PatientNotFoundError
from clinical.fhir_check import ValidationLevel, validator
from clinical.sources.base import CLINICAL_RESOURCE_TYPES, FhirResource, SourceBase, gc_paused, reference_target
from clinical.sources.ndjson import (
    DEFAULT_MAX_LINE_BYTES,
    UTF8_BOM,
    MalformedLines,
    OnMalformed,
    discover_files,
    iter_lines,
    open_lines,
    parse_line,
    patient_key,
)
from clinical.types import ClinicalRecord

log = logging.getLogger(__name__)

DEFAULT_RESOURCE_TYPES: Final = ("Patient", *CLINICAL_RESOURCE_TYPES)
DEFAULT_PARTITION_BYTES: Final = 8 * 1024 * 1024
#: Byte ranges a large plain file is cut into, so that workers share it.
CHUNK_BYTES: Final = 32 * 1024 * 1024
#: Rough gzip ratio of FHIR NDJSON, to size partitions from compressed files.
GZIP_RATIO: Final = 8
MAX_PARTITIONS: Final = 4096
_FLUSH_BYTES: Final = 256 * 1024  # per partition buffer: memory = partitions x this, at most
#: Shared (non-patient) resources a medication may reference, kept in memory for the cohort.
MAX_SHARED_MEDICATIONS: Final = 200_000


def default_workers() -> int:
    """Processes to use: the CPUs this process may run on, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


@dataclass(frozen=True)
class _Unit:
    """A newline-aligned byte range [start, end) of one NDJSON file (end -1: to the end, e.g. gzip)."""

    path: Path
    resource_type: str
    start: int
    end: int
    size: int


@dataclass
class PartitionReport:
    """What one partitioning worker saw."""

    lines: int = 0
    resources: int = 0
    unattributed: int = 0
    skipped_lines: int = 0
    error: tuple[str, str] | None = None  # (message, reason) of a malformed line, re-raised by the parent

    def add(self, other: PartitionReport) -> None:
        self.lines += other.lines
        self.resources += other.resources
        self.unattributed += other.unattributed
        self.skipped_lines += other.skipped_lines


@dataclass
class StreamStats:
    """Counts of a finished (or running) cohort stream; PHI-free, for logs and reports."""

    files: int = 0
    partitions: int = 0
    lines: int = 0
    resources: int = 0
    patients: int = 0
    orphan_resources: int = 0  # resources whose patient has no Patient resource in the export
    unattributed_resources: int = 0  # resources without a usable patient reference
    skipped_lines: int = 0


def partition_of(patient_id: str, partitions: int) -> int:
    """The partition of a patient: CRC-32 of its id modulo the partition count (stable across processes)."""
    return zlib.crc32(patient_id.encode("utf-8")) % partitions


def _align(stream: Any, start: int, max_line_bytes: int) -> int:
    """Move a stream to the first line that starts at or after byte `start`; return that position."""
    if start <= 0:
        return 0
    stream.seek(start - 1)
    position = start - 1
    while True:  # consume the rest of the line holding byte start - 1 (just its newline if it ends there)
        piece = stream.readline(max_line_bytes + 1)
        position += len(piece)
        if not piece or piece.endswith(b"\n"):
            return position


class _Locator:
    """Turns a line number counted from a byte offset into the file's own line number (computed once)."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset
        self._first: int | None = None

    def __call__(self, relative: int) -> int:
        if self._first is None:
            self._first = _line_number_at(self.path, self.offset) if self.offset > 0 else 1
        return self._first + relative - 1


def _line_number_at(path: Path, offset: int) -> int:
    """The 1-based line number of the line starting at byte `offset` of a plain file (only on errors)."""
    count = 0
    with path.open("rb") as stream:
        remaining = offset
        while remaining > 0:
            block = stream.read(min(remaining, 1 << 20))
            if not block:
                break
            count += block.count(b"\n")
            remaining -= len(block)
    return count + 1


def _partition_units(
    units: Sequence[_Unit], out_dir: str, worker: int, partitions: int, policy: OnMalformed, max_line_bytes: int
) -> PartitionReport:
    """Worker: append every attributable line of `units` to its partition file `p{n}.w{worker}.ndjson`."""
    report = PartitionReport()
    buffers: dict[int, list[bytes]] = {}
    sizes: dict[int, int] = {}

    def flush(partition: int) -> None:
        with open(os.path.join(out_dir, f"p{partition:05d}.w{worker:03d}.ndjson"), "ab") as out:
            out.write(b"".join(buffers.pop(partition)))
        sizes[partition] = 0

    try:
        for unit in units:
            with open_lines(unit.path) as stream:
                position = _align(stream, unit.start, max_line_bytes)
                malformed = MalformedLines(unit.path, policy, locate=_Locator(unit.path, position))
                for number, (line, size) in enumerate(iter_lines(stream, max_line_bytes), start=1):
                    if unit.end >= 0 and position >= unit.end:
                        break
                    position += size
                    report.lines += 1
                    try:
                        resource = parse_line(
                            line,
                            number,
                            expected_type=unit.resource_type,
                            malformed=malformed,
                            max_line_bytes=max_line_bytes,
                        )
                    except FhirInputError as exc:
                        report.error = (str(exc), exc.reason)
                        return report
                    if resource is None:
                        continue
                    key = patient_key(resource)
                    if key is None:
                        report.unattributed += 1
                        continue
                    report.resources += 1
                    partition = partition_of(key, partitions)
                    data = line[len(UTF8_BOM) :] if line.startswith(UTF8_BOM) else line
                    data = data if data.endswith(b"\n") else data + b"\n"
                    buffers.setdefault(partition, []).append(data)
                    sizes[partition] = sizes.get(partition, 0) + len(data)
                    if sizes[partition] >= _FLUSH_BYTES:
                        flush(partition)
            report.skipped_lines += malformed.count
            malformed.report()
        for partition in list(buffers):
            flush(partition)
    except (OSError, EOFError, zlib.error) as exc:
        report.error = (f"{exc.__class__.__name__} reading the export: {exc}", "INVALID_NDJSON")
    return report


class _Plan:
    """The files of an export, cut into work units and assigned to workers; the partition count."""

    def __init__(
        self,
        directory: Path,
        resource_types: Sequence[str],
        *,
        workers: int,
        partition_bytes: int,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        files = discover_files(directory)
        wanted = {"Patient", *resource_types}
        self.files = {t: paths for t, paths in files.items() if t in wanted}
        if "Patient" not in self.files:
            raise FhirInputError(
                f"{directory.name} has no Patient NDJSON file: a Bulk Data export of patients must include Patient"
            )
        self.medication_files = files.get("Medication", [])
        units: list[_Unit] = []
        estimated = 0
        for resource_type, paths in self.files.items():
            for path in paths:
                size = path.stat().st_size
                if path.name.endswith(".gz"):
                    units.append(_Unit(path, resource_type, 0, -1, size * GZIP_RATIO))
                    estimated += size * GZIP_RATIO
                    continue
                estimated += size
                for start in range(0, max(size, 1), chunk_bytes):
                    end = min(size, start + chunk_bytes)
                    units.append(_Unit(path, resource_type, start, end if end < size else -1, end - start))
        self.workers = max(1, min(workers, len(units)))
        # at least 4 partitions per worker, so that record extraction (per partition) keeps every worker busy
        target = max(math.ceil(estimated / partition_bytes), 4 * workers if workers > 1 else 1)
        self.partitions: int = max(1, min(MAX_PARTITIONS, target))
        # longest-processing-time-first assignment: balanced bytes per worker
        loads: list[tuple[int, int]] = [(0, w) for w in range(self.workers)]
        self.assignment: list[list[_Unit]] = [[] for _ in range(self.workers)]
        for unit in sorted(units, key=lambda u: -u.size):
            load, worker = heapq.heappop(loads)
            self.assignment[worker].append(unit)
            heapq.heappush(loads, (load + unit.size, worker))
        self.file_count = sum(len(paths) for paths in self.files.values())


def _executor(workers: int, context: _RecordContext | None = None) -> ProcessPoolExecutor:
    """Worker processes, started with "spawn": forked children of threaded parents (a gRPC server) can deadlock.

    With a context, each worker receives it once, for record extraction after partitioning.
    """
    spawn = multiprocessing.get_context("spawn")
    if context is None:
        return ProcessPoolExecutor(max_workers=workers, mp_context=spawn)
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=spawn, initializer=_init_record_worker, initargs=(context,)
    )


def _run_partitioning(
    plan: _Plan, out_dir: Path, policy: OnMalformed, max_line_bytes: int, pool: ProcessPoolExecutor | None = None
) -> PartitionReport:
    total = PartitionReport()
    args = [
        (units, str(out_dir), worker, plan.partitions, policy, max_line_bytes)
        for worker, units in enumerate(plan.assignment)
    ]
    if plan.workers == 1:
        reports = [_partition_units(*a) for a in args]
    elif pool is not None:
        reports = list(pool.map(_partition_units, *zip(*args, strict=True)))
    else:
        with _executor(plan.workers) as own_pool:
            reports = list(own_pool.map(_partition_units, *zip(*args, strict=True)))
    for report in reports:
        if report.error is not None:
            raise FhirInputError(report.error[0], reason=report.error[1])
        total.add(report)
    return total


def _read_partition(
    out_dir: Path, partition: int, type_order: Mapping[str, int]
) -> tuple[list[tuple[str, list[FhirResource]]], int]:
    """Group one partition's lines by patient (Patient first, then by type order and id); remove its files.

    Returns the groups (patients with a Patient resource, sorted by id) and the count of orphan resources.
    """
    grouped: dict[str, list[FhirResource]] = {}
    patients: dict[str, FhirResource] = {}
    for path in sorted(out_dir.glob(f"p{partition:05d}.w*.ndjson")):
        with path.open("rb") as stream:
            for line in stream:
                resource: FhirResource = orjson.loads(line)
                key = patient_key(resource)
                if key is None:
                    continue
                if resource["resourceType"] == "Patient":
                    patients.setdefault(key, resource)
                else:
                    grouped.setdefault(key, []).append(resource)
        path.unlink()
    orphans = sum(len(items) for key, items in grouped.items() if key not in patients)
    groups = []
    for patient_id in sorted(patients):
        items = grouped.get(patient_id, [])
        items.sort(key=lambda r: (type_order.get(r["resourceType"], len(type_order)), str(r.get("id", ""))))
        groups.append((patient_id, [patients[patient_id], *items]))
    return groups, orphans


class PatientStream:
    """An iterable of (patient_id, resources) over a Bulk Data export; `stats` fills in as it runs."""

    def __init__(
        self,
        directory: str | Path,
        *,
        resource_types: Sequence[str] = DEFAULT_RESOURCE_TYPES,
        on_malformed: OnMalformed = "error",
        workers: int | None = None,
        partition_bytes: int = DEFAULT_PARTITION_BYTES,
        tmp_dir: str | Path | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        if on_malformed not in ("error", "skip"):
            raise ValueError(f"on_malformed must be 'error' or 'skip', got {on_malformed!r}")
        if partition_bytes < 64 * 1024:
            raise ValueError(f"partition_bytes must be >= 65536, got {partition_bytes}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.directory = Path(directory)
        self.resource_types = tuple(dict.fromkeys(("Patient", *resource_types)))
        self.on_malformed: OnMalformed = on_malformed
        self.workers = workers or default_workers()
        self.partition_bytes = partition_bytes
        self.tmp_dir = None if tmp_dir is None else Path(tmp_dir)
        self.max_line_bytes = max_line_bytes
        if chunk_bytes < 4096:
            raise ValueError(f"chunk_bytes must be >= 4096, got {chunk_bytes}")
        self.plan = _Plan(
            self.directory,
            self.resource_types,
            workers=self.workers,
            partition_bytes=partition_bytes,
            chunk_bytes=chunk_bytes,
        )
        self.stats = StreamStats(files=self.plan.file_count, partitions=self.plan.partitions)

    def partitioned(self, pool: ProcessPoolExecutor | None = None) -> Iterator[Path]:
        """Run pass 1 into a temporary directory; yield it (removed when the generator is closed)."""
        out_dir = Path(tempfile.mkdtemp(prefix="osteorisk-bulk-", dir=self.tmp_dir))
        try:
            report = _run_partitioning(self.plan, out_dir, self.on_malformed, self.max_line_bytes, pool)
            self.stats.lines = report.lines
            self.stats.resources = report.resources
            self.stats.unattributed_resources = report.unattributed
            self.stats.skipped_lines = report.skipped_lines
            yield out_dir
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def type_order(self) -> dict[str, int]:
        return {t: n for n, t in enumerate(self.resource_types)}

    def __iter__(self) -> Iterator[tuple[str, list[FhirResource]]]:
        for out_dir in self.partitioned():
            order = self.type_order()
            for partition in range(self.plan.partitions):
                with gc_paused():
                    groups, orphans = _read_partition(out_dir, partition, order)
                self.stats.orphan_resources += orphans
                self.stats.patients += len(groups)
                yield from groups
        self._log_summary()

    def _log_summary(self) -> None:
        s = self.stats
        log.info(
            "%s: %d patients, %d resources from %d files in %d partitions",
            self.directory.name,
            s.patients,
            s.resources,
            s.files,
            s.partitions,
        )
        if s.orphan_resources or s.unattributed_resources:
            log.warning(
                "%s: %d resources reference patients absent from Patient files; %d have no patient reference",
                self.directory.name,
                s.orphan_resources,
                s.unattributed_resources,
            )

    def shared_medications(self) -> dict[str, FhirResource]:
        """Medication resources of the export by "Medication/id" (what medicationReference points at)."""
        found: dict[str, FhirResource] = {}
        for path in self.plan.medication_files:
            malformed = MalformedLines(path, self.on_malformed)
            with open_lines(path) as stream:
                for number, (line, _size) in enumerate(iter_lines(stream, self.max_line_bytes), start=1):
                    resource = parse_line(
                        line,
                        number,
                        expected_type="Medication",
                        malformed=malformed,
                        max_line_bytes=self.max_line_bytes,
                    )
                    if resource is not None and isinstance(resource.get("id"), str):
                        found[f"Medication/{resource['id']}"] = resource
                        if len(found) > MAX_SHARED_MEDICATIONS:
                            raise FhirInputError(
                                f"{path.name}: more than {MAX_SHARED_MEDICATIONS} Medication resources; "
                                "inline medicationCodeableConcept in the export instead",
                                reason="PAYLOAD_TOO_LARGE",
                            )
            self.stats.skipped_lines += malformed.count
        return found


def iter_patient_resources(
    directory: str | Path,
    *,
    resource_types: Sequence[str] = DEFAULT_RESOURCE_TYPES,
    on_malformed: OnMalformed = "error",
    workers: int | None = None,
    partition_bytes: int = DEFAULT_PARTITION_BYTES,
    tmp_dir: str | Path | None = None,
) -> Iterator[tuple[str, list[FhirResource]]]:
    """(patient_id, [Patient, resources...]) for every patient of a Bulk Data export, in bounded memory.

    Only patients with a Patient resource are yielded (resources of others are counted as orphans and
    logged). `on_malformed="skip"` skips and counts malformed lines instead of raising `FhirInputError`.
    """
    stream = PatientStream(
        directory,
        resource_types=resource_types,
        on_malformed=on_malformed,
        workers=workers,
        partition_bytes=partition_bytes,
        tmp_dir=tmp_dir,
    )
    yield from stream


# ClinicalRecords ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CohortRecord:
    """The outcome for one patient of a cohort run: a record, or the error (message and reason) instead."""

    patient_id: str
    record: ClinicalRecord | None
    error: str | None = None
    reason: str | None = None
    error_type: str | None = None  # the `clinical.errors` class name, e.g. "PatientDeceasedError"

    def raise_error(self) -> None:
        """Raise the error of a failed patient as its own `clinical.errors` class (no-op when ok)."""
        if self.record is not None:
            return
        error_class = getattr(clinical_errors, self.error_type or "", None)
        if not (isinstance(error_class, type) and issubclass(error_class, ClinicalError)):
            error_class = ClinicalError
        raise error_class(f"patient {self.patient_id}: {self.error}", reason=self.reason)

    @property
    def ok(self) -> bool:
        return self.record is not None


@dataclass(frozen=True)
class _RecordContext:
    """What every record worker needs, sent once per process (not once per partition)."""

    type_order: dict[str, int]
    index_dates: Mapping[str, date] | date
    medications: dict[str, FhirResource] = field(default_factory=dict)
    validation: ValidationLevel = "elements"


_WORKER_CONTEXT: _RecordContext | None = None


def _init_record_worker(context: _RecordContext) -> None:
    global _WORKER_CONTEXT
    _WORKER_CONTEXT = context


class PatientResources(SourceBase):
    """One patient's resources from a cohort stream as a `FhirSource` (in memory; no re-indexing).

    `shared` holds the export's non-patient resources a reference may point at (Medication), by "Type/id".
    `warnings` are the stream's own (e.g. malformed lines skipped), reported by `source_warnings`.
    """

    def __init__(
        self,
        patient_id: str,
        resources: Sequence[FhirResource],
        shared: Mapping[str, FhirResource] | None = None,
        *,
        warnings: Sequence[str] = (),
    ) -> None:
        self.patient_id = patient_id
        self._patient: FhirResource | None = None
        self._by_type: dict[str, list[FhirResource]] = {}
        self._own: dict[str, FhirResource] | None = None  # "Type/id" -> resource, built on the first `resolve`
        self._shared = shared or {}
        self._warnings = list(warnings)
        for resource in resources:
            resource_type = resource["resourceType"]
            if resource_type == "Patient" and resource.get("id") == patient_id and self._patient is None:
                self._patient = resource
                continue
            self._by_type.setdefault(resource_type, []).append(resource)

    def source_warnings(self, patient_id: str) -> list[str]:
        return list(self._warnings) if patient_id == self.patient_id else []

    def describe(self) -> str:
        return "Bulk Data patient record"

    def patient(self, patient_id: str) -> FhirResource:
        if patient_id != self.patient_id or self._patient is None:
            raise PatientNotFoundError(f"{self.describe()} holds no Patient with id {patient_id!r}")
        return self._patient

    def resources(self, patient_id: str, resource_types: Sequence[str]) -> Iterator[FhirResource]:
        if patient_id != self.patient_id:
            return
        for resource_type in resource_types:
            yield from self._by_type.get(resource_type, ())

    def resolve(self, reference: str) -> FhirResource | None:
        target = reference_target(reference)
        if target is None:
            return None
        if self._own is None:
            self._own = {
                f"{rtype}/{r['id']}": r
                for rtype, items in self._by_type.items()
                for r in items
                if isinstance(r.get("id"), str)
            }
        key = f"{target[0]}/{target[1]}"
        return self._own.get(key) or self._shared.get(key)

    def patient_ids(self) -> Iterator[str]:
        if self._patient is not None:
            yield self.patient_id


#: One patient's outcome as it travels back from a worker: (patient id, the record's JSON) or
#: (patient id, None, error message, reason, error class name). JSON bytes cost a fraction of pickling
#: pydantic models, and the parent decodes them one at a time, as the caller iterates.
_EncodedResult = tuple[str, bytes | None, str | None, str | None, str | None]


def _records_of_partition(
    out_dir: str, partition: int, context: _RecordContext | None = None, stream_warnings: tuple[str, ...] = ()
) -> tuple[list[_EncodedResult], int, int, list[str]]:
    """Group one partition and extract a record per patient that has an index date (in a worker process)."""
    context = context or _WORKER_CONTEXT
    if context is None:
        raise RuntimeError("record worker used without its context")
    from clinical.extract import build_record

    with gc_paused():  # a partition's JSON trees are many acyclic objects: no cycle collection while they live
        groups, orphans = _read_partition(Path(out_dir), partition, context.type_order)
        results: list[_EncodedResult] = []
        seen: list[str] = []
        for patient_id, resources in groups:
            if isinstance(context.index_dates, date):
                index_date = context.index_dates
            else:
                found = context.index_dates.get(patient_id)
                if found is None:
                    continue
                index_date = found
                seen.append(patient_id)
            try:
                source = PatientResources(patient_id, resources, context.medications, warnings=stream_warnings)
                record = build_record(source, patient_id, index_date, validation=context.validation)
            except ClinicalError as exc:
                results.append((patient_id, None, str(exc), exc.reason, type(exc).__name__))
                continue
            results.append((patient_id, record.model_dump_json().encode("utf-8"), None, None, None))
        patients = len(groups)
        del groups
    return results, patients, orphans, seen


def iter_cohort_records(
    directory: str | Path,
    index_dates: Mapping[str, date] | date,
    *,
    resource_types: Sequence[str] = DEFAULT_RESOURCE_TYPES,
    on_malformed: OnMalformed = "error",
    workers: int | None = None,
    partition_bytes: int = DEFAULT_PARTITION_BYTES,
    tmp_dir: str | Path | None = None,
    stats: StreamStats | None = None,
    validation: ValidationLevel = "elements",
) -> Iterator[CohortRecord]:
    """A `CohortRecord` per patient: extraction runs in `workers` processes, one partition at a time each.

    `index_dates`: one date for every patient, or a mapping patient id -> index date (patients not in it
    are skipped; ids in it that the export lacks come last, as PATIENT_NOT_FOUND). Per-patient failures
    (e.g. deceased before the index date, a malformed resource) are reported in the CohortRecord, never
    raised; a malformed export (a line that is not a resource) raises `FhirInputError`. Pass a
    `StreamStats` to receive the run's counts.

    `validation`: "elements" (default) checks the elements the extraction reads (`clinical.fhir_check`,
    a few microseconds a resource); "full" validates each resource used with its R4B model (about 0.08 ms
    a resource, roughly halving throughput). Records are the same for valid data. With
    `on_malformed="skip"`, every record carries a warning that the export had malformed lines skipped.
    """
    stream = PatientStream(
        directory,
        resource_types=resource_types,
        on_malformed=on_malformed,
        workers=workers,
        partition_bytes=partition_bytes,
        tmp_dir=tmp_dir,
    )
    medications = (
        stream.shared_medications() if {"MedicationRequest", "MedicationStatement"} & set(stream.resource_types) else {}
    )
    validator(validation)  # refuses an unknown level here, before any process starts
    context = _RecordContext(stream.type_order(), index_dates, medications, validation)
    found: set[str] = set()
    with ExitStack() as stack:
        # one set of worker processes for both passes (spawning them costs seconds)
        pool = stack.enter_context(_executor(stream.workers, context)) if stream.workers > 1 else None
        for out_dir in stream.partitioned(pool):
            partitions = range(stream.plan.partitions)
            warnings = _stream_warnings(stream)
            mapped = _map_partitions(str(out_dir), partitions, context, pool, stream.workers, warnings)
            for results, patients, orphans, seen in mapped:
                stream.stats.patients += patients
                stream.stats.orphan_resources += orphans
                found.update(seen)
                for result in results:
                    yield _decoded(result)
    stream._log_summary()
    if stats is not None:
        stats.__dict__.update(stream.stats.__dict__)
    if not isinstance(index_dates, date):
        for patient_id in sorted(set(index_dates) - found):
            message = f"{stream.directory.name} holds no Patient with id {patient_id!r}"
            yield CohortRecord(patient_id, None, message, "PATIENT_NOT_FOUND", "PatientNotFoundError")


_PartitionResult = tuple[list[_EncodedResult], int, int, list[str]]


def _decoded(result: _EncodedResult) -> CohortRecord:
    patient_id, data, error, reason, error_type = result
    if data is None:
        return CohortRecord(patient_id, None, error, reason, error_type)
    return CohortRecord(patient_id, ClinicalRecord.model_validate_json(data))


def _stream_warnings(stream: PatientStream) -> tuple[str, ...]:
    """What every record of a stream should say about the export (known once pass 1 has run)."""
    skipped = stream.stats.skipped_lines
    if not skipped:
        return ()
    return (
        f"Bulk Data export {stream.directory.name}: {skipped} malformed NDJSON line{'s' if skipped != 1 else ''} "
        "skipped (on_malformed='skip'); a patient's resources on those lines are missing from the record",
    )


def _map_partitions(
    out_dir: str,
    partitions: range,
    context: _RecordContext,
    pool: ProcessPoolExecutor | None,
    workers: int,
    warnings: tuple[str, ...] = (),
) -> Iterator[_PartitionResult]:
    """Records of each partition, in order; over the pool with at most 2 x workers partitions in flight."""
    if pool is None:
        for partition in partitions:
            yield _records_of_partition(out_dir, partition, context, warnings)
        return
    in_flight = 2 * workers
    pending: deque[Future[_PartitionResult]] = deque()
    for partition in partitions:
        pending.append(pool.submit(_records_of_partition, out_dir, partition, None, warnings))
        if len(pending) >= in_flight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def iter_clinical_records(
    directory: str | Path,
    index_dates: Mapping[str, date] | date,
    **options: Any,
) -> Iterator[ClinicalRecord]:
    """`iter_cohort_records`, yielding only records and raising the first per-patient error."""
    for result in iter_cohort_records(directory, index_dates, **options):
        result.raise_error()
        if result.record is not None:
            yield result.record
