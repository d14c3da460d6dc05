"""Work directories of resumable cohort jobs: a manifest, a lock, atomic parts, input fingerprints.

A job (`cohort score`, `cohort features`) keeps its finished work in a directory beside its output
(`OUT.work/` by default):

    OUT.work/
      manifest.json          what the work is for: the input's fingerprint, the model's sha256, the options
      lock                   the pid and host of the run using the directory (stale locks are taken over)
      part-000000.parquet    one file per finished chunk, written to a temporary name and renamed, so a
      part-000001.parquet    part that exists is complete
      ...

A rerun with the same manifest resumes: finished parts are kept (never recomputed, never rewritten). A
rerun whose input, model or options differ is refused with the difference named, unless the caller
asks to restart (the old work is then discarded). The final output is assembled from the parts in chunk
order, one part in memory at a time, and the work directory is removed.

Fingerprints identify an input without reading it whole: size, modification time and the sha256 of its
first and last MiB (for Parquet the last MiB holds the footer: row groups, row counts, schema); for a
folder, the same for every file in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from fusion.errors import CohortError

MANIFEST: Final = "manifest.json"
LOCK: Final = "lock"
PART_PREFIX: Final = "part-"
_TMP_MARK: Final = ".tmp-"
_EDGE_BYTES: Final = 1 << 20
_DIR_EDGE_BYTES: Final = 64 << 10
MAX_FOLDER_FILES: Final = 100_000
CRASH_HOOK_ENV: Final = "OSTEORISK_COHORT_CRASH_AFTER_PARTS"
"""Test hook: when set to N, a cohort job ends abruptly (`os._exit(CRASH_EXIT_CODE)`, nothing cleaned up,
the lock left behind) right after it has committed its N-th part or result, like a killed process."""
CRASH_EXIT_CODE: Final = 75


def crash_after() -> int | None:
    """N of the crash test hook (`CRASH_HOOK_ENV`), or None when unset."""
    raw = os.environ.get(CRASH_HOOK_ENV)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise CohortError(f"{CRASH_HOOK_ENV} must be an integer, got {raw!r}") from None
    return value if value > 0 else None


def default_work_dir(out: Path) -> Path:
    """`OUT.work` beside the output."""
    return out.with_name(out.name + ".work")


def _edge_digests(path: Path, edge: int) -> tuple[str, str]:
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = hashlib.sha256(handle.read(edge)).hexdigest()
        handle.seek(max(0, size - edge))
        tail = hashlib.sha256(handle.read(edge)).hexdigest()
    return head, tail


def fingerprint(path: str | Path) -> dict[str, Any]:
    """A JSON-ready identity of a file or folder: size, mtime and head/tail sha256 (module docstring).

    The file's name is recorded for messages but is not part of the identity (`same_input`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_file():
        stat = path.stat()
        head, tail = _edge_digests(path, _EDGE_BYTES)
        return {
            "kind": "file",
            "name": path.name,
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "head_sha256": head,
            "tail_sha256": tail,
        }
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if len(files) > MAX_FOLDER_FILES:
        raise CohortError(
            f"{path.name}: more than {MAX_FOLDER_FILES:,} files; point to the folder that holds the data",
            reason="TOO_MANY_FILES",
        )
    digest = hashlib.sha256()
    total = 0
    latest = 0
    for file in files:
        stat = file.stat()
        head, tail = _edge_digests(file, _DIR_EDGE_BYTES)
        line = f"{file.relative_to(path).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\t{head}\t{tail}\n"
        digest.update(line.encode("utf-8"))
        total += stat.st_size
        latest = max(latest, stat.st_mtime_ns)
    return {
        "kind": "folder",
        "name": path.name,
        "files": len(files),
        "size": total,
        "mtime_ns": latest,
        "content_sha256": digest.hexdigest(),
    }


