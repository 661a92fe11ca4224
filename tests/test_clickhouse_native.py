"""chDB's revision-0 Native, rewritten for a client's protocol revision (what clickhouse-go asks for over
HTTP), decodes with an independent reader (clickhouse-driver) to the same rows as at revision 0."""

from __future__ import annotations

import pytest

from tests.grafana_http import CLIENT_TCP_PROTOCOL_VERSION, decode_native
from thinkmeter.clickhouse_native import UnsupportedType, at_revision, parse_type
from thinkmeter.config import Settings

TYPES = """SELECT number AS u64, toInt8(number) - 2 AS i8, toString(number) AS s, toFixedString('ab', 2) AS fs,
    toLowCardinality(toString(number % 3)) AS lc, toLowCardinality(toNullable(if(number = 1, NULL, 'z'))) AS lcn,
    [number, 2] AS arr, [toLowCardinality('q'), 'r'] AS alc, [[1], [2, 3]] AS nested,
    map('k', toString(number)) AS m, if(number % 2, NULL, number / 3) AS n, CAST(NULL AS Nullable(String)) AS ns,
    toDateTime('2026-01-02 03:04:05', 'UTC') AS t, toDateTime64('2026-01-02 03:04:05.123', 3, 'UTC') AS t64,
    toDate('2026-01-02') AS d, (number, 'x') AS tup, CAST((1, 'a'), 'Tuple(a UInt8, b String)') AS named,
    toDecimal64(1.5, 3) AS dec, toUUID('00000000-0000-0000-0000-000000000001') AS uuid, toIPv4('127.0.0.1') AS ip,
    CAST('a', 'Enum8(\\'a\\' = 1, \\'b, c\\' = 2)') AS e, toFloat32(0.5) AS f32, true AS b
FROM numbers(5)"""


@pytest.fixture(scope="module")
def chdb_connection(store_settings: Settings):
    import chdb

    connection = chdb.connect(str(store_settings.chdb_dir))
    yield connection
    connection.close()


def native(connection, sql: str) -> bytes:
    return connection.query(sql, "Native").bytes()


def test_blocks_decode_at_the_clients_revision(chdb_connection) -> None:
    data = native(chdb_connection, TYPES)
    names, rows = decode_native(data, 0)
    assert len(rows) == 5 and names[0] == "u64"
    # clickhouse-driver reads BlockInfo from revision 51903 on (ClickHouse writes it from 1; nobody is older)
    for revision in (51903, 54453, 54454, CLIENT_TCP_PROTOCOL_VERSION, 54515):
        assert decode_native(at_revision(data, revision), revision) == (names, rows)


def test_many_blocks_and_no_rows(chdb_connection) -> None:
    data = native(chdb_connection, "SELECT number, toString(number) AS s FROM numbers(200000) SETTINGS max_block_size = 65536")
    names, rows = decode_native(at_revision(data, CLIENT_TCP_PROTOCOL_VERSION), CLIENT_TCP_PROTOCOL_VERSION)
    assert names == ["number", "s"] and len(rows) == 200000 and rows[-1] == (199999, "199999")
    assert at_revision(native(chdb_connection, "SELECT 1 WHERE 0"), CLIENT_TCP_PROTOCOL_VERSION) == b""


def test_type_names_parse() -> None:
    parsed = parse_type("Map(LowCardinality(String), Tuple(a Array(Nullable(DateTime64(9, 'UTC'))), `b c` String))")
    assert parsed.name == "Map" and parsed.args[0].name == "LowCardinality"
    assert [arg.name for arg in parsed.args[1].args] == ["Array", "String"]


def test_unsupported_columns_say_what_to_do(chdb_connection) -> None:
    data = native(chdb_connection, "SELECT uniqState(number) AS state FROM numbers(3)")
    with pytest.raises(UnsupportedType, match="use another FORMAT"):
        at_revision(data, CLIENT_TCP_PROTOCOL_VERSION)
