"""A FHIR Bulk Data export directory (NDJSON, one resource per line) as a `FhirSource`, streamed.

Bulk Data exports (HL7 FHIR Bulk Data Access IG 2.0, https://hl7.org/fhir/uv/bulkdata/) hold one file (or
several) per resource type: `Patient.ndjson`, `Observation.ndjson`, ..., the multi-file names of real
exports (`Observation.000.ndjson`, `1.Observation.ndjson`, `Observation_2.ndjson`) and gzip-compressed
`*.ndjson.gz`. The resource type comes from the file name; a file named otherwise is typed by its first
line. Each file SHALL hold resources of one type (the IG, "Response - Output File"): a line of another type
is malformed.

Nothing is loaded whole. The first request for a type indexes that type's files in one streaming pass:
per file, patient id -> (byte offset, length) of each line, kept in compact numpy arrays (16 bytes a
resource); a gzip file is decompressed once into a temporary spill file so that its lines can be read at
their offsets. A patient's resources are then read with `os.pread` at those offsets. File indexes are
cached per process (keyed by path, size and modification time), so a second source over the same export,
e.g. one per request in a server, reuses them. Cohort-wide work (every patient in turn) belongs to
`clinical.bulk.iter_patient_resources`, which partitions instead of indexing.

Malformed lines (not JSON, not a resource, of the wrong type, over `max_line_bytes`) raise
`FhirInputError` naming the file and line number; with `on_malformed="skip"` they are skipped, counted
(`skipped_lines`), logged once per file (file name and line numbers only, never content) and named in the
warnings of every record built from the file (`source_warnings`).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import tempfile
import threading
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal

import numpy as np
import orjson

from clinical.errors import FhirInputError, PatientNotFoundError
from clinical.sources.base import (
    PATIENT_REFERENCE_FIELDS,
    UTF8_BOM,
    FhirResource,
    SourceBase,
    patient_reference,
    reference_target,
)

log = logging.getLogger(__name__)

OnMalformed = Literal["error", "skip"]
NDJSON_SUFFIXES: Final = (".ndjson", ".ndjson.gz")
DEFAULT_MAX_LINE_BYTES: Final = 32 * 1024 * 1024
_TYPE_PART: Final = re.compile(r"^[A-Z][A-Za-z]{2,63}$")
_INDEX_CACHE_SIZE: Final = 64


def resource_type_from_name(path: Path) -> str | None:
    """The resource type in a Bulk Data file name ("Observation.000.ndjson.gz" -> "Observation"), or None."""
    name = path.name
    for suffix in NDJSON_SUFFIXES[::-1]:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    candidates = [part for part in re.split(r"[._\-\s]+", name) if _TYPE_PART.match(part)]
    return candidates[0] if len(candidates) == 1 else None


def open_lines(path: Path) -> BinaryIO:
    """A binary reader over an NDJSON file, decompressing `.gz` transparently."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


class MalformedLines:
    """Applies the `on_malformed` policy to bad lines of one file and reports what was skipped."""

    def __init__(self, path: Path, policy: OnMalformed, *, locate: Callable[[int], int] | None = None) -> None:
        self.path = path
        self.policy = policy
        self.count = 0
        self.first_lines: list[int] = []
        self._locate = locate  # maps a line number counted within a byte range to the file's line number

    def bad(self, line_number: int, why: str) -> None:
        if self._locate is not None and (self.policy == "error" or len(self.first_lines) < 5):
            line_number = self._locate(line_number)
        if self.policy == "error":
            raise FhirInputError(
                f"{self.path.name} line {line_number}: {why} "
                "(fix the export, or skip malformed lines with on_malformed='skip')",
                reason="INVALID_NDJSON",
            )
        self.count += 1
        if len(self.first_lines) < 5:
            self.first_lines.append(line_number)

    def report(self) -> None:
        if self.count:
            lines = ", ".join(str(n) for n in self.first_lines) + (", ..." if self.count > 5 else "")
            log.warning("%s: skipped %d malformed line(s) (lines %s)", self.path.name, self.count, lines)


