"""serve's HTTP server: ClickHouse's HTTP interface (read-only) plus the extra routes of routes.py.

ClickHouse interface, as clickhouse-server answers it (so clickhouse-connect, Grafana's ClickHouse
datasource over HTTP, and curl work unchanged):
- `GET /` and `GET /ping` -> `Ok.`
- a query in the `query` parameter (GET or POST) and/or the POST body (joined by a newline)
- output format: a FORMAT clause, else `default_format`, else TabSeparated
- `database`, query parameters `param_<name>` for `{name:Type}`, any other parameter is a setting
- errors as ClickHouse formats them: `Code: N. DB::Exception: ... (NAME) (version V)`, the
  X-ClickHouse-Exception-Code header and the HTTP status clickhouse-server gives that code
- read-only: every query runs with readonly=1 on its own engine handle, so INSERT, DROP, ALTER,
  SET of readonly, table functions (file, url) are refused with READONLY (164)
- a password, when set, is required for everything but `/` and `/ping`: HTTP Basic,
  X-ClickHouse-User/X-ClickHouse-Key, or the user/password parameters (any user name).

Extra routes (a web view, budget endpoints) are handlers `(Request, ServeContext) -> Response`
registered by path prefix in thinkmeter.serve.routes; this module is not touched to add one.
"""

from __future__ import annotations

import email

import base64
import hmac
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from thinkmeter.schemas.ddl import quote_identifier, quote_string

log = logging.getLogger("thinkmeter.serve")

MAX_BODY_BYTES = 256 << 20
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_ERROR = re.compile(r"Code: (\d+)\. ")
_ERROR_NAME = re.compile(r"\(([A-Z_0-9]+)\)\s*(?:\(version [^)]*\))?\s*$")
# Parameters of the HTTP interface itself; every other parameter is a setting.
_INTERFACE_PARAMS = frozenset(
    {
        "query", "database", "default_format", "user", "password", "query_id", "session_id", "session_timeout",
        "session_check", "compress", "decompress", "buffer_size", "wait_end_of_query", "role", "quota_key",
        "enable_http_compression", "http_zlib_compression_level", "send_progress_in_http_headers",
        "http_headers_progress_interval_ms", "client_protocol_version", "http_wait_end_of_query",
    }
)
# clickhouse-server's exceptionCodeToHTTPStatus, for the codes a read-only store can raise.
_STATUS_BY_CODE = {
    194: 401,  # REQUIRED_PASSWORD
    516: 403, 192: 403, 193: 403, 497: 403,  # AUTHENTICATION_FAILED, UNKNOWN_USER, WRONG_PASSWORD, ACCESS_DENIED
    36: 400, 6: 400, 27: 400, 38: 400, 41: 400, 62: 400, 117: 400, 53: 400, 69: 400, 8: 400,
    60: 404, 46: 404, 47: 404, 50: 404, 81: 404, 115: 404, 73: 404,
    48: 501, 159: 408, 202: 503,
}
_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8",
    "CSVWithNames": "text/csv; charset=UTF-8",
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
}


# ------------------------------------------------------------------------------------- route interface


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    params: Mapping[str, str]  # query-string parameters (the last value of a repeated one)
    headers: Mapping[str, str]
    body: bytes


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


