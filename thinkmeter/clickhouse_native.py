"""ClickHouse's Native format at a client's protocol revision, from the revision-0 Native that chDB writes.

Over HTTP, ClickHouse writes Native for the revision a client names in `client_protocol_version`
(server HTTPHandler; NativeWriter): from revision 1 every block starts with its BlockInfo, and from
54454 (DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION) every column's type is followed by a
"has custom serialization" byte. chDB has no HTTP client, so its Native output is revision 0. The Grafana
datasource's driver (clickhouse-go v2, HTTP protocol) sends `client_protocol_version=54460` and
decodes blocks at the revision its hello query reported, so serve rewrites chDB's blocks: the column
data itself is the same at every revision. Walking a column needs the byte size of its data, hence the
small type parser below (the types a query returns; JSON, Dynamic, Variant and aggregate-function
states are refused with a ClickHouse-style error).
"""

from __future__ import annotations

import struct

from thinkmeter.schemas.sql_text import split_top_level

MIN_REVISION_WITH_CUSTOM_SERIALIZATION = 54454
# BlockInfo as ClickHouse writes it: field 1 is_overflows = false, field 2 bucket_num = -1, end marker.
_BLOCK_INFO = b"\x01\x00\x02\xff\xff\xff\xff\x00"
_FIXED = {
    "UInt8": 1, "Int8": 1, "Bool": 1, "Enum8": 1, "UInt16": 2, "Int16": 2, "Enum16": 2, "Date": 2, "BFloat16": 2,
    "UInt32": 4, "Int32": 4, "Float32": 4, "Date32": 4, "DateTime": 4, "IPv4": 4, "Decimal32": 4,
    "UInt64": 8, "Int64": 8, "Float64": 8, "DateTime64": 8, "Decimal64": 8, "Time": 4, "Time64": 8,
    "UInt128": 16, "Int128": 16, "UUID": 16, "IPv6": 16, "Decimal128": 16,
    "UInt256": 32, "Int256": 32, "Decimal256": 32,
    "IntervalNanosecond": 8, "IntervalMicrosecond": 8, "IntervalMillisecond": 8, "IntervalSecond": 8,
    "IntervalMinute": 8, "IntervalHour": 8, "IntervalDay": 8, "IntervalWeek": 8, "IntervalMonth": 8,
    "IntervalQuarter": 8, "IntervalYear": 8, "Nothing": 1,
}


class UnsupportedType(ValueError):
    pass


class _Type:
    __slots__ = ("name", "args")

    def __init__(self, name: str, args: list[_Type | str]):
        self.name = name
        self.args = args

    def child(self, index: int) -> _Type:
        arg = self.args[index]
        if not isinstance(arg, _Type):
            raise UnsupportedType(f"bad type argument {arg!r} of {self.name}")
        return arg


def _element_type(text: str) -> str:
    """A tuple element's type: "name Type", "`a name` Type" or "Type"."""
    if text.startswith("`"):
        return text[text.index("`", 1) + 1 :].strip()
    space, paren = text.find(" "), text.find("(")
    return text[space + 1 :] if space != -1 and (paren == -1 or space < paren) else text


def parse_type(text: str) -> _Type:
    text = text.strip()
    open_paren = text.find("(")
    if open_paren == -1 or not text.endswith(")"):
        return _Type(text, [])
    name, args = text[:open_paren], split_top_level(text[open_paren + 1 : -1])
    if name in ("Tuple", "Nested"):
        return _Type(name, [parse_type(_element_type(arg)) for arg in args])
    if name in ("Nullable", "Array", "LowCardinality", "Map"):
        return _Type(name, [parse_type(arg) for arg in args])
    if name == "SimpleAggregateFunction":  # (function, type)
        return _Type(name, [args[0], parse_type(args[-1])])
    return _Type(name, list(args))


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | memoryview, pos: int = 0):
        self.data = data
        self.pos = pos

    def varint(self) -> int:
        shift = result = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    def string(self) -> bytes:
        size = self.varint()
        value = bytes(self.data[self.pos : self.pos + size])
        self.pos += size
        return value

    def uint64(self) -> int:
        (value,) = struct.unpack_from("<Q", self.data, self.pos)
        self.pos += 8
        return value

    def skip(self, size: int) -> None:
        self.pos += size
        if self.pos > len(self.data):
            raise EOFError("Native data ends inside a column")


