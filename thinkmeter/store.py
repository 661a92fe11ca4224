"""One way to reach the store: a ClickHouse server when a URL is configured, else the embedded one.

The embedded store (chDB under data_dir) is owned by `thinkmeter serve` while it runs; applications
never open it (they write segments, see thinkmeter.segments). Readers call

    store_session(settings, timeout_s=...)  -> a clickhouse-connect client, schema in place
    query_rows(settings, sql, params)       -> rows as dicts

which pick, in order: the ClickHouse server at settings.clickhouse_url; `thinkmeter serve` when it
runs for settings.data_dir (found through <data_dir>/serve.json; the client speaks serve's read-only
HTTP interface and its inserts become segments that serve ingests); else the embedded store opened in
this process, after ingesting the pending segments. chDB lets only one process at a time open a data
directory, so every embedded use goes through `embedded_store`, which holds an exclusive lock on
data_dir/store.lock (shared by the threads of one process).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from thinkmeter.config import Settings, redacted_url
from thinkmeter.schemas.ddl import quote_identifier, schema_files, ttl_statements
from thinkmeter.segments import SegmentWriter, ingest_segments

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT_S = 30.0
_LOCK_POLL_S = 0.05


class StoreBusy(TimeoutError):
    """Another process holds the embedded store for longer than we were willing to wait."""


class StoreNotInForkedChild(StoreBusy):
    """chDB's engine, once started, hangs any process forked from it that opens a store: such a child
    cannot read the embedded store itself (without `thinkmeter serve`)."""


# Set once this process starts chDB's engine; a child forked after that never opens the store.
_engine_started = False
_engine_inherited = False
FORKED_CHILD_MESSAGE = (
    "this process was forked from one that had the embedded store open, and chDB cannot start again in it; "
    "run `thinkmeter serve` for this data dir and read through it"
)


# ---------------------------------------------------------------------------------------------- clients


def server_client_args(url: str) -> dict[str, Any]:
    """get_client keyword arguments for http(s)://user:password@host:port/database."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"clickhouse_url {redacted_url(url)} is not a ClickHouse HTTP URL; use http(s)://user:password@host:port/database"
        )
    args: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port or (8443 if parts.scheme == "https" else 8123),
        "interface": parts.scheme,
        "username": unquote(parts.username) if parts.username else "default",
        "password": unquote(parts.password) if parts.password else "",
    }
    database = parts.path.strip("/")
    if database:
        args["database"] = database
    return args


def open_client(settings: Settings) -> Client:
    """A client on the configured store. For the embedded store use store_session (it takes the lock)."""
    if settings.clickhouse_url:
        return clickhouse_connect.get_client(**server_client_args(settings.clickhouse_url))
    global _engine_started
    if _engine_inherited:
        raise StoreNotInForkedChild(FORKED_CHILD_MESSAGE)
    settings.chdb_dir.mkdir(parents=True, exist_ok=True)
    _engine_started = True
    try:
        return clickhouse_connect.get_client(interface="chdb", path=str(settings.chdb_dir))
    except ImportError as exc:
        raise RuntimeError(
            "the embedded store needs chDB: pip install 'thinkmeter[embedded]', "
            "or set THINKMETER_CLICKHOUSE_URL to a ClickHouse server"
        ) from exc


def store_database(settings: Settings) -> str:
    """The database thinkmeter's tables live in."""
    if settings.clickhouse_url:
        return server_client_args(settings.clickhouse_url).get("database", "default")
    return "default"


def store_label(settings: Settings) -> str:
    """Where the store is, for messages (no password)."""
    if settings.clickhouse_url:
        parts = urlsplit(settings.clickhouse_url)
        return f"ClickHouse at {parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path}"
    return f"embedded chDB store at {settings.chdb_dir}"


# ------------------------------------------------------------------------------------------------ schema


@dataclass(frozen=True)
class SchemaAction:
    name: str
    status: str  # "applied", "already applied", "changed since applied (not re-applied)"


def applied_schema_files(client: Client, database: str = "default") -> dict[str, str]:
    """{file name: checksum} recorded in thinkmeter_schema_migrations."""
    table = f"{quote_identifier(database)}.thinkmeter_schema_migrations"
    result = client.query(f"SELECT name, argMax(checksum, applied_at) FROM {table} GROUP BY name")
    return dict(result.result_rows)


def apply_schema(
    client: Client, cluster: str | None = None, database: str = "default", ttl_days: int | None = None
) -> list[SchemaAction]:
    """Create what is missing; files already recorded as applied are skipped (running it again is a no-op).

    With ttl_days, tables that already exist get that TTL too.
    """
    if database != "default":
        on_cluster = f" ON CLUSTER {quote_identifier(cluster)}" if cluster else ""
        client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}{on_cluster}")
    files = schema_files(cluster, database, ttl_days)
    for statement in files[0].statements:  # the migrations table itself
        client.command(statement)
    applied = applied_schema_files(client, database)
    actions = []
    for schema_file in files:
        if schema_file.name in applied:
            same = applied[schema_file.name] == schema_file.checksum
            actions.append(
                SchemaAction(schema_file.name, "already applied" if same else "changed since applied (not re-applied)")
            )
            continue
        for statement in schema_file.statements:
            client.command(statement)
        client.insert(
            "thinkmeter_schema_migrations",
            [[schema_file.name, schema_file.version, schema_file.checksum]],
            database=database,
            column_names=["name", "version", "checksum"],
            column_type_names=["String", "UInt32", "String"],
        )
        actions.append(SchemaAction(schema_file.name, "applied"))
    if ttl_days is not None:
        for table, statement in ttl_statements(cluster, database, ttl_days):
            client.command(statement)
            actions.append(SchemaAction(table, f"TTL set to {ttl_days} days"))
    return actions


