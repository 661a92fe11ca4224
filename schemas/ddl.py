"""Render the DDL in schemas/sql/ for one store: target database, optional cluster, optional TTL.

The files are applied in name order; each holds `;`-terminated statements with these placeholders:
  {{database}}             the target database
  {{on_cluster}}           `ON CLUSTER <name> ` on a cluster, else nothing
  {{engine:<Family>}}      `<Family>()`, or `Replicated<Family>(<path>, '{replica}')` on a cluster
  {{ttl:<time expr>}}      `TTL <time expr> + toIntervalDay(<days>)` when a TTL is asked for
  {{dedup_window}}         the table setting that makes inserts with insert_deduplication_token idempotent
  {{columns:<table>}}      the table's span attribute columns (llm_calls, task_spans, task_outcomes), and
  {{select:<table>}}       its materialized view's SELECT list for them, both generated from schemas/contract.py

A file whose checksum changed since it was applied is migrated from its statements (see `created_object`):
thinkmeter.store adds the columns its tables lack and recreates its materialized views.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from thinkmeter.schemas.contract import TABLE_COLUMNS, column_definitions, select_list
from thinkmeter.schemas.sql_text import closing_paren, split_top_level

SQL_DIR = Path(__file__).with_name("sql")
# {shard}, {replica} are server macros; {database} and {table} are expanded by ClickHouse itself.
REPLICATED_ARGS = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
# Blocks remembered per table for insert deduplication. Every ingested batch of segments is one block per
# table (per partition), and a batch left by a crash is re-ingested when serve (or the next reader)
# starts, long before 10 000 newer batches arrive. Replicated tables also forget hashes after a week.
DEDUP_WINDOW = 10_000
REPLICATED_DEDUP_SECONDS = 7 * 24 * 3600

_PLACEHOLDER = re.compile(r"\{\{(\w+)(?::([^}]*))?\}\}")
_PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")
# Expanded before the checksum is taken, so a new contract column counts as a changed schema file.
_CONTRACT_PLACEHOLDERS = {
    **{f"{{{{columns:{table}}}}}": lambda table=table: column_definitions(table) for table in TABLE_COLUMNS},
    **{f"{{{{select:{table}}}}}": lambda table=table: select_list(table) for table in TABLE_COLUMNS},
}
_TTL_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS \{\{database\}\}\.(\w+)[^;]*?\{\{ttl:([^}]*)\}\}")
_CREATED = re.compile(r"CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS (?:`[^`]+`|\w+)\.(\w+)")
# What may follow a column's type in its definition.
_AFTER_TYPE = re.compile(r"\s+(?:CODEC|DEFAULT|MATERIALIZED|ALIAS|EPHEMERAL|COMMENT|TTL)\b")
_NOT_COLUMNS = ("INDEX", "PROJECTION", "CONSTRAINT")


@dataclass(frozen=True)
class SchemaFile:
    name: str  # e.g. "20_llm_calls.sql"
    version: int  # the numeric prefix of the name
    checksum: str  # sha256 of the template, so a changed file can be told from an applied one
    statements: tuple[str, ...]


def quote_identifier(name: str) -> str:
    if _PLAIN_IDENTIFIER.fullmatch(name):
        return name
    if not name or "`" in name or "\\" in name:
        raise ValueError(f"invalid ClickHouse identifier {name!r}: use letters, digits, '_' or '-'")
    return f"`{name}`"


def quote_string(value: str) -> str:
    """A ClickHouse string literal: backslashes and single quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def on_cluster_clause(cluster: str | None) -> str:
    return f"ON CLUSTER {quote_identifier(cluster)} " if cluster else ""


