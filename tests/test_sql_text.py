"""The one top-level splitter under the DDL reader, the Native type parser and the Grafana macro expander."""

from thinkmeter.schemas.sql_text import MACROPRO_QUOTES, closing_paren, split_top_level


def test_commas_inside_parentheses_and_quotes_stay():
    assert split_top_level(" a, f(b, c) ,'x,y', `n,m` String, \"q,r\" ") == ["a", "f(b, c)", "'x,y'", "`n,m` String", '"q,r"']
    assert split_top_level("   ") == []


def test_clickhouse_backslash_and_doubled_quotes():
    assert split_top_level(r"'it\'s, here', 'it''s, here', z") == [r"'it\'s, here'", "'it''s, here'", "z"]
    text = r"Map(String, Tuple(a String, b Enum8('x\')' = 1)))"
    assert closing_paren(text, text.index("(")) == len(text) - 1


def test_macropro_quoting_has_no_backslash_and_no_backtick():
    # macropro ends a string at the next quote whatever precedes it, and treats ` as any other character.
    assert split_top_level(r"'a\', b", quotes=MACROPRO_QUOTES, backslash_escapes=False) == [r"'a\'", "b"]
    assert split_top_level("`a, b`", quotes=MACROPRO_QUOTES, backslash_escapes=False) == ["`a", "b`"]
    assert closing_paren("(a, ')'", 0, quotes=MACROPRO_QUOTES, backslash_escapes=False) == -1