def parse_line(
    line: bytes, line_number: int, *, expected_type: str | None, malformed: MalformedLines, max_line_bytes: int
) -> FhirResource | None:
    """One NDJSON line -> a resource dict; None for blank lines and skipped malformed lines."""
    if len(line) > max_line_bytes:
        malformed.bad(line_number, f"line longer than max_line_bytes={max_line_bytes}")
        return None
    if line.startswith(UTF8_BOM):  # written by some Windows tools; JSON itself has no BOM
        line = line[len(UTF8_BOM) :]
    if not line.strip():
        return None
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        malformed.bad(line_number, f"not JSON ({exc})")
        return None
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        malformed.bad(line_number, "not a FHIR resource (a JSON object with a resourceType)")
        return None
    if expected_type is not None and resource["resourceType"] != expected_type:
        malformed.bad(
            line_number,
            f"a {resource['resourceType']} in a file of {expected_type} resources "
            "(Bulk Data files hold one resource type each)",
        )
        return None
    return resource


def iter_lines(stream: BinaryIO, max_line_bytes: int) -> Iterator[tuple[bytes, int]]:
    """(line, its size in bytes) of a binary stream, newline included; a line over the cap is drained and
    returned as its first cap + 1 bytes with its true size (so that offsets stay right)."""
    limit = max_line_bytes + 1
    while True:
        line = stream.readline(limit)
        if not line:
            return
        size = len(line)
        if size == limit and not line.endswith(b"\n"):
            rest = line
            while rest and not rest.endswith(b"\n"):  # drain the over-long line without keeping it
                rest = stream.readline(limit)
                size += len(rest)
        yield line, size


def patient_key(resource: FhirResource) -> str | None:
    """The id of the patient a resource belongs to: its own id for a Patient, else its patient reference."""
    if resource["resourceType"] == "Patient":
        own = resource.get("id")
        return own if isinstance(own, str) and own else None
    reference = patient_reference(resource)
    if reference is None:
        return None
    target = reference_target(reference)
    if target is None or target[0] != "Patient":
        return None
    return target[1]


@dataclass
class _FileIndex:
    """Where each patient's lines are in one file (offsets into `data_path`: the file, or its gzip spill)."""

    source_path: Path
    data_path: Path
    resource_type: str
    patient_numbers: dict[str, int]
    keys: np.ndarray  # int32 patient numbers, sorted
    offsets: np.ndarray  # int64
    lengths: np.ndarray  # int32
    patient_order: list[str]  # patients in order of first appearance
    skipped_lines: int
    ids: dict[str, tuple[int, int]] | None = None  # resource id -> (offset, length), built for `resolve`
    spill_dir: Path | None = None
    _finalizer: Any = field(default=None, repr=False)

    def lines_of(self, patient_id: str) -> tuple[np.ndarray, np.ndarray]:
        number = self.patient_numbers.get(patient_id)
        if number is None:
            return self.offsets[:0], self.lengths[:0]
        lo = int(np.searchsorted(self.keys, number, side="left"))
        hi = int(np.searchsorted(self.keys, number, side="right"))
        return self.offsets[lo:hi], self.lengths[lo:hi]


