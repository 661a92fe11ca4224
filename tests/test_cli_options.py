"""Every CLI option is checked at parse time: a bad value exits 2 (argparse's convention) with one error
line that names the accepted range, before anything reaches ClickHouse."""

from __future__ import annotations

import pytest

from thinkmeter.cli import main

BAD_VALUES = [
    (["outliers", "-k", "-1"], "at least 1 and at most 1000"),
    (["outliers", "-k", "nan"], "at least 1 and at most 1000"),
    (["outliers", "-k", "inf"], "at least 1 and at most 1000"),
    (["outliers", "-k", "0.5"], "at least 1 and at most 1000"),
    (["outliers", "-k", "two"], "at least 1 and at most 1000"),
    (["outliers", "--quantile", "0"], "greater than 0 and less than 1"),
    (["outliers", "--quantile", "1"], "greater than 0 and less than 1"),
    (["outliers", "--quantile", "nan"], "greater than 0 and less than 1"),
    (["outliers", "--limit", "-3"], "from 1 to 10000"),
    (["outliers", "--limit", "0"], "from 1 to 10000"),
    (["outliers", "--limit", "2.5"], "from 1 to 10000"),
    (["report", "--window", "99999999d"], "from 1s to 3650d"),
    (["report", "--window", "0h"], "from 1s to 3650d"),
    (["report", "--window=-1h"], "is not like 30m, 24h or 7d"),
    (["report", "--window", "nan"], "is not like 30m, 24h or 7d"),
    (["outliers", "--window", "100000w"], "from 1s to 3650d"),
    (["collect", "--interval", "0"], "greater than 0 s and at most 86400 s"),
    (["collect", "--interval", "-5"], "greater than 0 s and at most 86400 s"),
    (["collect", "--interval", "nan"], "greater than 0 s and at most 86400 s"),
    (["collect", "--interval", "86401"], "greater than 0 s and at most 86400 s"),
    (["alerts", "run", "--interval", "0"], "greater than 0 s and at most 86400 s"),
    (["alerts", "run", "--interval", "inf"], "greater than 0 s and at most 86400 s"),
    (["demo", "--calls", "0"], "from 1 to 1000000"),
    (["demo", "--concurrency", "0"], "from 1 to 256"),
    (["demo", "--concurrency", "1000"], "from 1 to 256"),
    (["demo", "--time-scale", "0"], "greater than 0 and at most 10"),
    (["demo", "--time-scale", "nan"], "greater than 0 and at most 10"),
    (["demo", "--seed", "-1"], "from 0 to 4294967295"),
    (["provision", "grafana", "--clickhouse-port", "0"], "from 1 to 65535"),
    (["provision", "grafana", "--clickhouse-port", "70000"], "from 1 to 65535"),
    (["schema", "show", "--ttl-days", "0"], "from 1 to 36500"),
    (["schema", "apply", "--ttl-days", "-5"], "from 1 to 36500"),
]


@pytest.mark.parametrize(("argv", "accepted"), BAD_VALUES, ids=[" ".join(argv) for argv, _ in BAD_VALUES])
def test_a_bad_option_value_exits_2_with_the_accepted_range(
    capsys: pytest.CaptureFixture[str], argv: list[str], accepted: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("thinkmeter ") and ": error: argument " in error, error
    assert accepted in error, error
    assert "Traceback" not in error and "DB::Exception" not in error


def test_values_at_the_edges_of_the_ranges_parse() -> None:
    from thinkmeter.cli import build_parser

    args = build_parser().parse_args(["outliers", "-k", "1", "--quantile", "0.999", "--limit", "10000", "--window", "3650d"])
    assert (args.k, args.quantile, args.limit, args.window) == (1.0, 0.999, 10000, 3650 * 86400)
