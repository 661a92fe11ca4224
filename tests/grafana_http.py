"""The Grafana ClickHouse datasource over HTTP, as its driver speaks it (no Grafana or Go toolchain runs
here): the requests clickhouse-go v2.47.0 sends (conn_http.go dialHttp / createRequest), and its answers
decoded by an independent Native reader, clickhouse-driver's BlockInputStream, at the revision the
hello query reported, as clickhouse-go decodes them (lib/proto/block.go). See docs/clickhouse-http-clients.md.
"""

from __future__ import annotations

import base64
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from clickhouse_driver.bufferedreader import BufferedReader
from clickhouse_driver.connection import ServerInfo
from clickhouse_driver.context import Context
from clickhouse_driver.streams.native import BlockInputStream

CLIENT_TCP_PROTOCOL_VERSION = 54460  # clickhouse-go v2.47.0 client_info.go: proto.DBMS_TCP_PROTOCOL_VERSION
HELLO = "SELECT displayName(), version(), revision(), timezone()"
USER_AGENT = "clickhouse-go/2.47.0 (lv:go/1.24.4; os:linux) grafana/12.1.0 clickhouse-datasource/4.20.0"


class _Bytes(BufferedReader):
    def __init__(self, data: bytes):
        self._data = data
        self._given = False
        super().__init__(max(len(data), 1))

    def read_into_buffer(self) -> None:
        if self._given:
            raise EOFError("the response ends inside a block")
        self.buffer[: len(self._data)] = self._data
        self.current_buffer_size = len(self._data)
        self._given = True


def decode_native(data: bytes, revision: int) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Every block of a Native response at `revision`: column names and rows."""
    context = Context()
    context.server_info = ServerInfo("serve", 0, 0, 0, revision, "UTC", "serve", revision)
    context.client_settings = {"use_numpy": False, "strings_as_bytes": False, "strings_encoding": "utf-8"}
    context.settings = {}
    reader = _Bytes(data)
    stream = BlockInputStream(reader, context)
    names: list[str] = []
    rows: list[tuple[Any, ...]] = []
    while data and reader.position < len(data):
        block = stream.read()
        names = [name for name, _ in block.columns_with_types]
        rows.extend(block.get_rows())
    return names, rows


class HttpStatusError(Exception):
    """clickhouse-go's error for a non-200 answer: `[HTTP <status>] response body: "<body>"`."""

    def __init__(self, status: int, body: str):
        super().__init__(f'[HTTP {status}] response body: "{body}"')
        self.status = status
        self.body = body


@dataclass
class GrafanaDatasource:
    """A datasource with protocol http, host/port, user, password and default database, as provisioned."""

    url: str  # http://host:port
    username: str
    password: str = ""
    database: str = "default"
    custom_settings: dict[str, str] = field(default_factory=dict)
    revision: int = CLIENT_TCP_PROTOCOL_VERSION  # until the hello query says otherwise
    server: dict[str, Any] = field(default_factory=dict)

    def _post(self, sql: str) -> bytes:
        params = {"database": self.database, **self.custom_settings, "default_format": "Native",
                  "client_protocol_version": str(CLIENT_TCP_PROTOCOL_VERSION)}
        request = urllib.request.Request(f"{self.url}/?{urlencode(sorted(params.items()))}", data=sql.encode(), method="POST")
        credentials = f"{self.username}:{self.password}" if self.password else f"{self.username}:"
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
        request.add_header("User-Agent", USER_AGENT)
        request.add_header("Accept-Encoding", "gzip")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                body = response.read()
                if response.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                return body
        except urllib.error.HTTPError as error:
            raise HttpStatusError(error.code, error.read().decode("utf-8", "replace")) from None

    def connect(self) -> None:
        """dialHttp's hello query, then PingContext's `SELECT 1` (what "Save & test" runs)."""
        names, rows = decode_native(self._post(HELLO), self.revision)
        display_name, version, revision, timezone = rows[0]
        self.server = {"display_name": display_name, "version": version, "revision": revision, "timezone": timezone}
        self.revision = int(revision)
        names, rows = self.query("SELECT 1")
        if names != ["1"] or rows != [(1,)]:
            raise AssertionError(f"clickhouse [ping]:: cannot ping clickhouse (got {names} {rows})")

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        return decode_native(self._post(sql), self.revision)