def _build_index(path: Path, resource_type: str, policy: OnMalformed, max_line_bytes: int) -> _FileIndex:
    malformed = MalformedLines(path, policy)
    numbers: dict[str, int] = {}
    keys: list[int] = []
    offsets: list[int] = []
    lengths: list[int] = []
    spill_dir: Path | None = None
    spill: BinaryIO | None = None
    data_path = path
    if path.name.endswith(".gz"):
        spill_dir = Path(tempfile.mkdtemp(prefix="osteorisk-ndjson-"))
        data_path = spill_dir / path.name[: -len(".gz")]
        spill = data_path.open("wb")
    offset = 0
    try:
        with open_lines(path) as stream:
            try:
                for number, (line, size) in enumerate(iter_lines(stream, max_line_bytes), start=1):
                    resource = parse_line(
                        line, number, expected_type=resource_type, malformed=malformed, max_line_bytes=max_line_bytes
                    )
                    if spill is not None:  # offsets point into the spill: keep only usable lines there
                        size = len(line) if resource is not None else 0
                        if size:
                            spill.write(line)
                    if resource is not None:
                        key = patient_key(resource)
                        if key is not None:
                            keys.append(numbers.setdefault(key, len(numbers)))
                            offsets.append(offset)
                            lengths.append(len(line))
                    offset += size
            except (OSError, EOFError, zlib.error) as exc:
                raise FhirInputError(f"{path.name}: cannot be read ({exc})", reason="INVALID_NDJSON") from None
    except BaseException:
        if spill is not None:
            spill.close()
        if spill_dir is not None:
            shutil.rmtree(spill_dir, ignore_errors=True)
        raise
    if spill is not None:
        spill.close()
    malformed.report()
    key_array = np.asarray(keys, dtype=np.int32)
    order = np.argsort(key_array, kind="stable")
    index = _FileIndex(
        source_path=path,
        data_path=data_path,
        resource_type=resource_type,
        patient_numbers=numbers,
        keys=key_array[order],
        offsets=np.asarray(offsets, dtype=np.int64)[order],
        lengths=np.asarray(lengths, dtype=np.int32)[order],
        patient_order=list(numbers),
        skipped_lines=malformed.count,
        spill_dir=spill_dir,
    )
    if spill_dir is not None:
        index._finalizer = weakref.finalize(index, shutil.rmtree, str(spill_dir), True)
    return index


