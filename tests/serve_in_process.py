"""serve's HTTP server (ClickHouse interface + the routes of thinkmeter.serve.routes, /ui among them) in
this process, on the session's store: chDB opens a data directory in one process only, and the test session
holds it. tests/test_serve_ui.py runs `thinkmeter serve` as its own process on a fresh data dir."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from clickhouse_connect.driver.client import Client

from thinkmeter.config import Settings
from thinkmeter.serve.http import ReadOnlyStore, ServeContext, ServeHTTPServer
from thinkmeter.serve.routes import extra_routes


@contextmanager
def serve_http(settings: Settings, client: Client) -> Iterator[str]:
    """Yields serve's base URL (http://127.0.0.1:<port>); no password, as serve on loopback."""
    version = client.query("SELECT version()").result_rows[0][0]
    context = ServeContext(ReadOnlyStore(settings.chdb_dir, version), settings.data_dir, settings)
    server = ServeHTTPServer(("127.0.0.1", 0), context, extra_routes(), None)
    server.serve_in_thread()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