def _renderer(cluster: str | None, database: str, ttl_days: int | None):
    if ttl_days is not None and ttl_days <= 0:
        raise ValueError(f"ttl_days must be a positive number of days, got {ttl_days}")
    db = quote_identifier(database)
    on_cluster = on_cluster_clause(cluster)
    if cluster:
        dedup = (
            f"replicated_deduplication_window = {DEDUP_WINDOW}, "
            f"replicated_deduplication_window_seconds = {REPLICATED_DEDUP_SECONDS}"
        )
    else:
        dedup = f"non_replicated_deduplication_window = {DEDUP_WINDOW}"

    def substitute(match: re.Match[str]) -> str:
        key, arg = match.group(1), match.group(2)
        if key == "database":
            return db
        if key == "on_cluster":
            return on_cluster
        if key == "dedup_window":
            return dedup
        if key == "engine" and arg:
            return f"Replicated{arg}({REPLICATED_ARGS})" if cluster else f"{arg}()"
        if key == "ttl" and arg:
            return f"TTL {arg} + toIntervalDay({ttl_days})" if ttl_days else ""
        raise ValueError(f"unknown placeholder {match.group(0)} in schema SQL")

    return substitute


def _split_statements(text: str) -> list[str]:
    statements = []
    for chunk in _STATEMENT_END.split(text):
        lines = [line.rstrip() for line in chunk.splitlines()]
        code = [line for line in lines if line.strip() and not line.lstrip().startswith("--")]
        if code:
            statements.append("\n".join(line for line in lines if line.strip()))
    return statements


