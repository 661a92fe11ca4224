"""The ONE place where serve's extra HTTP routes are registered: path prefix -> handler.

A handler is `(request: Request, context: ServeContext) -> Response` (thinkmeter.serve.http): it gets
the method, path, query-string parameters, headers and body, and may read the store through
`context.store.query(...)` / `context.store.query_rows(...)` (read-only). serve checks the password
(when one is set) before any route runs. Paths no prefix matches are ClickHouse's HTTP interface.

To add routes (e.g. the web view at /ui, budget or tenant endpoints), add an entry below; import the
handler's module inside the function so `import thinkmeter.serve` stays light.
"""

from __future__ import annotations

from thinkmeter.serve.http import RouteHandler


def extra_routes() -> dict[str, RouteHandler]:
    from thinkmeter.ui.routes import serve_route

    routes: dict[str, RouteHandler] = {"/ui": serve_route}
    return routes
