"""The Grafana ClickHouse datasource's SQL dialect, which dashboards and alert rules are both written in:
the datasource thinkmeter provisions, and the macro expander that turns a panel or alert query into the
exact SQL Grafana and the datasource run (the built-in alert evaluator and the tests run it).

Two stages, in the order a dashboard query goes through them:

1. Frontend (`grafana/clickhouse-datasource` `src/data/CHDatasource.ts` `applyTemplateVariables`, ch-ds
   HEAD 1d04063; standards.md section 3.2): `applyConditionalAll` first, then Grafana's template
   interpolation `getTemplateSrv().replace(rawSql, scopedVars, this.format)`.
   - `$__conditionalAll(condition, $var)`: the plugin searches from the last occurrence backwards, splits
     the arguments on commas at bracket depth 1 (`getMacroArgs`, quotes not considered) and replaces the
     macro by `condition`, or by `1=1` when `String(current.value)` of the variable is `''` or `$__all`.
   - Template variables `$var`, `[[var]]`, `[[var:fmt]]`, `${var}`, `${var:fmt}` (Grafana's variable
     regex). Without a format the plugin's `format()` applies: an array becomes `'a','b'` (no escaping),
     anything else is inserted as is. `singlequote` quotes every value and escapes `'` as `\\'`; `raw`
     and `csv` join with commas. "All" selected: a custom `allValue` is inserted unformatted, otherwise
     the values of every option are formatted. Unknown names (such as `$__timeFilter`) stay as they are.
   Grafana also fills the scoped `$__interval` / `$__interval_ms` here; they are left to the backend
   stage below, which gives the same text for whole-unit intervals. The variable regex, the "All"
   handling and the `singlequote` / `raw` / `csv` formatters follow Grafana's TemplateSrv and format
   registry (public/app/features/templating, grafana-scenes formatRegistry), which standards.md does
   not quote.
   Alert rules are evaluated in the backend only: they must not use this stage (`expand_alert_query`).

2. Backend (`pkg/macros/macros.go` `Interpolate`, with `grafana/macropro` `parser.go`): comments are
   blanked out, then every `$__name` / `$__name(args)` known to the plugin is replaced, longest name
   first, arguments split on top-level commas and trimmed:
     $__timeFilter(c)      c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)
     $__timeFilter_ms(c)   c >= fromUnixTimestamp64Milli(<from ms>) AND c <= fromUnixTimestamp64Milli(<to ms>)
     $__dateFilter(c)      c >= toDate('YYYY-MM-DD') AND c <= toDate('YYYY-MM-DD')
     $__dateTimeFilter(d, t) / $__dt(d, t)
                           (d >= toDate(..) AND d <= toDate(..)) AND (t >= toDateTime(..) AND t <= toDateTime(..))
     $__timeFrom(c)        c >= toDateTime(<from s>)         $__timeTo(c)  c <= toDateTime(<to s>)
     $__fromTime / $__toTime           toDateTime(<s>)
     $__fromTime_ms / $__toTime_ms     fromUnixTimestamp64Milli(<ms>)
     $__timeInterval(c)    toStartOfInterval(toDateTime(c), INTERVAL <max(interval s, 1)> second)
     $__timeInterval_ms(c) toStartOfInterval(toDateTime64(c, 3), INTERVAL <max(interval ms, 1)> millisecond)
     $__interval_s         <max(interval s, 1)>
     $__timeGroup(c, 5m)   toStartOfInterval(toDateTime(c), INTERVAL 300 second)
     $__interval / $__interval_ms      macropro defaults: "5m"-style duration / milliseconds
   Unknown `$__` names are left unchanged. Not modelled: the statement macros ($__columns, $__lttb, ...),
   dollar-quoted strings in the comment stripper, and the frontend-only $__adHocFilters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from thinkmeter.schemas.sql_text import MACROPRO_QUOTES, closing_paren, split_top_level

DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "thinkmeter-clickhouse"

ALL = "$__all"  # Grafana's value for the "All" option


@dataclass(frozen=True)
class TimeRange:
    """The query's time range and interval, as Grafana sends them to the backend."""

    start: datetime
    end: datetime
    interval_ms: int = 1000  # Grafana alert queries default to intervalMs 1000

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("TimeRange needs timezone-aware datetimes (e.g. datetime.now(timezone.utc))")

    @classmethod
    def last(cls, seconds: float, end: datetime | None = None, interval_ms: int = 1000) -> TimeRange:
        end = end or datetime.now(timezone.utc)
        return cls(datetime.fromtimestamp(end.timestamp() - seconds, timezone.utc), end, interval_ms)


