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
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from thinkmeter.config import Settings, redacted_url
from thinkmeter.schemas.ddl import (
    SQL_DIR,
    SchemaFile,
    add_columns_statement,
    created_object,
    drop_view_statement,
    on_cluster_clause,
    quote_identifier,
    schema_files,
    ttl_statements,
)
from thinkmeter.segments import SegmentWriter, ingest_segments

log = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT_S = 30.0
_LOCK_POLL_S = 0.05
_SERVE_RECHECK_S = 1.0


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
    # "applied", "already applied", "migrated: <what changed>", or "migrated except <type conflicts>: ..."
    status: str


def applied_schema_files(client: Client, database: str = "default") -> dict[str, str]:
    """{file name: checksum} recorded in thinkmeter_schema_migrations."""
    table = f"{quote_identifier(database)}.thinkmeter_schema_migrations"
    result = client.query(f"SELECT name, argMax(checksum, applied_at) FROM {table} GROUP BY name")
    return dict(result.result_rows)


def apply_schema(
    client: Client,
    cluster: str | None = None,
    database: str = "default",
    ttl_days: int | None = None,
    sql_dir: Path = SQL_DIR,
) -> list[SchemaAction]:
    """Create what is missing and migrate what changed; running it again is a no-op.

    A file recorded with another checksum is migrated: its tables get the columns they lack, its
    materialized views are recreated (their target tables and rows stay). When nothing is to be done
    it only reads thinkmeter_schema_migrations, so a writer without DDL rights may run it.
    With ttl_days, tables that already exist get that TTL too.
    """
    files = schema_files(cluster, database, ttl_days, sql_dir)
    try:
        applied = applied_schema_files(client, database)
    except Exception:  # a fresh store: no migrations table (or database) yet
        if database != "default":
            client.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)} {on_cluster_clause(cluster)}")
        for statement in files[0].statements:  # the migrations table itself
            client.command(statement)
        applied = applied_schema_files(client, database)
    actions = []
    for schema_file in files:
        if applied.get(schema_file.name) == schema_file.checksum:
            actions.append(SchemaAction(schema_file.name, "already applied"))
            continue
        if schema_file.name in applied:
            changes, conflicts = _migrate(client, schema_file, cluster, database)
            status = f"migrated: {'; '.join(changes) or 'nothing to change'}"
            if conflicts:
                actions.append(SchemaAction(schema_file.name, _conflict_status(changes, conflicts)))
                continue
        else:
            for statement in schema_file.statements:
                client.command(statement)
            status = "applied"
        client.insert(
            "thinkmeter_schema_migrations",
            [[schema_file.name, schema_file.version, schema_file.checksum]],
            database=database,
            column_names=["name", "version", "checksum"],
            column_type_names=["String", "UInt32", "String"],
        )
        actions.append(SchemaAction(schema_file.name, status))
    if ttl_days is not None:
        for table, statement in ttl_statements(cluster, database, ttl_days):
            client.command(statement)
            actions.append(SchemaAction(table, f"TTL set to {ttl_days} days"))
    return actions


def _migrate(
    client: Client, schema_file: SchemaFile, cluster: str | None, database: str
) -> tuple[list[str], list[str]]:
    """Bring the store up to a changed schema file without losing rows: (changes made, type conflicts).

    Tables get the columns they lack (typed as the DDL says, each after its DDL predecessor) and keep
    the ones the DDL no longer has; materialized views are dropped and created with the new SELECT
    (only the view: its target table and rows stay). A column whose type differs is left as it is:
    converting it could fail part-way or lose data, so that is the operator's call.
    """
    stored = _stored_columns(client, database)
    changes, conflicts = [], []
    for statement in schema_file.statements:
        created = created_object(statement)
        if created is None or created.name not in stored:  # not a table or view, or one that is missing
            client.command(statement)
            if created is not None:
                changes.append(f"{created.name} created")
            continue
        if created.kind == "view":
            client.command(drop_view_statement(database, created.name, cluster))
            client.command(statement)
            changes.append(f"{created.name} recreated")
            continue
        columns = stored[created.name]
        missing, previous = [], None
        for column in created.columns:
            if column.name in columns:
                if _type_key(columns[column.name]) != _type_key(column.type):
                    conflicts.append(
                        f"{created.name}.{column.name} is {columns[column.name]} in the store, {column.type} in the schema"
                    )
            elif not any(name.startswith(f"{column.name}.") for name in columns):  # a Nested column is stored flattened
                missing.append((column, previous))
            # A new column goes after its predecessor in the DDL (Nested ones have no single column to follow).
            previous = None if column.type.startswith("Nested") else column.name
        if missing:
            client.command(add_columns_statement(database, created.name, missing, cluster))
            changes.append(f"{created.name} +{len(missing)} columns ({', '.join(c.name for c, _ in missing)})")
        kept = [name for name in columns if name.split(".")[0] not in {c.name for c in created.columns}]
        if kept:
            changes.append(f"{created.name} keeps columns the schema no longer has ({', '.join(kept)})")
    return changes, conflicts


