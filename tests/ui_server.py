"""The built-in view over loopback HTTP on the session's store, for tests that need no `thinkmeter serve`
process (the store of the test session is open in this process, and chDB opens a directory once)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from clickhouse_connect.driver.client import Client

from thinkmeter.ui.routes import View


@contextmanager
def serve_view(client: Client) -> Iterator[str]:
    """Yields the base URL (http://127.0.0.1:<port>) of a server answering /ui from `client`."""
    lock = threading.Lock()  # one chDB session: one query at a time

    def run(sql: str) -> list[dict[str, Any]]:
        with lock:
            return list(client.query(sql).named_results())

    view = View(run)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            response = view.handle(url.path, parse_qs(url.query))
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
