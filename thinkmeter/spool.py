"""Spool directory of finished span batches: nothing is lost while the store is busy or unreachable.

A batch is one gzipped JSON document of otel_traces columns (attribute maps repeat a lot, so it shrinks
about 30x for a few ms), written atomically (tmp file, fsync, rename) under a unique, time-ordered id. `ingest_spool` inserts each batch with insert_deduplication_token = its id
and deletes it afterwards; if the process dies in between, the next ingest inserts it again and
ClickHouse drops the repeat in otel_traces and in every table fed by its materialized views.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import logging
import os
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client

from thinkmeter.schemas.tables import TRACES

log = logging.getLogger(__name__)

BATCH_SUFFIX = ".batch.json.gz"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_S = 3600.0  # a tmp file this old was left by a process that died while writing it

TRACE_COLUMN_NAMES = TRACES.column_names

Columns = Mapping[str, Sequence[Any]]


def new_batch_id() -> str:
    """Sortable by creation time, unique across processes and hosts."""
    return f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def insert_batch(client: Client, batch_id: str, columns: Columns, database: str | None = None) -> int:
    """Insert one batch idempotently: a second insert under the same id stores nothing new."""
    data = [columns[name] for name in TRACE_COLUMN_NAMES]
    rows = len(data[0])
    if rows:
        try:
            _insert(client, batch_id, data, database)
        except UnicodeEncodeError:
            _insert(client, batch_id, utf8_safe(data), database)
    return rows


def _insert(client: Client, batch_id: str, data: list[Sequence[Any]], database: str | None) -> None:
    client.insert(
        TRACES.name,
        data,
        database=database,
        column_names=TRACE_COLUMN_NAMES,
        column_type_names=TRACES.column_types,
        column_oriented=True,
        settings={
            "insert_deduplication_token": batch_id,
            "insert_deduplicate": 1,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            # Deduplication by token needs a synchronous insert; batches are large already.
            "async_insert": 0,
        },
    )


def utf8_safe(value: Any) -> Any:
    """`value` with unpaired surrogates (text no UTF-8 can hold, e.g. a model name a server sent as
    "\\udcff") written as \\u escapes; the slow path, taken only when an insert could not encode."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {utf8_safe(k): utf8_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [utf8_safe(item) for item in value]
    return value


class SpoolWriteError(OSError):
    """The spool could not take a batch (disk full, read-only, no permission); the batch is not kept."""


def write_batch(spool_dir: Path, columns: Columns, batch_id: str | None = None) -> Path:
    """Persist a batch durably; only complete files ever carry the batch suffix."""
    batch_id = batch_id or new_batch_id()
    final = spool_dir / f"{batch_id}{BATCH_SUFFIX}"
    tmp = spool_dir / f"{_TMP_PREFIX}{batch_id}"
    payload = json.dumps({"id": batch_id, "columns": columns}, separators=(",", ":"), ensure_ascii=False)
    try:
        spool_dir.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            # backslashreplace: an unpaired surrogate becomes a JSON \\u escape; insert_batch deals with it.
            handle.write(gzip.compress(payload.encode("utf-8", "backslashreplace"), compresslevel=1, mtime=0))
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a half-written tmp file would only take more of a full disk
        raise SpoolWriteError(exc.errno, f"cannot write a span batch to the spool {spool_dir}: {exc.strerror or exc}") from exc
    directory = os.open(spool_dir, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)
    return final


def read_batch(path: Path) -> tuple[str, dict[str, list[Any]]]:
    document = json.loads(gzip.decompress(path.read_bytes()))
    columns = document["columns"]
    missing = [name for name in TRACE_COLUMN_NAMES if name not in columns]
    if missing:
        raise ValueError(f"batch lacks columns {missing}")
    return document["id"], columns


def pending_batches(spool_dir: Path) -> list[Path]:
    """Finished batches, oldest first."""
    try:
        names = [entry.name for entry in os.scandir(spool_dir) if entry.name.endswith(BATCH_SUFFIX)]
    except FileNotFoundError:
        return []
    return [spool_dir / name for name in sorted(names)]


def ingest_spool(client: Client, spool_dir: Path, database: str | None = None) -> int:
    """Insert every finished batch and delete it; returns the number of spans sent (a batch sent
    before, by a process that died before deleting it, is deduplicated by the store).

    Another process already ingesting this spool makes this a no-op (0). A failed insert stops the
    ingest and raises, leaving that batch and the later ones for the next attempt.
    """
    if not spool_dir.is_dir():
        return 0
    lock_fd = os.open(spool_dir / ".ingest.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        _remove_stale_tmp_files(spool_dir)
        inserted = 0
        for path in pending_batches(spool_dir):
            try:
                batch_id, columns = read_batch(path)
            except (gzip.BadGzipFile, zlib.error, EOFError, ValueError, KeyError, TypeError) as exc:
                bad = path.with_name(path.name + ".bad")
                os.rename(path, bad)
                log.error("thinkmeter: unreadable spool batch moved aside to %s: %s", bad, exc)
                continue
            inserted += insert_batch(client, batch_id, columns, database)
            path.unlink(missing_ok=True)
        return inserted
    finally:
        os.close(lock_fd)  # closing releases the flock


def _remove_stale_tmp_files(spool_dir: Path) -> None:
    cutoff = time.time() - _STALE_TMP_S
    for entry in os.scandir(spool_dir):
        if entry.name.startswith(_TMP_PREFIX) and entry.stat().st_mtime < cutoff:
            Path(entry.path).unlink(missing_ok=True)
