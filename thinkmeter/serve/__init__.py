"""`thinkmeter serve`: the one long-running process that owns the embedded store.

Interfaces other parts build on (keep them):
- CLI: `thinkmeter serve` (thinkmeter/cli/serve.py) -> `Serve(options).run()` (thinkmeter.serve.server).
- HTTP: ClickHouse's HTTP interface, read-only (thinkmeter.serve.http); extra routes are registered
  by path prefix in ONE place, `thinkmeter.serve.routes.extra_routes()`.
- Periodic work (segment ingest, collectors, the alert evaluator) runs through one small scheduler,
  `Serve.scheduler` (thinkmeter.serve.scheduler.Scheduler): `scheduler.add(name, interval_s, fn)`;
  `Serve.add_jobs()` is where serve's own jobs are added.
- Discovery: <data_dir>/serve.json holds {"host", "port", "pid"} while serve runs (removed on exit);
  `thinkmeter.serve.discovery.find_serve(data_dir)` reads it, and `thinkmeter.store.store_session` /
  `query_rows` use it to read through serve (thinkmeter.serve.client.ServeClient).

Nothing is imported here, so `import thinkmeter.serve.discovery` (every reader does it) stays cheap.
"""