@dataclass(frozen=True)
class Variable:
    """A dashboard template variable's current state."""

    name: str
    value: str | Sequence[str]  # a list for multi-value variables; ALL or [ALL] for "All"
    options: Sequence[str] = ()  # every option's value (without "All"), used when "All" is selected
    all_value: str | None = None  # the variable's custom allValue


# ------------------------------------------------------------------------------------------ frontend

_CONDITIONAL_ALL = "$__conditionalAll("
_CONDITIONAL_VAR = re.compile(r"(?<=\$\{)[\w\d]+(?=\})|(?<=\$)[\w\d]+")
# Grafana's variable regex (public/app/features/templating, grafana-scenes VARIABLE_REGEX).
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")


def _macro_args(query: str, open_paren: int) -> list[str]:
    """CHDatasource.getMacroArgs: arguments between the parenthesis at open_paren and its match."""
    args: list[str] = []
    depth = 0
    last = open_paren + 1
    for match in re.finditer(r"\(|\)|,", query[open_paren:]):
        token, end = match.group(), open_paren + match.end()
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        if token == "," and depth == 1:
            args.append(query[last : end - 1])
            last = end
        if depth == 0:
            args.append(query[last : end - 1])
            return args
    return []


def _current_text(variable: Variable | None) -> str | None:
    """JavaScript String(current.value): arrays join with commas; None for an undefined variable."""
    if variable is None:
        return None
    value = variable.value
    return value if isinstance(value, str) else ",".join(value)


def apply_conditional_all(sql: str, variables: dict[str, Variable]) -> str:
    index = sql.rfind(_CONDITIONAL_ALL)
    while index != -1:
        params = _macro_args(sql, index + len(_CONDITIONAL_ALL) - 1)
        if len(params) != 2:
            return sql
        phrase = params[0]
        name = _CONDITIONAL_VAR.search(params[1].strip())
        if name and _current_text(variables.get(name.group())) in ("", ALL):
            phrase = "1=1"
        sql = sql.replace(f"{_CONDITIONAL_ALL}{params[0]},{params[1]})", phrase, 1)
        index = sql.rfind(_CONDITIONAL_ALL)
    return sql


def _is_all(value: str | Sequence[str]) -> bool:
    return value == ALL or (not isinstance(value, str) and len(value) > 0 and value[0] == ALL)


def _format(value: str | Sequence[str], fmt: str | None) -> str:
    if fmt is None:  # the plugin's format(): arrays quoted and joined, scalars as they are
        return value if isinstance(value, str) else "'" + "','".join(value) + "'"
    if fmt == "singlequote":
        values = [value] if isinstance(value, str) else list(value)
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt in ("raw", "csv"):
        return value if isinstance(value, str) else ",".join(value)
    raise ValueError(f"variable format {fmt!r} is not modelled here; use the default, singlequote, raw or csv")


def interpolate_variables(sql: str, variables: dict[str, Variable]) -> str:
    """getTemplateSrv().replace(sql, scopedVars, CHDatasource.format)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        variable = variables.get(name)
        if variable is None:
            return match.group(0)
        value = variable.value
        if _is_all(value):
            if variable.all_value is not None:
                return variable.all_value  # custom all values are not formatted
            value = list(variable.options)
        return _format(value, fmt)

    return _VARIABLE.sub(replace, sql)


def expand_frontend(sql: str, variables: Iterable[Variable]) -> str:
    by_name = {v.name: v for v in variables}
    return interpolate_variables(apply_conditional_all(sql, by_name), by_name)


# ------------------------------------------------------------------------------------------- backend


def _strip_comments(sql: str) -> str:
    """macropro StripComments with the plugin's flags: -- and /* */ blanked to spaces outside quotes."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\" and char != "`":
                    j += 2
                    continue
                if sql[j] == char:
                    if j + 1 < n and sql[j + 1] == char:
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end == -1 else end
            out.append(" " * (end - i))
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end == -1 else end + 2
            out.append(" " * (end - i))
            i = end
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _duration(ms: int) -> str:
    """macropro FormatDuration: the largest whole unit."""
    if ms == 0:
        return "0s"
    for unit_ms, suffix in ((3_600_000, "h"), (60_000, "m"), (1000, "s")):
        if ms % unit_ms == 0:
            return f"{ms // unit_ms}{suffix}"
    return f"{ms}ms"