class _IndexCache:
    """Per-process LRU of file indexes keyed by (path, size, mtime, type, policy, cap)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[Any, ...], _FileIndex] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, resource_type: str, policy: OnMalformed, max_line_bytes: int) -> _FileIndex:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, resource_type, policy, max_line_bytes)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        built = _build_index(path, resource_type, policy, max_line_bytes)
        with self._lock:
            self._items[key] = built
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return built

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


INDEX_CACHE: Final = _IndexCache(_INDEX_CACHE_SIZE)


def discover_files(directory: Path) -> dict[str, list[Path]]:
    """Resource type -> its NDJSON files (sorted by name) in an export directory (not recursive)."""
    if not directory.is_dir():
        raise FhirInputError(f"{directory} is not a directory of NDJSON files")
    by_type: dict[str, list[Path]] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or not path.name.endswith(NDJSON_SUFFIXES):
            continue
        resource_type = resource_type_from_name(path) or _type_from_first_line(path)
        if resource_type is None:
            continue  # an empty file of unknown type holds nothing
        by_type.setdefault(resource_type, []).append(path)
    if not by_type:
        raise FhirInputError(
            f"no FHIR NDJSON files (*.ndjson, *.ndjson.gz) in {directory.name}: give a Bulk Data export directory"
        )
    return by_type


def _type_from_first_line(path: Path) -> str | None:
    try:
        with open_lines(path) as stream:
            for number, (line, _size) in enumerate(iter_lines(stream, DEFAULT_MAX_LINE_BYTES), start=1):
                if not line.strip():
                    continue
                resource = parse_line(
                    line,
                    number,
                    expected_type=None,
                    malformed=MalformedLines(path, "error"),
                    max_line_bytes=DEFAULT_MAX_LINE_BYTES,
                )
                return None if resource is None else str(resource["resourceType"])
    except (OSError, EOFError, zlib.error) as exc:
        raise FhirInputError(f"{path.name}: cannot be read ({exc})", reason="INVALID_NDJSON") from None
    return None


class NdjsonSource(SourceBase):
    """The patients of a Bulk Data export directory, read on demand through per-file line indexes."""

    def __init__(
        self,
        directory: str | Path,
        *,
        on_malformed: OnMalformed = "error",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        if on_malformed not in ("error", "skip"):
            raise ValueError(f"on_malformed must be 'error' or 'skip', got {on_malformed!r}")
        if max_line_bytes < 1024:
            raise ValueError(f"max_line_bytes must be >= 1024, got {max_line_bytes}")
        self.directory = Path(directory)
        self.on_malformed: OnMalformed = on_malformed
        self.max_line_bytes = max_line_bytes
        self.files = discover_files(self.directory)
        self._indexes: dict[str, list[_FileIndex]] = {}
        self._fds: dict[Path, int] = {}
        self._lock = threading.Lock()

    # FhirSource -------------------------------------------------------------------------------------
    def describe(self) -> str:
        count = sum(len(paths) for paths in self.files.values())
        return f"Bulk Data export {self.directory.name} ({count} NDJSON files)"

    def patient(self, patient_id: str) -> FhirResource:
        for resource in self._read(patient_id, "Patient"):
            return resource
        raise PatientNotFoundError(f"{self.describe()} holds no Patient with id {patient_id!r}")

    def resources(self, patient_id: str, resource_types: Sequence[str]) -> Iterator[FhirResource]:
        for resource_type in resource_types:
            if resource_type == "Patient" or resource_type in PATIENT_REFERENCE_FIELDS:
                yield from self._read(patient_id, resource_type)

    def resolve(self, reference: str) -> FhirResource | None:
        target = reference_target(reference)
        if target is None or target[0] not in self.files:
            return None
        resource_type, resource_id = target
        for index in self._indexes_for(resource_type):
            if index.ids is None:
                index.ids = self._id_positions(index)
            position = index.ids.get(resource_id)
            if position is not None:
                return self._load(index, position[0], position[1])
        return None

    def patient_ids(self) -> Iterator[str]:
        seen: set[str] = set()
        for index in self._indexes_for("Patient"):
            for patient_id in index.patient_order:
                if patient_id not in seen:
                    seen.add(patient_id)
                    yield patient_id

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def source_warnings(self, patient_id: str) -> list[str]:
        """Malformed lines skipped (with on_malformed='skip') in the files read so far: the record may lack
        resources that were on them."""
        with self._lock:
            indexes = [index for found in self._indexes.values() for index in found if index.skipped_lines]
        return [
            f"{index.source_path.name}: {index.skipped_lines} malformed line{'s' if index.skipped_lines != 1 else ''} "
            "skipped (on_malformed='skip'); resources on them are missing from the record"
            for index in indexes
        ]

    @property
    def skipped_lines(self) -> int:
        """Malformed lines skipped so far (with on_malformed='skip') in the files indexed."""
        return sum(index.skipped_lines for indexes in self._indexes.values() for index in indexes)

    # reading ----------------------------------------------------------------------------------------
    def _indexes_for(self, resource_type: str) -> list[_FileIndex]:
        with self._lock:
            found = self._indexes.get(resource_type)
        if found is None:
            found = [
                INDEX_CACHE.get(path, resource_type, self.on_malformed, self.max_line_bytes)
                for path in self.files.get(resource_type, [])
            ]
            with self._lock:
                self._indexes[resource_type] = found
        return found

    def _read(self, patient_id: str, resource_type: str) -> Iterator[FhirResource]:
        for index in self._indexes_for(resource_type):
            offsets, lengths = index.lines_of(patient_id)
            for offset, length in zip(offsets.tolist(), lengths.tolist(), strict=True):
                yield self._load(index, offset, length)

    def _load(self, index: _FileIndex, offset: int, length: int) -> FhirResource:
        data = os.pread(self._fd(index.data_path), length, offset)
        resource: FhirResource = orjson.loads(data[3:] if data.startswith(UTF8_BOM) else data)
        return resource

    def _fd(self, path: Path) -> int:
        with self._lock:
            fd = self._fds.get(path)
            if fd is None:
                fd = os.open(path, os.O_RDONLY)
                self._fds[path] = fd
            return fd

    def _id_positions(self, index: _FileIndex) -> dict[str, tuple[int, int]]:
        positions: dict[str, tuple[int, int]] = {}
        malformed = MalformedLines(index.source_path, "skip")  # lines were checked when indexing
        offset = 0
        with index.data_path.open("rb") as stream:
            for number, (line, size) in enumerate(iter_lines(stream, self.max_line_bytes), start=1):
                resource = parse_line(
                    line,
                    number,
                    expected_type=index.resource_type,
                    malformed=malformed,
                    max_line_bytes=self.max_line_bytes,
                )
                if resource is not None and isinstance(resource.get("id"), str):
                    positions.setdefault(resource["id"], (offset, len(line)))
                offset += size
        return positions


def open_ndjson(directory: Path, **options: Any) -> NdjsonSource:
    """The `open_source` entry point for directories; `options` are `NdjsonSource`'s keyword arguments."""
    return NdjsonSource(directory, **options)
