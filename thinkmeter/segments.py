"""Segment files: how the application writes rows without ever opening the store.

A segment is one ClickHouse Native block (column names and types included, so it is self-describing)
for one table, in its own file under <data_dir>/segments: `<table>.<id>.native`, where the id is
sortable by creation time and unique across processes (`<time_ns>-<pid>-<random>`). Native was picked
by measuring (benchmarks/segment_formats.py): it costs the writer ~2x less CPU than JSONEachRow, is 4x
smaller, and chDB loads it ~3x faster; it keeps the collector-compatible otel_traces shape because the
columns are the collector's columns.

Writers (`SegmentWriter`) never lock anything and never wait: each file is written under a temporary
name and renamed into place, so a reader only ever sees whole segments, any number of processes
(gunicorn/uvicorn workers, forked children) can write at once, and the directory is bounded in bytes
(a segment that would not fit is refused with SegmentWriteError; the caller counts and drops it).
The exporter writes one segment per batch, so segments rotate by size (batch_size spans) and by time
(flush_interval_s).

`ingest_segments` moves pending segments into the store in large batches, idempotently: a batch is
first claimed by renaming its segments into `.claimed/<table>.<batch id>/`, then inserted with
insert_deduplication_token = the batch id, then deleted. A claim left by a process that died is
inserted again under the same token, and ClickHouse drops the repeat in the table and in every table
its materialized views feed. Only one process ingests a directory at a time (flock, non-blocking).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import sys
import threading
import time
import uuid
import weakref
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

from thinkmeter.schemas.ddl import quote_identifier
from thinkmeter.schemas.tables import TRACES

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".native"
_TMP_PREFIX = ".tmp-"
_CLAIMED = ".claimed"
_BAD_SUFFIX = ".bad"
_STALE_TMP_S = 3600.0  # a tmp file this old was left by a process that died while writing it
_SIZE_RESCAN_S = 5.0  # how stale the writer's idea of the directory's size may get
DEFAULT_BATCH_BYTES = 64 << 20  # one ingest insert: ~140k spans

# otel_traces columns we write, in insert order (the OTel Collector's clickhouseexporter), from the contract.
TRACE_COLUMNS = TRACES.columns
TRACE_COLUMN_NAMES = TRACES.column_names
TRACES_TABLE = TRACES.name

# The dedup settings every segment insert carries (the token is added per batch).
_DEDUP_SETTINGS = {
    "insert_deduplicate": 1,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    # Deduplication by token needs a synchronous insert; batches are large already.
    "async_insert": 0,
    # The rollups fed from llm_calls run side by side: ingest 64-73k spans/s instead of 60-64k on 2 cores.
    "parallel_view_processing": 1,
}


class SegmentWriteError(OSError):
    """A segment could not be written (directory full, disk full, read-only, no permission): not kept."""


def new_segment_id() -> str:
    """Sortable by creation time, unique across processes and hosts."""
    return f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------------------------------ Native block

_types_cache: dict[str, Any] = {}


def native_block(columns: Sequence[tuple[str, str]], data: Sequence[Sequence[Any]]) -> bytes:
    """One Native block of column-oriented `data` (name/type pairs in `columns`), encoded by
    clickhouse-connect's own serializer (the bytes its HTTP inserts send)."""
    from clickhouse_connect.datatypes.registry import get_from_name
    from clickhouse_connect.driver.insert import InsertContext

    types = []
    for _, type_name in columns:
        ch_type = _types_cache.get(type_name)
        if ch_type is None:
            ch_type = _types_cache[type_name] = get_from_name(type_name)
        types.append(ch_type)
    names = [name for name, _ in columns]
    rows = len(data[0]) if data else 0
    encoded = _encode(InsertContext("t", names, types, data, column_oriented=True, block_size=max(rows, 1)))
    if encoded is None:  # an unpaired surrogate (text no UTF-8 can hold): escape it, the slow path
        encoded = _encode(InsertContext("t", names, types, utf8_safe(data), column_oriented=True, block_size=max(rows, 1)))
    # The first chunk starts with the "INSERT INTO t (...) FORMAT Native\n" line an HTTP insert sends.
    return encoded[encoded.index(b"\n") + 1 :]


def _encode(context: Any) -> bytes | None:
    """The block's bytes; None when a text could not be encoded as UTF-8."""
    from clickhouse_connect.driver.transform import NativeTransform

    failures: list[Exception] = []
    encoded = b"".join(NativeTransform.build_insert(context, failures.append))
    if failures:
        if isinstance(failures[0], UnicodeEncodeError):
            return None
        raise failures[0]
    return encoded


