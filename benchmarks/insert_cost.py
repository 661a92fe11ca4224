"""Fixed cost of one insert into the embedded store, by what the insert sets off.

    python benchmarks/insert_cost.py [--rows N] [--repeat K]

Inserts the same small batch K times each way and prints wall and process CPU per insert: the
segment ingest's insert (deduplication token, every materialized view deduplicated), the same without the
deduplication settings, a copy of otel_traces with no views, and a one-column table.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from export_throughput import realistic_spans

from thinkmeter.config import Settings
from thinkmeter.export import spans_to_columns
from thinkmeter.segments import TRACE_COLUMNS, TRACE_COLUMN_NAMES, TRACES_TABLE, insert_blocks, new_segment_id, trace_block
from thinkmeter.store import embedded_store, ensure_schema


def timed(label: str, insert: Callable[[], object], repeat: int) -> None:
    insert()  # warm-up
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        insert()
    wall, cpu = (time.perf_counter() - w0) / repeat, (time.process_time() - c0) / repeat
    print(f"  {label:48s} wall {wall * 1e3:7.1f} ms   cpu {cpu * 1e3:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    columns = spans_to_columns(realistic_spans(args.rows))
    data = [columns[name] for name in TRACE_COLUMN_NAMES]
    types = [type_name for _, type_name in TRACE_COLUMNS]
    block = trace_block(columns)
    root = Path(tempfile.mkdtemp(prefix="thinkmeter-bench-insert-"))
    settings = Settings(data_dir=root)

    def plain_insert(client, table: str) -> Callable[[], object]:
        return lambda: client.insert(
            table, data, column_names=TRACE_COLUMN_NAMES, column_type_names=types, column_oriented=True
        )

    try:
        with embedded_store(settings) as client:
            ensure_schema(client, settings)
            views = client.query("SELECT count() FROM system.tables WHERE engine = 'MaterializedView'").first_row[0]
            client.command("CREATE TABLE otel_traces_no_views AS otel_traces")
            client.command("CREATE TABLE one_column (a UInt64) ENGINE = MergeTree ORDER BY a")
            print(f"one insert of {args.rows} spans, mean of {args.repeat} ({views} materialized views in the store):")
            timed(
                "serve's insert (dedup token, views deduped)",
                lambda: insert_blocks(client, TRACES_TABLE, None, new_segment_id(), [block]),
                args.repeat,
            )
            timed("same insert, no deduplication settings", plain_insert(client, "otel_traces"), args.repeat)
            timed("otel_traces copy without views", plain_insert(client, "otel_traces_no_views"), args.repeat)
            timed("one UInt64 into a one-column table", lambda: client.command("INSERT INTO one_column VALUES (1)"), args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