class QueryError(Exception):
    """A query the store refused; `code` is the ClickHouse error code."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class ReadOnlyStore:
    """Read-only queries on serve's embedded store: a fresh engine handle per query (0.1 ms), the
    caller's settings applied, then readonly=1, so nothing a query says can write."""

    def __init__(self, chdb_dir: Path, version: str):
        self._path = os.path.realpath(chdb_dir)
        self.version = version

    def query(
        self,
        sql: str,
        fmt: str = "TabSeparated",
        params: Mapping[str, str] | None = None,
        database: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> bytes:
        import chdb

        connection = chdb.connect(self._path)
        try:
            if database:
                self._run(connection, f"USE {quote_identifier(database)}")
            for name, value in (settings or {}).items():
                if not _SETTING_NAME.match(name):
                    raise QueryError(115, f"Code: 115. DB::Exception: Unknown setting '{name}'. (UNKNOWN_SETTING)")
                self._run(connection, f"SET {name} = {quote_string(str(value))}")
            self._run(connection, "SET readonly = 1")
            return self._run(connection, sql, fmt, dict(params or {}))
        finally:
            connection.close()

    def query_rows(self, sql: str, params: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Rows as dicts (numbers as numbers): for route handlers."""
        body = self.query(sql, "JSON", params, settings={"output_format_json_quote_64bit_integers": "0"})
        return json.loads(body)["data"]

    def _run(self, connection: Any, sql: str, fmt: str = "TabSeparated", params: dict[str, str] | None = None) -> bytes:
        try:
            result = connection.query(sql, fmt, params=params) if params else connection.query(sql, fmt)
        except Exception as exc:  # chDB raises its RuntimeError subclass with the server's message
            message = str(exc)
            start = message.find("Code: ")
            message = message[start:].strip() if start >= 0 else f"Code: 1001. DB::Exception: {message}. (STD_EXCEPTION)"
            # chDB repeats the prefix ("Code: 164. DB::Exception: Code: 164. DB::Exception: ...")
            match = _ERROR.match(message)
            code = int(match.group(1)) if match else 1001
            repeated = f"Code: {code}. DB::Exception: "
            while message.startswith(repeated + repeated):
                message = message[len(repeated) :]
            raise QueryError(code, message) from None
        return result.bytes()


@dataclass
class ServeContext:
    """What a route handler may use: read-only queries on the store, and where serve's data lives."""

    store: ReadOnlyStore
    data_dir: Path
    settings: Any  # thinkmeter.config.Settings


RouteHandler = Callable[[Request, ServeContext], Response]


# ------------------------------------------------------------------------------ ClickHouse interface


def clickhouse_error(code: int, message: str, version: str) -> Response:
    if not message.startswith("Code: "):
        message = f"Code: {code}. DB::Exception: {message}"
    if "(version " not in message:
        message = f"{message} (version {version})"
    return Response(
        status=_STATUS_BY_CODE.get(code, 500),
        body=(message + "\n").encode(),
        headers={"X-ClickHouse-Exception-Code": str(code)},
    )


def clickhouse_query(request: Request, context: ServeContext) -> Response:
    params = request.params
    parts = [params.get("query", ""), request.body.decode("utf-8", "replace") if request.body else ""]
    sql = "\n".join(part for part in parts if part.strip())
    version = context.store.version
    if not sql.strip():
        return clickhouse_error(62, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)", version)
    fmt_match = _TRAILING_FORMAT.search(sql)
    fmt = fmt_match.group(1) if fmt_match else params.get("default_format", "TabSeparated")
    query_params = {name[6:]: value for name, value in params.items() if name.startswith("param_")}
    settings = {name: value for name, value in params.items() if name not in _INTERFACE_PARAMS and not name.startswith("param_")}
    try:
        body = context.store.query(sql, fmt, query_params, params.get("database"), settings)
    except QueryError as exc:
        return clickhouse_error(exc.code, str(exc), version)
    revision = params.get("client_protocol_version", "")
    if fmt == "Native" and revision.isdigit() and int(revision) > 0:
        # chDB writes revision-0 Native; a client naming its revision (clickhouse-go) reads blocks at it
        from thinkmeter.clickhouse_native import UnsupportedType, at_revision

        try:
            body = at_revision(body, int(revision))
        except UnsupportedType as exc:
            return clickhouse_error(48, f"Code: 48. DB::Exception: {exc}. (NOT_IMPLEMENTED)", version)
    headers = {"X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC"}
    if "query_id" in params:
        headers["X-ClickHouse-Query-Id"] = params["query_id"]
    return Response(200, body, _CONTENT_TYPES.get(fmt, "application/octet-stream"), headers)


# -------------------------------------------------------------------------------------------- server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ServeHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (the base class's name)
        log.debug("thinkmeter serve: %s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            response = self._respond()
        except Exception:  # a handler bug must not kill the server; the client gets a ClickHouse-style error
            log.exception("thinkmeter serve: %s %s failed", self.command, self.path)
            response = clickhouse_error(1001, "internal error in thinkmeter serve (see its log)", self.server.context.store.version)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _respond(self) -> Response:
        split = urlsplit(self.path)
        path = split.path or "/"
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        version = self.server.context.store.version
        if length > MAX_BODY_BYTES:
            return clickhouse_error(202, "Code: 202. DB::Exception: Request body too large. (TOO_MANY_SIMULTANEOUS_QUERIES)", version)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # the JS client streams its body
            body = self._read_chunked()
            if body is None:
                return clickhouse_error(202, "Code: 202. DB::Exception: Request body too large. (TOO_MANY_SIMULTANEOUS_QUERIES)", version)
        if self.headers.get("Content-Type", "").startswith("multipart/form-data"):
            params.update(_form_fields(self.headers["Content-Type"], body))  # query and long parameters
            body = b""
        if path in ("/", "/ping") and not params.get("query") and not body:
            return Response(200, b"Ok.\n")
        denied = self._check_password(params)
        if denied is not None:
            return denied
        request = Request(self.command, path, params, {k: v for k, v in self.headers.items()}, body)
        handler = self.server.route_for(path)
        return handler(request, self.server.context)

    def _read_chunked(self) -> bytes | None:
        """A chunked request body (None past MAX_BODY_BYTES)."""
        chunks, total = [], 0
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _check_password(self, params: Mapping[str, str]) -> Response | None:
        expected = self.server.password
        if not expected:
            return None
        given = self.headers.get("X-ClickHouse-Key") or params.get("password")
        authorization = self.headers.get("Authorization", "")
        if given is None and authorization.startswith("Basic "):
            try:
                given = base64.b64decode(authorization[6:]).decode().partition(":")[2]
            except ValueError:
                given = ""
        version = self.server.context.store.version
        if given is None:
            response = clickhouse_error(194, "Code: 194. DB::Exception: Password required for user thinkmeter_reader. (REQUIRED_PASSWORD)", version)
            response.headers["WWW-Authenticate"] = 'Basic realm="thinkmeter"'
            return response
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return clickhouse_error(
                516,
                "Code: 516. DB::Exception: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)",
                version,
            )
        return None


class ServeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], context: ServeContext, routes: Mapping[str, RouteHandler], password: str | None):
        import socket

        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.context = context
        self.password = password or None
        # Longest prefix first, so "/ui/api" can be told from "/ui".
        self._routes = sorted(routes.items(), key=lambda item: -len(item[0]))

    def route_for(self, path: str) -> RouteHandler:
        for prefix, handler in self._routes:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return handler
        return clickhouse_query

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="thinkmeter-serve-http", daemon=True)
        thread.start()
        return thread


def _form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The fields of a multipart/form-data body: clickhouse-connect sends a query whose parameters are long
    this way (ClickHouse's HTTP interface takes `query` and `param_*` as form fields)."""
    message = email.message_from_bytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields = {}
    for part in message.walk():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload.decode("utf-8", "replace")
    return fields
