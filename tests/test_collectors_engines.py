"""Engine scrapers against loopback servers that serve each engine's own exposition format."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.engine_servers import (
    VLLM_TTFT_BUCKETS,
    EngineServer,
    llamacpp_metrics,
    llamacpp_slots,
    ollama_ps,
    sglang_metrics,
    tgi_metrics,
    vllm_metrics,
)
from thinkmeter.collectors import context
from thinkmeter.collectors.engines import EngineScraper, HistogramDelta, ScrapeError
from thinkmeter.collectors.metrics import engine_points
from thinkmeter.collectors.runner import CollectorRunner
from thinkmeter.schemas import semconv as sc


@pytest.fixture
def server() -> Iterator[EngineServer]:
    server = EngineServer().start()
    yield server
    server.stop()


def _elapsed_s(snapshot) -> float:
    return (snapshot.time_unix_nano - snapshot.interval_start_unix_nano) / 1e9


def test_vllm_current_names(server: EngineServer) -> None:
    server.serve("/metrics", vllm_metrics())
    scraper = EngineScraper(server.url + "/v1")
    first = scraper.scrape()
    assert server.hits == {"/metrics": 1}  # detecting the engine read nothing twice
    assert (first.engine, first.model, first.server_address, first.server_port) == (
        "vllm",
        "Qwen/Qwen3-8B",
        "127.0.0.1",
        server.port,
    )
    assert (first.kv_cache_usage, first.kv_cache_capacity_tokens) == (0.4125, 27450 * 16)
    assert (first.requests_running, first.requests_waiting) == (3, 1)
    # Deltas need a second scrape: unknown, not zero.
    assert (first.preemptions, first.prefix_cache_hit_rate, first.generation_tokens_rate) == (None, None, None)
    assert (first.time_to_first_token, first.inter_token_latency, first.interval_start_unix_nano) == (None, None, None)

    server.serve(
        "/metrics",
        vllm_metrics(
            running=7,
            waiting=4,
            kv_usage=0.93,
            prefix_queries=18432.0 + 1000,
            prefix_hits=12288.0 + 250,
            preemptions=2.0,
            generation_tokens=40960.0 + 600,
            ttft=(0.03, 0.05, 0.09, 0.3, 1.7),
            itl=(0.02, 0.02, 0.03, 0.2),
        ),
    )
    second = scraper.scrape()
    assert second.interval_start_unix_nano == first.time_unix_nano
    assert (second.kv_cache_usage, second.requests_running, second.requests_waiting) == (0.93, 7, 4)
    assert (second.preemptions, second.prefix_cache_hit_rate) == (2.0, 0.25)
    assert second.generation_tokens_rate * _elapsed_s(second) == pytest.approx(600, rel=0.05)  # scrape timing under load
    ttft_counts = [0] * 23
    ttft_counts[9] = 1  # 0.3 falls in (0.25, 0.5]
    ttft_counts[12] = 1  # 1.7 falls in (1.0, 2.5]
    assert second.time_to_first_token == HistogramDelta(
        bounds=VLLM_TTFT_BUCKETS,
        bucket_counts=tuple(ttft_counts),
        count=2,
        sum=pytest.approx(2.0),
    )
    assert second.inter_token_latency.count == 1
    assert second.inter_token_latency.bucket_counts[6] == 1  # 0.2 falls in (0.15, 0.2]


def test_vllm_older_names(server: EngineServer) -> None:
    server.serve("/metrics", vllm_metrics(old_names=True, num_gpu_blocks=None))
    scraper = EngineScraper(server.url)
    scraper.scrape()
    server.serve(
        "/metrics",
        vllm_metrics(
            old_names=True,
            num_gpu_blocks=None,
            kv_usage=0.5,
            prefix_queries=18432.0 + 400,
            prefix_hits=12288.0 + 100,
            itl=(0.02, 0.02, 0.03, 0.6),
        ),
    )
    snapshot = scraper.scrape()
    assert (snapshot.engine, snapshot.kv_cache_usage, snapshot.kv_cache_capacity_tokens) == ("vllm", 0.5, None)
    assert snapshot.prefix_cache_hit_rate == 0.25
    assert snapshot.inter_token_latency.count == 1 and snapshot.inter_token_latency.sum == pytest.approx(0.6)


def test_counter_reset_counts_from_the_restart(server: EngineServer) -> None:
    server.serve("/metrics", vllm_metrics(preemptions=40.0, generation_tokens=90000.0, ttft=(0.03,) * 50))
    scraper = EngineScraper(server.url, engine="vllm")
    scraper.scrape()
    # The engine restarted: every counter starts again from zero.
    server.serve(
        "/metrics",
        vllm_metrics(
            preemptions=3.0, generation_tokens=700.0, prefix_queries=100.0, prefix_hits=20.0, ttft=(0.03, 0.3)
        ),
    )
    snapshot = scraper.scrape()
    assert snapshot.preemptions == 3.0
    assert snapshot.prefix_cache_hit_rate == 0.2
    assert snapshot.generation_tokens_rate * _elapsed_s(snapshot) == pytest.approx(700, rel=0.05)  # scrape timing under load
    assert snapshot.time_to_first_token.count == 2
    assert snapshot.time_to_first_token.bucket_counts[4] == 1 and snapshot.time_to_first_token.bucket_counts[9] == 1


def test_a_server_that_goes_away_and_returns(server: EngineServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="thinkmeter")
    server.serve("/metrics", vllm_metrics(preemptions=10.0))
    scraper = EngineScraper(server.url, interval_s=1.0)
    runner = CollectorRunner(engines=[scraper])

    up = runner.collect_once()
    assert [p.value for p in up if p.name == sc.METRIC_ENGINE_UP] == [1.0]
    assert context.latest_engine_snapshot("localhost", server.port) is not None

    server.stop()
    with pytest.raises(ScrapeError, match="cannot reach"):
        scraper.scrape()
    down = runner.collect_once() + runner.collect_once()
    assert [(p.name, p.value) for p in down] == [(sc.METRIC_ENGINE_UP, 0.0)] * 2
    # The same series as while it was up, so a dashboard sees one line drop to 0.
    assert (
        down[0].attributes
        == up[0].attributes
        == {
            "server.address": "127.0.0.1",
            "server.port": str(server.port),
            "thinkmeter.engine": "vllm",
            "gen_ai.request.model": "Qwen/Qwen3-8B",
        }
    )
    assert context.latest_engine_snapshot("localhost", server.port) is None  # no stale pressure

    server.serve("/metrics", vllm_metrics(preemptions=1.0))  # it came back restarted
    server.start()
    back = runner.collect_once()
    assert [p.value for p in back if p.name == sc.METRIC_ENGINE_UP] == [1.0]
    assert [p.value for p in back if p.name == sc.METRIC_ENGINE_PREEMPTIONS] == [1.0]
    said = [r.getMessage() for r in caplog.records if r.name == "thinkmeter.collectors"]
    assert len(said) == 2  # once when it went away (not per failed scrape), once when it came back
    assert "is not answering" in said[0] and "is answering again" in said[1]
    runner.stop()


def test_sglang(server: EngineServer) -> None:
    server.serve("/metrics", sglang_metrics())
    scraper = EngineScraper(server.url)
    scraper.scrape()
    server.serve(
        "/metrics",
        sglang_metrics(
            running=9,
            queued=0,
            token_usage=0.81,
            prompt_tokens=9000.0 + 2000,
            cached_tokens=3000.0 + 1500,
            generation_tokens=12000.0 + 300,
            retracted=6.0,
            ttft=(0.15, 0.3, 0.5),
        ),
    )
    snapshot = scraper.scrape()
    assert (snapshot.engine, snapshot.model) == ("sglang", "qwen3-8b")
    assert (snapshot.kv_cache_usage, snapshot.kv_cache_capacity_tokens) == (0.81, 200000)
    assert (snapshot.requests_running, snapshot.requests_waiting, snapshot.preemptions) == (9, 0, 2.0)
    assert snapshot.prefix_cache_hit_rate == 0.75
    assert snapshot.time_to_first_token.count == 1 and snapshot.time_to_first_token.bucket_counts[3] == 1
    assert snapshot.inter_token_latency.count == 0


def test_sglang_kv_pool_gauges_split_running_use_from_reclaimable_cache(server: EngineServer) -> None:
    # An agentic workload: most of the pool holds cached session prefixes, which token_usage leaves out.
    server.serve("/metrics", sglang_metrics(token_usage=0.05, kv_tokens=(20_000, 170_000, 10_000)))
    snapshot = EngineScraper(server.url).scrape()
    assert snapshot.kv_cache_usage == 20_000 / 200_000
    assert (snapshot.kv_cache_used_tokens, snapshot.kv_cache_evictable_tokens, snapshot.kv_cache_available_tokens) == (
        20_000, 170_000, 10_000,
    )
    points = {p.name: p.value for p in engine_points(snapshot)}
    assert points[sc.METRIC_ENGINE_KV_CACHE_EVICTABLE_TOKENS] == 170_000
    assert points[sc.METRIC_ENGINE_KV_CACHE_USED_TOKENS] == 20_000
    assert points[sc.METRIC_ENGINE_KV_CACHE_AVAILABLE_TOKENS] == 10_000


def test_tgi(server: EngineServer) -> None:
    server.serve("/metrics", tgi_metrics())
    scraper = EngineScraper(server.url)
    scraper.scrape()
    server.serve("/metrics", tgi_metrics(queue=1, batch=3, generated_tokens=(100, 250, 400), itl=(0.02, 0.03, 0.04)))
    snapshot = scraper.scrape()
    assert (snapshot.engine, snapshot.model) == ("tgi", None)
    assert (snapshot.requests_running, snapshot.requests_waiting) == (3, 1)
    assert snapshot.generation_tokens_rate * _elapsed_s(snapshot) == pytest.approx(400, rel=0.05)  # scrape timing under load
    assert snapshot.inter_token_latency.count == 1 and snapshot.inter_token_latency.sum == pytest.approx(0.04)
    # TGI exposes neither KV usage nor TTFT: unknown.
    assert (snapshot.kv_cache_usage, snapshot.time_to_first_token, snapshot.prefix_cache_hit_rate) == (None, None, None)


def test_llamacpp_metrics_and_a_single_slot(server: EngineServer) -> None:
    server.serve("/metrics", llamacpp_metrics())
    server.serve_json("/slots", llamacpp_slots((8192, True, 2048)))
    scraper = EngineScraper(server.url)
    scraper.scrape()
    server.serve("/metrics", llamacpp_metrics(prompt_tokens=1200 + 300, cached_tokens=300 + 100, predicted=5000 + 64))
    snapshot = scraper.scrape()
    assert (snapshot.engine, snapshot.model) == ("llama.cpp", None)  # no /v1/models here
    assert (snapshot.kv_cache_usage, snapshot.kv_cache_capacity_tokens, snapshot.kv_cache_layout) == (0.25, 8192, "per_slot")
    assert (snapshot.requests_running, snapshot.requests_waiting) == (1, 0)
    assert snapshot.prefix_cache_hit_rate == 0.25  # 100 cached of 400 prompt tokens
    assert snapshot.generation_tokens_rate * _elapsed_s(snapshot) == pytest.approx(64, rel=0.05)  # scrape timing under load


def test_llamacpp_slots_with_their_own_kv_parts(server: EngineServer) -> None:
    server.serve("/metrics", llamacpp_metrics(processing=2))
    server.serve_json("/slots", llamacpp_slots((4096, True, 1000), (4096, True, 300), (4096, False, 0)))
    snapshot = EngineScraper(server.url, engine="llama.cpp").scrape()
    # --parallel 3: each slot's n_ctx is its own part of the pool; idle slots hold nothing for a request.
    assert (snapshot.requests_running, snapshot.kv_cache_capacity_tokens, snapshot.kv_cache_layout) == (2, 12288, "per_slot")
    assert snapshot.kv_cache_usage == pytest.approx(1300 / 12288)


def test_llamacpp_default_slots_share_one_kv_pool(server: EngineServer) -> None:
    server.serve("/metrics", llamacpp_metrics(processing=1))
    # llama-server's default: 4 slots over one unified pool, each reporting the whole pool as n_ctx.
    server.serve_json("/slots", llamacpp_slots((32768, True, 4983), (32768, False, 0), (32768, False, 0), (32768, False, 0)))
    snapshot = EngineScraper(server.url).scrape()
    assert (snapshot.kv_cache_capacity_tokens, snapshot.kv_cache_layout) == (32768, "unified")
    assert snapshot.kv_cache_usage == pytest.approx(4983 / 32768)
    # Told otherwise (--parallel 4 without --kv-unified), the same slots are four parts.
    snapshot = EngineScraper(server.url, kv_layout="per_slot").scrape()
    assert (snapshot.kv_cache_capacity_tokens, snapshot.kv_cache_layout) == (4 * 32768, "per_slot")
    # More tokens than one slot's context can only be held in separate parts.
    server.serve_json("/slots", llamacpp_slots(*[(1024, True, 1000)] * 4))
    snapshot = EngineScraper(server.url).scrape()
    assert (snapshot.kv_cache_usage, snapshot.kv_cache_capacity_tokens, snapshot.kv_cache_layout) == (4000 / 4096, 4096, "per_slot")
    with pytest.raises(ValueError, match="unified or per_slot"):
        EngineScraper(server.url, kv_layout="paged")


def test_llamacpp_older_build_reports_kv_usage_in_metrics(server: EngineServer) -> None:
    server.serve("/metrics", llamacpp_metrics(kv_usage_ratio=0.375))
    server.serve(
        "/slots", '{"error":{"code":501,"message":"This server does not support slots endpoint."}}', status=501
    )
    snapshot = EngineScraper(server.url).scrape()
    assert (snapshot.engine, snapshot.kv_cache_usage, snapshot.requests_running) == ("llama.cpp", 0.375, 1)


def test_llamacpp_without_metrics_uses_slots(server: EngineServer) -> None:
    server.serve(
        "/metrics",
        '{"error":{"code":501,"message":"This server does not support metrics endpoint."}}',
        status=501,
        content_type="application/json",
    )
    server.serve_json("/slots", llamacpp_slots((8192, False, 500)))
    snapshot = EngineScraper(server.url, engine="llama.cpp").scrape()
    assert (snapshot.requests_running, snapshot.kv_cache_usage, snapshot.requests_waiting) == (0, 0.0, None)

    server.serve("/slots", "{}", status=501)
    with pytest.raises(ScrapeError, match="HTTP 501.*HTTP 501"):
        EngineScraper(server.url, engine="llama.cpp").scrape()


def test_ollama_loaded_models(server: EngineServer) -> None:
    server.serve_json(
        "/api/ps", ollama_ps(("qwen3:8b", 6_654_289_920, 6_654_289_920, 8192), ("llama3.2:1b", 2_019_000_000, 0, 4096))
    )
    snapshot = EngineScraper(server.url).scrape()  # no /metrics (404): detected from /api/ps
    assert server.hits == {"/metrics": 1, "/api/ps": 1}
    assert (snapshot.engine, snapshot.model) == ("ollama", "llama3.2:1b,qwen3:8b")
    assert [(m.name, m.size_bytes, m.vram_bytes, m.context_length) for m in snapshot.loaded_models] == [
        ("qwen3:8b", 6_654_289_920, 6_654_289_920, 8192),
        ("llama3.2:1b", 2_019_000_000, 0, 4096),
    ]
    assert (snapshot.kv_cache_usage, snapshot.requests_running) == (None, None)


@pytest.mark.parametrize(
    ("path", "body", "engine", "error"),
    [
        ("/metrics", "<html><body><h1>Welcome to nginx!</h1></body></html>", None, "no Prometheus samples"),
        ("/metrics", "\x00\x9f\x92\x96 binary junk \xff", "vllm", "no Prometheus samples"),
        ("/metrics", "# HELP up Up.\n# TYPE up gauge\nup 1\n", None, "has no vllm:, sglang:, tgi_ or llamacpp:"),
        ("/api/ps", '{"models": [', "ollama", "did not return JSON"),
        ("/api/ps", '["qwen3"]', "ollama", "no models list"),
    ],
)
def test_garbage_responses_raise_scrape_errors(
    server: EngineServer, path: str, body: str, engine: str | None, error: str
) -> None:
    server.serve(path, body)
    with pytest.raises(ScrapeError, match=error):
        EngineScraper(server.url, engine=engine).scrape()


def test_malformed_lines_are_skipped_and_the_rest_is_read(server: EngineServer) -> None:
    text = vllm_metrics()
    broken = text.replace(
        "# HELP vllm:num_requests_waiting",
        'vllm:num_requests_running{engine="0" 12\nvllm:oops{a="b"} twelve\n}}}{{{\n# HELP vllm:num_requests_waiting',
    )
    server.serve("/metrics", broken)
    snapshot = EngineScraper(server.url).scrape()
    assert (snapshot.requests_running, snapshot.requests_waiting, snapshot.kv_cache_usage) == (3, 1, 0.4125)


def test_a_nan_reading_is_unknown(server: EngineServer) -> None:
    server.serve("/metrics", vllm_metrics(kv_usage=float("nan")))
    assert EngineScraper(server.url).scrape().kv_cache_usage is None


def test_unknown_engine_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown engine 'vllm-ascend'"):
        EngineScraper("http://127.0.0.1:8000", engine="vllm-ascend")