def _template(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    for placeholder, generate in _CONTRACT_PLACEHOLDERS.items():
        if placeholder in text:
            text = text.replace(placeholder, generate())
    return text


def schema_files(
    cluster: str | None = None, database: str = "default", ttl_days: int | None = None, sql_dir: Path = SQL_DIR
) -> list[SchemaFile]:
    substitute = _renderer(cluster, database, ttl_days)
    files = []
    for path in sorted(sql_dir.glob("*.sql")):
        template = _template(path)
        prefix = path.name.split("_", 1)[0]
        if not prefix.isdigit():
            raise ValueError(f"schema file {path.name} must start with a number, e.g. 40_{path.name}")
        files.append(
            SchemaFile(
                name=path.name,
                version=int(prefix),
                checksum=hashlib.sha256(template.encode()).hexdigest(),
                statements=tuple(_split_statements(_PLACEHOLDER.sub(substitute, template))),
            )
        )
    return files


def render(cluster: str | None = None, database: str = "default", ttl_days: int | None = None) -> list[tuple[str, str]]:
    """(file name, statement) pairs in apply order, one statement each (for clickhouse-connect command())."""
    return [(f.name, s) for f in schema_files(cluster, database, ttl_days) for s in f.statements]


def ttl_statements(cluster: str | None = None, database: str = "default", ttl_days: int = 30) -> list[tuple[str, str]]:
    """(table, ALTER ... MODIFY TTL) for every table that takes a TTL: sets it on tables created without one."""
    _renderer(cluster, database, ttl_days)  # validates the arguments
    on_cluster = on_cluster_clause(cluster)
    statements = []
    for path in sorted(SQL_DIR.glob("*.sql")):
        for table, time_expr in _TTL_TABLE.findall(path.read_text(encoding="utf-8")):
            statements.append(
                (
                    table,
                    f"ALTER TABLE {quote_identifier(database)}.{table} {on_cluster}"
                    f"MODIFY TTL {time_expr} + toIntervalDay({ttl_days})",
                )
            )
    return statements


# --------------------------------------------------------------------------------------------- migration


@dataclass(frozen=True)
class Column:
    name: str
    definition: str  # as in the DDL: type, then codec, default or alias

    @property
    def type(self) -> str:
        return _AFTER_TYPE.split(self.definition, maxsplit=1)[0]


@dataclass(frozen=True)
class CreatedObject:
    kind: str  # "table" or "view" (a materialized view)
    name: str
    columns: tuple[Column, ...]  # a table's columns, in order; empty for a view


def created_object(statement: str) -> CreatedObject | None:
    """What a rendered CREATE ... IF NOT EXISTS statement creates; None for any other statement."""
    code = "\n".join(line for line in statement.splitlines() if not line.lstrip().startswith("--"))
    match = _CREATED.search(code)
    if match is None:
        return None
    if match.group(1) != "TABLE":
        return CreatedObject("view", match.group(2), ())
    columns = []
    for item in _top_level_items(code, code.index("(", match.end())):
        name, _, definition = item.strip().partition(" ")
        if name.upper() not in _NOT_COLUMNS:
            columns.append(Column(name.strip("`"), " ".join(definition.split())))
    return CreatedObject("table", match.group(2), tuple(columns))


def _top_level_items(code: str, open_paren: int) -> list[str]:
    """The comma-separated items inside the parenthesis at open_paren (nested parentheses and quotes kept)."""
    close = closing_paren(code, open_paren)
    if close == -1:
        raise ValueError(f"unbalanced parentheses in schema statement: {code[:80]!r}")
    return split_top_level(code[open_paren + 1 : close])


def add_columns_statement(
    database: str, table: str, columns: list[tuple[Column, str | None]], cluster: str | None = None
) -> str:
    """ALTER TABLE adding (column, the column it goes after) pairs; IF NOT EXISTS makes it safe to repeat."""
    additions = ", ".join(
        f"ADD COLUMN IF NOT EXISTS {c.name} {c.definition}" + (f" AFTER {after}" if after else "")
        for c, after in columns
    )
    return f"ALTER TABLE {quote_identifier(database)}.{table} {on_cluster_clause(cluster)}{additions}"


def drop_view_statement(database: str, view: str, cluster: str | None = None) -> str:
    return f"DROP VIEW IF EXISTS {quote_identifier(database)}.{view} {on_cluster_clause(cluster)}SYNC"


# ----------------------------------------------------------------------------------- least-privilege roles

WRITER_ROLE = "thinkmeter_writer"
READER_ROLE = "thinkmeter_reader"
WRITER_USER = "thinkmeter_ingest"
READER_USER = "thinkmeter_grafana"
_CREATED_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS \{\{database\}\}\.(\w+)")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def schema_tables() -> list[str]:
    """Every table the schema files create (materialized views excluded), in file order."""
    return [name for path in sorted(SQL_DIR.glob("*.sql")) for name in _CREATED_TABLE.findall(path.read_text(encoding="utf-8"))]


def role_statements(
    database: str = "default",
    cluster: str | None = None,
    writer_password_sha256: str | None = None,
    reader_password_sha256: str | None = None,
) -> list[str]:
    """Roles (and, given password hashes, users) for a ClickHouse server; chDB has no access control.

    thinkmeter_writer may only INSERT (spans, metrics, alert events, and the tables the materialized
    views fill from them) and read which schema files are applied (the exporter checks before
    writing); thinkmeter_reader (Grafana, reports) may only SELECT. Passwords arrive as SHA-256 hex,
    so no secret is ever part of the DDL.
    """
    db = quote_identifier(database)
    on = f" ON CLUSTER {quote_identifier(cluster)}" if cluster else ""
    tables = schema_tables()
    statements = [f"CREATE ROLE IF NOT EXISTS {WRITER_ROLE}{on}", f"CREATE ROLE IF NOT EXISTS {READER_ROLE}{on}"]
    statements += [f"GRANT{on} INSERT ON {db}.{t} TO {WRITER_ROLE}" for t in tables if t != "thinkmeter_schema_migrations"]
    statements.append(f"GRANT{on} SELECT ON {db}.thinkmeter_schema_migrations TO {WRITER_ROLE}")
    statements += [f"GRANT{on} SELECT ON {db}.{t} TO {READER_ROLE}" for t in tables]
    for user, role, digest in ((WRITER_USER, WRITER_ROLE, writer_password_sha256), (READER_USER, READER_ROLE, reader_password_sha256)):
        if digest is None:
            continue
        if not _SHA256_HEX.fullmatch(digest):
            raise ValueError(f"the password hash for {user} must be 64 lowercase hex digits (SHA-256)")
        statements.append(f"CREATE USER IF NOT EXISTS {user}{on} IDENTIFIED WITH sha256_hash BY '{digest}'")
        statements.append(f"GRANT{on} {role} TO {user}")
    return statements