def _stored_columns(client: Client, database: str) -> dict[str, dict[str, str]]:
    """{table or view: {column: type}} of the database."""
    rows = client.query(
        "SELECT t.name, c.name, c.type FROM system.tables AS t LEFT JOIN system.columns AS c"
        " ON c.database = t.database AND c.table = t.name WHERE t.database = {db:String} ORDER BY c.position",
        parameters={"db": database},
    ).result_rows
    stored: dict[str, dict[str, str]] = {}
    for table, column, column_type in rows:
        stored.setdefault(table, {})
        if column:
            stored[table][column] = column_type
    return stored


def _type_key(column_type: str) -> str:
    """A type as ClickHouse reports it in system.columns (no spaces, aliases resolved)."""
    return re.sub(r"\bBoolean\b", "Bool", re.sub(r"\s+", "", column_type))


def _conflict_status(changes: list[str], conflicts: list[str]) -> str:
    done = f" ({'; '.join(changes)})" if changes else ""
    return (
        f"migrated{done} except: {'; '.join(conflicts)}. Those columns were left as they are (no data dropped) and "
        "the file is not recorded as applied: convert them with ALTER TABLE ... MODIFY COLUMN once their data fits "
        "the new type (or keep them), then run `thinkmeter schema apply` again"
    )


_schema_ready: set[str] = set()
_schema_ready_lock = threading.Lock()


def ensure_schema(client: Client, settings: Settings) -> None:
    """apply_schema once per process and store, so a fresh install works and an upgrade migrates on start.

    A writer without DDL rights on a store whose files are all applied, some in an older version, logs
    that `thinkmeter schema apply` is due and writes on: spans keep landing in otel_traces.
    """
    key = settings.clickhouse_url or str(settings.chdb_dir)
    if key in _schema_ready:
        return
    with _schema_ready_lock:
        if key not in _schema_ready:
            database = store_database(settings)
            try:
                actions = apply_schema(client, database=database)
            except Exception as exc:
                if not _all_files_recorded(client, database):
                    raise
                log.warning(
                    "thinkmeter: the schema of the %s is older than this thinkmeter and could not be migrated (%s); "
                    "run `thinkmeter schema apply` as a user that may alter tables. Until then new columns stay empty.",
                    store_label(settings),
                    exc,
                )
            else:
                for action in actions:
                    if action.status.startswith("migrated"):
                        log.warning("thinkmeter: schema %s %s", action.name, action.status)
            _schema_ready.add(key)


def _all_files_recorded(client: Client, database: str) -> bool:
    try:
        applied = applied_schema_files(client, database)
    except Exception:  # no migrations table, or no right to read it
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
    deadline = time.monotonic() + timeout_s
    while True:
        serve_client = _serve_client(settings)
        if serve_client is not None:
            try:
                yield serve_client
            finally:
                serve_client.close()
            return
        with ExitStack() as stack:
            # Wait in short slices: a serve that is starting holds the lock before it advertises itself.
            wait_s = min(_SERVE_RECHECK_S, max(0.0, deadline - time.monotonic()))
            try:
                client = stack.enter_context(embedded_store(settings, wait_s))
            except StoreNotInForkedChild:
                raise
            except StoreBusy as busy:
                if time.monotonic() >= deadline:
                    raise StoreBusy(f"{busy} (gave up after {timeout_s:g}s)") from None
                continue
            ensure_schema(client, settings)
            ingest_pending(client, settings)
            yield client
            return


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
    from clickhouse_connect.driver.exceptions import OperationalError

    from thinkmeter.serve.client import ServeClient

    try:
        return ServeClient(found, SegmentWriter(settings.segments_dir, settings.segments_max_bytes))
    except OperationalError as exc:  # serve.json names a live pid that does not answer (a reused pid)
        log.warning("thinkmeter: serve at %s (pid %d) does not answer (%s); opening the store", found.url, found.pid, exc)
        return None


def query_rows(settings: Settings, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run one read query on the configured store; rows as dicts keyed by column name."""
    with store_session(settings) as client:
        return list(client.query(sql, parameters=dict(parameters or {})).named_results())