def _decimal_width(column_type: _Type) -> int:
    precision = int(str(column_type.args[0]))
    return 4 if precision <= 9 else 8 if precision <= 18 else 16 if precision <= 38 else 32


def _skip_prefix(reader: _Reader, column_type: _Type) -> None:
    """The state prefixes of a column tree come before its data (serializeBinaryBulkStatePrefix)."""
    name = column_type.name
    if name == "LowCardinality":
        reader.skip(8)  # the keys serialization version
    elif name in ("Nullable", "Array", "SimpleAggregateFunction"):
        _skip_prefix(reader, column_type.child(-1 if name == "SimpleAggregateFunction" else 0))
    elif name in ("Tuple", "Map", "Nested"):
        for arg in column_type.args:
            if isinstance(arg, _Type):
                _skip_prefix(reader, arg)
    elif name in ("JSON", "Object", "Dynamic", "Variant", "AggregateFunction"):
        raise UnsupportedType(f"serve cannot send {name} columns in the Native format; use another FORMAT")


def _skip_data(reader: _Reader, column_type: _Type, rows: int) -> None:
    name = column_type.name
    if name in _FIXED:
        reader.skip(_FIXED[name] * rows)
    elif name == "Decimal":
        reader.skip(_decimal_width(column_type) * rows)
    elif name == "String":
        for _ in range(rows):
            reader.skip(reader.varint())
    elif name == "FixedString":
        reader.skip(int(str(column_type.args[0])) * rows)
    elif name == "Nullable":
        reader.skip(rows)
        _skip_data(reader, column_type.child(0), rows)
    elif name in ("Array", "Map", "Nested"):
        total = 0
        if rows:
            reader.skip(8 * (rows - 1))
            total = reader.uint64()
        if name == "Array":
            _skip_data(reader, column_type.child(0), total)
        else:
            for arg in column_type.args:
                _skip_data(reader, arg, total)  # type: ignore[arg-type]
    elif name == "Tuple":
        for arg in column_type.args:
            _skip_data(reader, arg, rows)  # type: ignore[arg-type]
    elif name == "SimpleAggregateFunction":
        _skip_data(reader, column_type.child(-1), rows)
    elif name == "LowCardinality":
        _skip_low_cardinality(reader, column_type.child(0), rows)
    else:
        raise UnsupportedType(f"serve cannot send {name} columns in the Native format; use another FORMAT")


def _skip_low_cardinality(reader: _Reader, inner: _Type, rows: int) -> None:
    # SerializationLowCardinality: UInt64 flags (index width, has additional keys), the dictionary
    # (the inner type without Nullable), then the indexes; one granule per block in Native.
    if rows == 0:
        return
    flags = reader.uint64()
    if flags & (1 << 9):
        keys = reader.uint64()
        _skip_data(reader, inner.child(0) if inner.name == "Nullable" else inner, keys)
    indexes = reader.uint64()
    reader.skip(indexes * (1 << (flags & 0xFF)))


def at_revision(native: bytes, revision: int) -> bytes:
    """chDB's revision-0 Native blocks as ClickHouse writes them for a client at `revision`."""
    if revision <= 0:
        return native
    reader = _Reader(memoryview(native))
    out = bytearray()
    custom_flag = revision >= MIN_REVISION_WITH_CUSTOM_SERIALIZATION
    while reader.pos < len(native):
        out += _BLOCK_INFO
        block_start = reader.pos
        columns = reader.varint()
        rows = reader.varint()
        out += native[block_start : reader.pos]
        for _ in range(columns):
            head = reader.pos
            reader.string()
            column_type = parse_type(reader.string().decode())
            out += native[head : reader.pos]
            if custom_flag:
                out.append(0)
            data = reader.pos
            if rows:
                _skip_prefix(reader, column_type)
                _skip_data(reader, column_type, rows)
            out += native[data : reader.pos]
    return bytes(out)
