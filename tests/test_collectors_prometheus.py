"""The Prometheus text-format parser, on lines as engines and client libraries write them."""

from __future__ import annotations

import math

from thinkmeter.collectors import prometheus_text


def test_labels_with_escapes_commas_and_any_order() -> None:
    exposition = prometheus_text.parse(
        "# HELP vllm:request_success_total Count of successfully processed requests.\n"
        "# TYPE vllm:request_success_total counter\n"
        'vllm:request_success_total{model_name="a \\"quoted\\", name\\\\with\\nnewline",engine="0",} 40.0\n'
        'vllm:request_success_total { finished_reason = "stop" , engine="1"} 2\n'
    )
    first, second = exposition.series("vllm:request_success_total")
    assert first.labels == {"model_name": 'a "quoted", name\\with\nnewline', "engine": "0"}
    assert first.value == 40.0
    assert second.labels == {"finished_reason": "stop", "engine": "1"}
    assert exposition.types == {"vllm:request_success_total": "counter"}
    assert exposition.invalid_lines == 0


def test_values_timestamps_and_exemplars() -> None:
    exposition = prometheus_text.parse(
        "a 1.5e+06\n"
        "b +Inf\n"
        "c -Inf\n"
        "d NaN\n"
        "e 3 1712345678000\n"
        'f_bucket{le="0.5"} 7 # {trace_id="abc"} 0.43 1712345678.1\n'
        "llamacpp:g 1.23457e+06\n"
        "h nan\n"
        "# EOF\n"
    )
    values = {name: series[0].value for name, series in exposition.samples.items()}
    assert values["a"] == 1.5e6 and values["b"] == math.inf and values["c"] == -math.inf
    assert math.isnan(values["d"]) and math.isnan(values["h"])
    assert values["e"] == 3 and values["f_bucket"] == 7 and values["llamacpp:g"] == 1.23457e6


def test_malformed_lines_are_counted_and_skipped() -> None:
    exposition = prometheus_text.parse(
        "good 1\n"
        'unterminated{a="b 2\n'
        "no_value\n"
        'bad_label{1a="x"} 3\n'
        "three fields 1 2 3\n"
        "word notanumber\n"
        "{} 5\n"
        "<html>\n"
        'also_good{x="y"} 2\n'
    )
    assert sorted(exposition.samples) == ["also_good", "good"]
    assert exposition.invalid_lines == 7
    assert len(exposition) == 2


def test_histograms_group_by_labels_and_need_count_and_sum() -> None:
    exposition = prometheus_text.parse(
        'h_bucket{engine="0",le="0.1"} 1\n'
        'h_bucket{le="+Inf",engine="0"} 3\n'
        'h_bucket{engine="0",le="1.0"} 2\n'
        'h_count{engine="0"} 3\n'
        'h_sum{engine="0"} 2.5\n'
        'h_bucket{engine="1",le="0.1"} 4\n'  # no _count/_sum for engine 1: incomplete, dropped
        'h_bucket{engine="1",le="bogus"} 4\n'
    )
    (histogram,) = exposition.histograms("h")
    assert histogram.labels == {"engine": "0"}
    assert (histogram.bounds, histogram.cumulative_counts) == ((0.1, 1.0), (1, 2))
    assert (histogram.count, histogram.sum) == (3, 2.5)
    assert exposition.histograms("missing") == []
