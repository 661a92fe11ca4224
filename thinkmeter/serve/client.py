"""A reader's client on `thinkmeter serve`: clickhouse-connect over serve's HTTP interface.

Reads go over HTTP; inserts (alert events, collector points written by a reader-side process) become
segments in the data dir, which serve ingests like an application's spans: the HTTP interface itself
is read-only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from clickhouse_connect.driver.exceptions import ProgrammingError
from clickhouse_connect.driver.httpclient import HttpClient
from clickhouse_connect.driver.summary import QuerySummary

from thinkmeter.segments import SegmentWriter
from thinkmeter.serve.discovery import PASSWORD_ENV, ServeAddress

READER_USER = "thinkmeter_reader"


class ServeClient(HttpClient):
    def __init__(self, address: ServeAddress, segments: SegmentWriter):
        super().__init__(
            "http",
            address.connect_host,
            address.port,
            READER_USER,
            os.environ.get(PASSWORD_ENV, ""),
            None,
            autogenerate_session_id=False,
        )
        self._segments = segments

    def insert(  # type: ignore[override]
        self,
        table: str,
        data: Sequence[Sequence[Any]] | None = None,
        column_names: str | Sequence[str] = "*",
        database: str | None = None,
        column_types: Any = None,
        column_type_names: Sequence[str] | None = None,
        column_oriented: bool = False,
        **_transport: Any,
    ) -> QuerySummary:
        if isinstance(column_names, str) or not column_type_names:
            raise ProgrammingError("inserts through thinkmeter serve need column_names and column_type_names")
        self._segments.insert(table, data or [], database, column_names, column_type_names, column_oriented)
        return QuerySummary()