def _go_duration_seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text.strip().strip("'\""))
    if not match:
        raise ValueError(f"$__timeGroup: invalid interval {text!r}")
    seconds = float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    if round(seconds) <= 0:
        raise ValueError(f"$__timeGroup: interval must be positive, got {text!r}")
    return round(seconds)


def _macros(time_range: TimeRange) -> dict[str, tuple[int | None, object]]:
    """name -> (argument count or None for any, function of the arguments)."""
    start_s, end_s = int(time_range.start.timestamp()), int(time_range.end.timestamp())
    start_ms, end_ms = int(time_range.start.timestamp() * 1000), int(time_range.end.timestamp() * 1000)
    start_day = time_range.start.astimezone(timezone.utc).strftime("%Y-%m-%d")
    end_day = time_range.end.astimezone(timezone.utc).strftime("%Y-%m-%d")
    interval_s = max(time_range.interval_ms // 1000, 1)
    interval_ms = max(time_range.interval_ms, 1)
    date_filter = lambda c: f"{c} >= toDate('{start_day}') AND {c} <= toDate('{end_day}')"
    time_filter = lambda c: f"{c} >= toDateTime({start_s}) AND {c} <= toDateTime({end_s})"
    date_time = lambda d, t: f"({date_filter(d)}) AND ({time_filter(t)})"
    return {
        "timeFilter": (1, time_filter),
        "timeFilter_ms": (1, lambda c: f"{c} >= fromUnixTimestamp64Milli({start_ms}) AND {c} <= fromUnixTimestamp64Milli({end_ms})"),
        "dateFilter": (1, date_filter),
        "dateTimeFilter": (2, date_time),
        "dt": (2, date_time),
        "timeFrom": (1, lambda c: f"{c} >= toDateTime({start_s})"),
        "timeTo": (1, lambda c: f"{c} <= toDateTime({end_s})"),
        "fromTime": (None, lambda *_: f"toDateTime({start_s})"),
        "toTime": (None, lambda *_: f"toDateTime({end_s})"),
        "fromTime_ms": (None, lambda *_: f"fromUnixTimestamp64Milli({start_ms})"),
        "toTime_ms": (None, lambda *_: f"fromUnixTimestamp64Milli({end_ms})"),
        "timeInterval": (1, lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {interval_s} second)"),
        "timeInterval_ms": (1, lambda c: f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {interval_ms} millisecond)"),
        "interval_s": (None, lambda *_: str(interval_s)),
        "timeGroup": (2, lambda c, period: f"toStartOfInterval(toDateTime({c}), INTERVAL {_go_duration_seconds(period)} second)"),
        "interval": (None, lambda *_: _duration(time_range.interval_ms)),
        "interval_ms": (None, lambda *_: str(time_range.interval_ms)),
    }


def expand_backend(sql: str, time_range: TimeRange) -> str:
    """The plugin backend's macro pass (statement macros such as $__columns are not modelled)."""
    result = _strip_comments(sql)
    macros = _macros(time_range)
    for name in sorted(macros, key=lambda n: (-len(n), n)):
        arity, function = macros[name]
        token = "$__" + name
        out: list[str] = []
        rest = result
        while (index := rest.find(token)) != -1:
            after = index + len(token)
            if after < len(rest) and (rest[after].isalnum() or rest[after] == "_"):
                out.append(rest[:after])
                rest = rest[after:]
                continue
            out.append(rest[:index])
            rest = rest[after:]
            args: list[str] = []
            if rest.startswith("("):
                end = closing_paren(rest, 0, quotes=MACROPRO_QUOTES, backslash_escapes=False)
                if end != -1:
                    args = split_top_level(rest[1:end], quotes=MACROPRO_QUOTES, backslash_escapes=False)
                    rest = rest[end + 1 :]
            if arity is not None and len(args) != arity:
                raise ValueError(f"{token} expected {arity} argument(s), received {len(args)}")
            out.append(function(*args))  # type: ignore[operator]
        out.append(rest)
        result = "".join(out)
    return result


# ------------------------------------------------------------------------------------------ together


def expand_panel_query(sql: str, time_range: TimeRange, variables: Iterable[Variable] = ()) -> str:
    """A dashboard query as it reaches ClickHouse: frontend interpolation, then the backend macros."""
    return expand_backend(expand_frontend(sql, variables), time_range)


def expand_alert_query(sql: str, time_range: TimeRange) -> str:
    """A Grafana-managed alert query: evaluated server-side, so only the backend macros apply."""
    return expand_backend(sql, time_range)