def _identity(print_: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if print_ is None else {k: v for k, v in print_.items() if k != "name"}


def _difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """What differs between two manifests, in words (None when the work can be resumed)."""
    for key, label in (("input", "input"), ("features", "features table")):
        if _identity(old.get(key)) != _identity(new.get(key)):
            return f"the {label} changed (size, modification time or content)"
    if old.get("model_sha256") != new.get("model_sha256"):
        return (
            f"the model differs (sha256 {str(old.get('model_sha256'))[:12]}... then, "
            f"{str(new.get('model_sha256'))[:12]}... now)"
        )
    old_options, new_options = old.get("options", {}), new.get("options", {})
    changed = sorted(k for k in set(old_options) | set(new_options) if old_options.get(k) != new_options.get(k))
    if changed:
        return f"the options differ ({', '.join(changed)})"
    if old.get("format") != new.get("format"):
        return f"it was made by another job ({old.get('format')!r})"
    return None


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}{_TMP_MARK}{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class WorkDir:
    """An opened (locked) work directory; use `WorkDir.open` and `close` (or `with`)."""

    path: Path
    manifest: dict[str, Any]
    resumed: bool

    @classmethod
    def open(cls, path: str | Path, manifest: Mapping[str, Any], *, restart: bool = False) -> WorkDir:
        """Create the directory, or resume it when its manifest matches; `restart` discards old work.

        Raises `CohortError` when the directory holds other work (WORK_DIR_MISMATCH), is not a work
        directory (WORK_DIR_FOREIGN), or is locked by a live run (WORK_DIR_LOCKED)."""
        path = Path(path)
        wanted = dict(manifest)
        if path.exists() and not path.is_dir():
            raise CohortError(f"{path} exists and is not a directory", reason="WORK_DIR_FOREIGN")
        resumed = False
        if path.is_dir() and any(path.iterdir()):
            if not (path / MANIFEST).is_file():
                raise CohortError(
                    f"{path} is not empty and has no {MANIFEST}: not a work directory of osteorisk; "
                    "choose another --work-dir",
                    reason="WORK_DIR_FOREIGN",
                )
            cls._acquire(path)
            try:
                old = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = {}
            difference = _difference(old, wanted) if old else "its manifest is unreadable"
            if difference is not None and not restart:
                cls._release(path)
                raise CohortError(
                    f"{path} holds an unfinished run that cannot be resumed: {difference}; rerun with --restart "
                    "to discard it (or choose another --out / --work-dir)",
                    reason="WORK_DIR_MISMATCH",
                )
            if difference is not None or restart:
                for child in path.iterdir():
                    if child.name == LOCK:
                        continue
                    if child.is_dir():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            else:
                resumed = True
                wanted = {**old, **wanted}  # keep what the earlier run recorded (e.g. a staged input)
        else:
            path.mkdir(parents=True, exist_ok=True)
            cls._acquire(path)
        work = cls(path=path, manifest=wanted, resumed=resumed)
        work.remove_temporary()
        if not resumed:
            _write_json_atomic(path / MANIFEST, wanted)
        return work

    # ---- lock ----------------------------------------------------------------------------------------

    @staticmethod
    def _acquire(path: Path) -> None:
        lock = path / LOCK
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(lock.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    holder = {}
                pid, host = holder.get("pid"), holder.get("host")
                if isinstance(pid, int) and host == me["host"] and not _pid_alive(pid):
                    lock.unlink(missing_ok=True)  # the run that held it died: take over
                    continue
                raise CohortError(
                    f"{path} is in use by another run (pid {pid} on {host}); wait for it to finish, or delete "
                    f"{lock} if that run is gone",
                    reason="WORK_DIR_LOCKED",
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(me, handle)
            return
        raise CohortError(f"could not lock {path}", reason="WORK_DIR_LOCKED")

    @staticmethod
    def _release(path: Path) -> None:
        (path / LOCK).unlink(missing_ok=True)

    def close(self) -> None:
        """Release the lock (the work stays for a later resume)."""
        self._release(self.path)

    def __enter__(self) -> WorkDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def remove(self) -> None:
        """Delete the directory and everything in it (after the output was assembled)."""
        shutil.rmtree(self.path, ignore_errors=True)

    def remove_if_unused(self) -> None:
        """Delete the directory when a failed run left nothing worth resuming (no part, no staged input)."""
        if not self.path.is_dir():
            return
        leftover = [c for c in self.path.iterdir() if c.name not in (MANIFEST, LOCK) and _TMP_MARK not in c.name]
        if not leftover and not (self.path / LOCK).exists():
            self.remove()

    # ---- files ---------------------------------------------------------------------------------------

    def remove_temporary(self) -> None:
        """Delete half-written files a crashed run left behind."""
        for child in self.path.iterdir():
            if _TMP_MARK in child.name and child.is_file():
                child.unlink(missing_ok=True)

    def part_path(self, index: int) -> Path:
        return self.path / part_name(index)

    def finished_parts(self) -> dict[int, Path]:
        """Chunk index -> part file, for every part a run finished."""
        found: dict[int, Path] = {}
        for child in self.path.glob(f"{PART_PREFIX}*.parquet"):
            number = child.name[len(PART_PREFIX) : -len(".parquet")]
            if number.isdigit():
                found[int(number)] = child
        return dict(sorted(found.items()))

    def write_part(self, index: int, table: pa.Table) -> Path:
        """Write one finished chunk atomically (see `write_part_file`)."""
        return write_part_file(self.path, index, table)

    def temporary_path(self, name: str) -> Path:
        """A path in the directory for a file that becomes final by `os.replace`."""
        return self.path / f".{name}{_TMP_MARK}{os.getpid()}"

    def update_manifest(self, **fields: Any) -> None:
        self.manifest.update(fields)
        _write_json_atomic(self.path / MANIFEST, self.manifest)


def part_name(index: int) -> str:
    return f"{PART_PREFIX}{index:06d}.parquet"


def write_part_file(directory: str | Path, index: int, table: pa.Table) -> Path:
    """Write chunk `index` into a work directory atomically: a temporary name, fsync, rename. Any process on
    the machine may call it (worker processes write their own parts). Parts are uncompressed and
    dictionary-free: they are read once, when the output is assembled, and writing them must be cheap."""
    final = Path(directory) / part_name(index)
    tmp = final.with_name(f".{final.name}{_TMP_MARK}{os.getpid()}-{threading.get_ident()}")
    pq.write_table(table, tmp, compression="none", use_dictionary=False)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    return final


def unified_schema(schemas: Iterable[pa.Schema], metadata: Mapping[bytes, bytes] | None = None) -> pa.Schema:
    """One schema for parts whose inferred types differ (a column all-null in one chunk, say)."""
    schemas = list(schemas)
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise CohortError(f"the finished parts have incompatible columns: {exc}", reason="PART_SCHEMA") from exc
    merged = dict(schemas[0].metadata or {}) if schemas else {}
    merged.update(metadata or {})
    return schema.with_metadata(merged)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            columns.append(column if column.type == field.type else column.cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def assemble_parts(
    parts: Iterable[Path], out: Path, *, metadata: Mapping[bytes, bytes] | None = None, tmp: Path | None = None
) -> int:
    """Concatenate part files (in the given order) into one Parquet file, atomically; returns its rows.

    One part is in memory at a time; each becomes a row group of the output."""
    parts = list(parts)
    if not parts:
        raise CohortError("no finished parts to assemble", reason="EMPTY_RESULT")
    schema = unified_schema((pq.read_schema(p) for p in parts), metadata)
    out.parent.mkdir(parents=True, exist_ok=True)
    target = tmp or out.with_name(f".{out.name}{_TMP_MARK}{os.getpid()}")
    rows = 0
    try:
        with pq.ParquetWriter(target, schema) as writer:
            for part in parts:
                table = _conform(pq.read_table(part), schema)
                writer.write_table(table)
                rows += table.num_rows
        os.replace(target, out)
    except BaseException:
        with contextlib.suppress(OSError):
            target.unlink()
        raise
    return rows
