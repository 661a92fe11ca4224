"""The top-level shape of a piece of SQL: where a parenthesis closes and which commas separate its items,
with quoted text skipped. ClickHouse quotes with ', " and ` and escapes with a backslash; Grafana's macro
parser (macropro) knows only ' and " and no backslash, so the quoting is a parameter."""

from __future__ import annotations

from collections.abc import Iterator

CLICKHOUSE_QUOTES = "'\"`"
MACROPRO_QUOTES = "'\""


def closing_paren(text: str, open_index: int, *, quotes: str = CLICKHOUSE_QUOTES, backslash_escapes: bool = True) -> int:
    """Index of the parenthesis closing the one at open_index; -1 when it never closes."""
    depth = 0
    for i, char in _unquoted(text, open_index, quotes, backslash_escapes):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def split_top_level(text: str, *, quotes: str = CLICKHOUSE_QUOTES, backslash_escapes: bool = True) -> list[str]:
    """The stripped items of text separated by commas outside parentheses and quotes; [] for blank text."""
    if not text.strip():
        return []
    items, depth, start = [], 0, 0
    for i, char in _unquoted(text, 0, quotes, backslash_escapes):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return items


def _unquoted(text: str, start: int, quotes: str, backslash_escapes: bool) -> Iterator[tuple[int, str]]:
    # A doubled quote ('it''s') needs no rule of its own: it closes the string and opens it again.
    quote, i = "", start
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and backslash_escapes:
                i += 1
            elif char == quote:
                quote = ""
        elif char in quotes:
            quote = char
        else:
            yield i, char
        i += 1