_schema_ready: set[str] = set()
_schema_ready_lock = threading.Lock()


def ensure_schema(client: Client, settings: Settings) -> None:
    """apply_schema once per process and store, so a fresh install works without `schema apply`."""
    key = settings.clickhouse_url or str(settings.chdb_dir)
    if key in _schema_ready:
        return
    with _schema_ready_lock:
        if key not in _schema_ready:
            database = store_database(settings)
            if not _schema_complete(client, database):
                apply_schema(client, database=database)
            _schema_ready.add(key)


def _schema_complete(client: Client, database: str) -> bool:
    """Every schema file already applied: a least-privilege writer (insert only) then needs no DDL rights."""
    try:
        applied = applied_schema_files(client, database)
    except Exception:  # no migrations table yet (a fresh store), or no right to read it
        return False
    return all(f.name in applied for f in schema_files(database=database))


# -------------------------------------------------------------------------------------------- store lock


class _StoreLock:
    """flock on data_dir/store.lock, shared by all threads of this process and counted."""

    def __init__(self, path: Path):
        self.path = path
        self._mutex = threading.Lock()
        self._holders = 0
        self._fd: int | None = None

    def acquire(self, timeout_s: float) -> None:
        if _engine_inherited:
            raise StoreNotInForkedChild(FORKED_CHILD_MESSAGE)
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            with self._mutex:
                if self._holders or self._try_flock():
                    self._holders += 1
                    return
            if time.monotonic() >= deadline:
                raise StoreBusy(
                    f"the embedded store {self.path.parent} is in use by another process ({self._owner()}); "
                    f"waited {timeout_s:g}s. Retry when it has finished, or run `thinkmeter serve` for this "
                    "data dir so that every reader goes through it."
                )
            time.sleep(_LOCK_POLL_S)

    def release(self) -> None:
        with self._mutex:
            self._holders -= 1
            if self._holders == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
                self._fd = None

    def forget_after_fork(self) -> None:
        # A forked child shares the parent's open file description: it must not think it holds the lock.
        self._mutex = threading.Lock()
        self._holders = 0
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _try_flock(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def _owner(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            pid = ""
        return f"pid {pid}" if pid else "unknown pid"


_locks: dict[Path, _StoreLock] = {}
_locks_mutex = threading.Lock()


def _lock_for(settings: Settings) -> _StoreLock:
    path = (settings.data_dir / "store.lock").resolve()
    with _locks_mutex:
        lock = _locks.get(path)
        if lock is None:
            lock = _locks[path] = _StoreLock(path)
        return lock


def _forget_locks_after_fork() -> None:
    global _locks_mutex, _engine_inherited
    _engine_inherited = _engine_started
    _locks_mutex = threading.Lock()
    for lock in _locks.values():
        lock.forget_after_fork()


os.register_at_fork(after_in_child=_forget_locks_after_fork)


# ------------------------------------------------------------------------------------------------ sessions


@contextmanager
def embedded_store(settings: Settings, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[Client]:
    """The embedded chDB store, locked against other processes; raises StoreBusy after timeout_s."""
    lock = _lock_for(settings)
    lock.acquire(timeout_s)
    try:
        client = open_client(settings.model_copy(update={"clickhouse_url": None}))
        try:
            yield client
        finally:
            client.close()
    finally:
        lock.release()


@contextmanager
def store_session(settings: Settings, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[Client]:
    """A client on the configured store with the schema in place: the server; `thinkmeter serve` when it
    runs for settings.data_dir; else the locked embedded store, with the pending segments ingested."""
    if settings.clickhouse_url:
        client = open_client(settings)
        try:
            ensure_schema(client, settings)
            yield client
        finally:
            client.close()
        return
    serve_client = _serve_client(settings)
    if serve_client is not None:
        try:
            yield serve_client
        finally:
            serve_client.close()
        return
    with embedded_store(settings, timeout_s) as client:
        ensure_schema(client, settings)
        ingest_pending(client, settings)
        yield client


def ingest_pending(client: Client, settings: Settings) -> int:
    """The segments are the embedded store's inbox: whoever opens the store brings it up to date first."""
    try:
        return ingest_segments(client, settings.segments_dir)
    except Exception as exc:  # reading must still work; the segments stay for the next try
        log.warning("thinkmeter: could not ingest segments from %s: %s", settings.segments_dir, exc)
        return 0


def _serve_client(settings: Settings) -> Client | None:
    from thinkmeter.serve.discovery import find_serve

    found = find_serve(settings.data_dir)
    if found is None:
        return None
    from thinkmeter.serve.client import ServeClient

    return ServeClient(found, SegmentWriter(settings.segments_dir, settings.segments_max_bytes))


def query_rows(settings: Settings, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run one read query on the configured store; rows as dicts keyed by column name."""
    with store_session(settings) as client:
        return list(client.query(sql, parameters=dict(parameters or {})).named_results())