def block_rows(block: bytes | memoryview) -> int:
    """Row count of one Native block: its header is LEB128 column count, then LEB128 row count."""
    position = 0
    values = []
    for _ in range(2):
        value = shift = 0
        while True:
            byte = block[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        values.append(value)
    return values[1]


def utf8_safe(value: Any) -> Any:
    """`value` with unpaired surrogates (e.g. a model name a server sent as "\\udcff") as \\u escapes."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {utf8_safe(k): utf8_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [utf8_safe(item) for item in value]
    return value


# ------------------------------------------------------------------------------------------------ writer


class SegmentWriter:
    """Writes segments into one directory, keeping it under `max_bytes`; thread- and fork-safe, no locks
    between processes. Also a stand-in for `client.insert` (metric points, alert events)."""

    def __init__(self, directory: Path, max_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes
        self._mutex = threading.Lock()
        self._size = 0
        self._sized_at = float("-inf")
        _writers.add(self)

    def forget_after_fork(self) -> None:
        # The parent's export thread may have held the mutex at the fork: the child starts afresh.
        self._mutex = threading.Lock()
        self._sized_at = float("-inf")

    def write(self, table: str, block: bytes, segment_id: str | None = None) -> Path:
        """Persist one Native block for `table`; only whole files ever carry the segment suffix."""
        segment_id = segment_id or new_segment_id()
        if not self._reserve(len(block)):
            raise SegmentWriteError(
                28,  # ENOSPC: the same "no room" the disk itself would give
                f"the segments directory {self.directory} is full ({self.max_bytes >> 20} MiB); "
                "is `thinkmeter serve` running for this data dir?",
            )
        final = self.directory / f"{table}.{segment_id}{SEGMENT_SUFFIX}"
        tmp = self.directory / f"{_TMP_PREFIX}{table}.{segment_id}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as handle:
                handle.write(block)
            os.rename(tmp, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()  # a half-written tmp file would only take more of a full disk
            with self._mutex:
                self._size -= len(block)
            raise SegmentWriteError(exc.errno, f"cannot write a segment to {self.directory}: {exc.strerror or exc}") from exc
        return final

    def insert(
        self,
        table: str,
        data: Sequence[Sequence[Any]],
        database: str | None = None,
        column_names: Sequence[str] = (),
        column_type_names: Sequence[str] = (),
        column_oriented: bool = False,
    ) -> None:
        """`client.insert` for the embedded store seen from outside: rows become one segment of `table`."""
        if not data:
            return
        columns = data if column_oriented else [list(column) for column in zip(*data)]
        self.write(table, native_block(list(zip(column_names, column_type_names)), columns))

    def _reserve(self, size: int) -> bool:
        with self._mutex:
            now = time.monotonic()
            if now - self._sized_at > _SIZE_RESCAN_S or self._size + size > self.max_bytes:
                self._size = directory_bytes(self.directory)
                self._sized_at = now
            if self._size + size > self.max_bytes:
                return False
            self._size += size
            return True


_writers: weakref.WeakSet[SegmentWriter] = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [writer.forget_after_fork() for writer in list(_writers)])


def directory_bytes(directory: Path) -> int:
    """Bytes of the segments under `directory`, pending and claimed."""
    total = 0
    for path in kept_segments(directory):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def kept_segments(directory: Path) -> list[Path]:
    """Every segment not yet in the store: claimed by an ingest that has not finished, then pending."""
    claimed = [segment for claim in _claims(directory / _CLAIMED) for segment in _claim_segments(claim)]
    return claimed + pending_segments(directory)


# ------------------------------------------------------------------------------------------------ ingest


def pending_segments(directory: Path) -> list[Path]:
    """Whole segments not yet claimed, oldest first per table."""
    try:
        names = [entry.name for entry in os.scandir(directory) if entry.name.endswith(SEGMENT_SUFFIX) and not entry.name.startswith(".")]
    except FileNotFoundError:
        return []
    return [directory / name for name in sorted(names)]


def segment_table(path: Path) -> str:
    return path.name.split(".", 1)[0]


def ingest_segments(
    client: Any,
    directory: Path,
    database: str | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    one_per_insert: bool = False,
) -> int:
    """Insert every pending segment through `client` (clickhouse-connect, chDB or HTTP) in batches of
    about `batch_bytes`, then delete them; returns the rows inserted. One segment per insert (its own id
    as the token) with `one_per_insert`: what the server exporter retries after an insert that may
    have landed under that id.

    Another process already ingesting this directory makes this a no-op (0). A failed insert raises,
    leaving its claim and the later segments for the next attempt.
    """
    if not directory.is_dir():
        return 0
    lock_fd = os.open(directory / ".ingest.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        _remove_stale_tmp_files(directory)
        claimed = directory / _CLAIMED
        rows = sum(_insert_claim(client, claim, database) for claim in _claims(claimed))  # left by a crash
        while True:
            batch = _next_batch(pending_segments(directory), 1 if one_per_insert else 0, batch_bytes)
            if not batch:
                return rows
            table, segments = batch
            first_id = segments[0].name[len(table) + 1 : -len(SEGMENT_SUFFIX)]
            claim = claimed / (f"{table}.{first_id}" if len(segments) == 1 else f"{table}.{first_id}+{len(segments)}")
            claim.mkdir(parents=True, exist_ok=True)
            for segment in segments:
                os.rename(segment, claim / segment.name)
            rows += _insert_claim(client, claim, database)
    finally:
        os.close(lock_fd)  # closing releases the flock


def _next_batch(pending: list[Path], max_count: int, batch_bytes: int) -> tuple[str, list[Path]] | None:
    """The oldest table's segments, up to batch_bytes (at least one), or max_count when not 0."""
    if not pending:
        return None
    table = segment_table(pending[0])
    batch, size = [], 0
    for segment in pending:
        if segment_table(segment) != table:
            continue
        try:
            segment_size = segment.stat().st_size
        except FileNotFoundError:
            continue
        if batch and (size + segment_size > batch_bytes or (max_count and len(batch) >= max_count)):
            break
        batch.append(segment)
        size += segment_size
    return (table, batch) if batch else None


def _claims(claimed: Path) -> list[Path]:
    try:
        return sorted(Path(entry.path) for entry in os.scandir(claimed) if entry.is_dir())
    except FileNotFoundError:
        return []


def _claim_segments(claim: Path) -> list[Path]:
    try:
        return sorted(Path(entry.path) for entry in os.scandir(claim) if entry.name.endswith(SEGMENT_SUFFIX))
    except FileNotFoundError:
        return []


def _insert_claim(client: Any, claim: Path, database: str | None) -> int:
    """Insert a claimed batch under its name as the dedup token, then delete it."""
    table = claim.name.split(".", 1)[0]
    segments = _claim_segments(claim)
    blocks = [p.read_bytes() for p in segments]
    rows = 0
    try:
        rows = insert_blocks(client, table, database, claim.name, blocks)
    except Exception as exc:
        if not _is_data_error(exc):
            raise
        rows = _insert_one_by_one(client, table, database, claim, segments, blocks)
    shutil.rmtree(claim, ignore_errors=True)
    return rows


def insert_blocks(client: Any, table: str, database: str | None, token: str, blocks: list[bytes]) -> int:
    """Insert Native blocks as one insert, idempotently: a second insert under `token` stores nothing new."""
    rows = sum(block_rows(block) for block in blocks)
    if rows:
        target = f"{quote_identifier(database)}.{quote_identifier(table)}" if database else quote_identifier(table)
        client.raw_insert(
            target, None, b"".join(blocks), settings={**_DEDUP_SETTINGS, "insert_deduplication_token": token}, fmt="Native"
        )
    return rows


def _insert_one_by_one(
    client: Any, table: str, database: str | None, claim: Path, segments: list[Path], blocks: list[bytes]
) -> int:
    """A batch the store refused as data: insert its segments one at a time and set aside the bad ones."""
    rows = 0
    for segment, block in zip(segments, blocks):
        try:
            rows += insert_blocks(client, table, database, f"{claim.name}/{segment.name}", [block])
        except Exception as exc:
            if not _is_data_error(exc):
                raise
            bad = claim.parent.parent / (segment.name + _BAD_SUFFIX)
            os.rename(segment, bad)
            log.error("thinkmeter: the store refused segment %s; moved aside to %s: %s", segment.name, bad, exc)
    return rows


# ClickHouse error codes for data it cannot read: a corrupt or truncated block, a column or type the
# table does not have. Any other failure (store down, out of memory) is retried as it is.
_DATA_ERROR_CODES = frozenset({6, 8, 16, 26, 27, 32, 33, 38, 41, 50, 53, 62, 69, 72, 117, 131})
_ERROR_CODE = re.compile(r"Code: (\d+)\.")


def _is_data_error(exc: Exception) -> bool:
    """The store understood the request and refused its data: retrying the same bytes would fail forever."""
    if isinstance(exc, IndexError):  # block_rows on a truncated header
        return True
    match = _ERROR_CODE.search(str(exc))
    return bool(match) and int(match.group(1)) in _DATA_ERROR_CODES


def _remove_stale_tmp_files(directory: Path) -> None:
    cutoff = time.time() - _STALE_TMP_S
    for entry in os.scandir(directory):
        if entry.name.startswith(_TMP_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    Path(entry.path).unlink(missing_ok=True)


# ------------------------------------------------------------------------------ otel_traces, in Python
#
# The application's export thread encodes its otel_traces blocks itself: the code below is the whole
# of it, so an application never imports clickhouse-connect (20 MB, 0.5 s of start-up). The layout is
# clickhouse-connect's (and ClickHouse's): LowCardinality columns carry a version prefix before any
# data, then per block a fresh dictionary (flags, keys) and one index per row.

_PREFIXES = [bytes((length,)) for length in range(128)]
_STRINGS: dict[str, bytes] = {}  # length-prefixed UTF-8 of short texts that repeat (keys, models, sources)
_STRINGS_MAX = 4096
_LITTLE_ENDIAN = sys.byteorder == "little"
_LOW_CARDINALITY_VERSION = (1).to_bytes(8, "little")
_NEW_DICTIONARY = (1 << 9) | (1 << 10)  # additional keys + dictionary in this block
_INDEX_CODES = ((0xFF, "B", 0), (0xFFFF, "H", 1), (0xFFFFFFFF, "I", 2), (1 << 64, "Q", 3))


def trace_block(columns: Mapping[str, Sequence[Any]]) -> bytes:
    """otel_traces columns (as export.spans_to_columns builds them) as one Native block."""
    rows = len(columns["Timestamp"])
    out = bytearray()
    _leb128(len(TRACE_COLUMNS), out)
    _leb128(rows, out)
    for name, type_name in TRACE_COLUMNS:
        _string(name, out)
        _string(type_name, out)
        if "LowCardinality(" in type_name:
            out += _LOW_CARDINALITY_VERSION
        _COLUMN_WRITERS[type_name](columns[name], out)
    return bytes(out)


def _leb128(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _string(value: str, out: bytearray) -> None:
    raw = value.encode("utf-8", "backslashreplace")
    _leb128(len(raw), out)
    out += raw


def _strings(values: Sequence[Any], out: bytearray) -> None:
    encoded = list(map(_STRINGS.get, values))  # most texts repeat: one C-level pass finds them
    if None in encoded:
        for position, found in enumerate(encoded):
            if found is None:
                encoded[position] = _encoded(values[position])
    out += b"".join(encoded)


def _encoded(value: Any) -> bytes:
    # backslashreplace: an unpaired surrogate (text no UTF-8 can hold) becomes a \udcff escape.
    raw = (value if type(value) is str else str(value)).encode("utf-8", "backslashreplace")
    size = len(raw)
    if size >= 128:
        length = bytearray()
        _leb128(size, length)
        return bytes(length) + raw
    encoded = _PREFIXES[size] + raw
    if size <= 48:
        if len(_STRINGS) >= _STRINGS_MAX:
            _STRINGS.clear()  # ids and durations never repeat and fill it: start again with what repeats now
        _STRINGS[value] = encoded
    return encoded


def _packed(code: str, values: Sequence[int], out: bytearray) -> None:
    packed = array(code, values)
    if not _LITTLE_ENDIAN:
        packed.byteswap()
    out += packed.tobytes()


def _int64s(values: Sequence[int], out: bytearray) -> None:
    _packed("q", values, out)


def _uint64s(values: Sequence[int], out: bytearray) -> None:
    _packed("Q", values, out)


def _low_cardinality_strings(values: Sequence[str], out: bytearray) -> None:
    if not values:
        return
    keys = list(dict.fromkeys(values))
    positions = {key: position for position, key in enumerate(keys)}
    indexes = list(map(positions.__getitem__, values))
    _, code, index_type = next(entry for entry in _INDEX_CODES if len(keys) <= entry[0])
    _uint64s([_NEW_DICTIONARY | index_type, len(keys)], out)
    _strings(keys, out)
    _uint64s([len(indexes)], out)
    _packed(code, indexes, out)


def _offsets(lengths: Iterable[int], out: bytearray) -> None:
    _uint64s(list(accumulate(lengths)), out)


def _attribute_maps(values: Sequence[Mapping[str, str]], out: bytearray) -> None:
    _offsets(map(len, values), out)
    _low_cardinality_strings([key for mapping in values for key in mapping], out)
    _strings([value for mapping in values for value in mapping.values()], out)


def _array_of(write: Callable[[Sequence[Any], bytearray], None]) -> Callable[[Sequence[Sequence[Any]], bytearray], None]:
    def write_arrays(values: Sequence[Sequence[Any]], out: bytearray) -> None:
        _offsets(map(len, values), out)
        write([item for array_value in values for item in array_value], out)

    return write_arrays


_COLUMN_WRITERS: dict[str, Callable[[Sequence[Any], bytearray], None]] = {
    "DateTime64(9)": _int64s,
    "UInt64": _uint64s,
    "String": _strings,
    "LowCardinality(String)": _low_cardinality_strings,
    "Map(LowCardinality(String), String)": _attribute_maps,
}
_COLUMN_WRITERS.update({f"Array({name})": _array_of(writer) for name, writer in list(_COLUMN_WRITERS.items())})
