"""Loopback engine servers for the collector tests, and their exposition formats.

Each renderer writes what the engine itself writes, built from its source: vLLM and SGLang through
prometheus_client (HELP/TYPE lines, `_total` counters with `_created` series, labels sorted, Go-style
floats), TGI through the Rust metrics-exporter-prometheus (bare counters, blank line between families),
llama.cpp through its own C++ writer (no labels, `<<` number formatting), llama.cpp `/slots` and
Ollama `/api/ps` as JSON. Values are illustrative.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class EngineServer:
    """An HTTP server on 127.0.0.1 answering fixed bodies per path (GET or POST); it can stop and restart on its port."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str, bytes]] = {}
        self.hits: dict[str, int] = {}
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, path: str, body: str | bytes, status: int = 200, content_type: str = PROMETHEUS_TEXT) -> None:
        self.routes[path] = (status, content_type, body.encode() if isinstance(body, str) else body)

    def serve_json(self, path: str, payload: object) -> None:
        self.serve(path, json.dumps(payload), content_type="application/json")

    def start(self) -> EngineServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                status, content_type, body = server.routes.get(
                    self.path, (404, "application/json", b'{"detail":"Not Found"}')
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # a fixed reply, e.g. an OpenAI-compatible chat completion

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


# ---------------------------------------------------------------------------------- prometheus_client


def go_float(value: float) -> str:
    """prometheus_client's floatToGoString."""
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"


CREATED = 1795330822.8645637


class PromClientText:
    """Families rendered the way prometheus_client's generate_latest renders them."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.lines: list[str] = []

    def gauge(self, name: str, help_text: str, value: float, **extra: str) -> PromClientText:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        self.lines.append(f"{name}{_labels({**self.labels, **extra})} {go_float(value)}")
        return self

    def counter(self, name: str, help_text: str, value: float) -> PromClientText:
        """`name` as declared (without _total), as prometheus_client counters are."""
        self.lines += [f"# HELP {name}_total {help_text}", f"# TYPE {name}_total counter"]
        self.lines.append(f"{name}_total{_labels(self.labels)} {go_float(value)}")
        self.lines += [f"# HELP {name}_created {help_text}", f"# TYPE {name}_created gauge"]
        self.lines.append(f"{name}_created{_labels(self.labels)} {go_float(CREATED)}")
        return self

    def histogram(
        self, name: str, help_text: str, bounds: Sequence[float], observations: Iterable[float]
    ) -> PromClientText:
        values = list(observations)
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for bound in (*bounds, math.inf):
            count = sum(1 for v in values if v <= bound)
            self.lines.append(f"{name}_bucket{_labels({**self.labels, 'le': go_float(bound)})} {go_float(count)}")
        self.lines.append(f"{name}_count{_labels(self.labels)} {go_float(len(values))}")
        self.lines.append(f"{name}_sum{_labels(self.labels)} {go_float(sum(values))}")
        self.lines += [f"# HELP {name}_created {help_text}", f"# TYPE {name}_created gauge"]
        self.lines.append(f"{name}_created{_labels(self.labels)} {go_float(CREATED)}")
        return self

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# vLLM's bucket edges (vllm/v1/metrics/loggers.py)
VLLM_TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
VLLM_ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
# SGLang's (python/sglang/srt/metrics/collector.py, TokenizerMetricsCollector defaults)
SGLANG_TTFT_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400)
SGLANG_ITL_BUCKETS = (
    0.002,
    0.004,
    0.006,
    0.008,
    0.010,
    0.015,
    0.020,
    0.025,
    0.030,
    0.035,
    0.040,
    0.060,
    0.080,
    0.100,
    0.200,
    0.400,
    0.600,
    0.800,
    1.000,
    2.000,
    4.000,
    6.000,
    8.000,
)


def vllm_metrics(
    *,
    model: str = "Qwen/Qwen3-8B",
    running: int = 3,
    waiting: int = 1,
    kv_usage: float = 0.4125,
    prefix_queries: float = 18432.0,
    prefix_hits: float = 12288.0,
    preemptions: float = 0.0,
    generation_tokens: float = 40960.0,
    ttft: Sequence[float] = (0.03, 0.05, 0.09),
    itl: Sequence[float] = (0.02, 0.02, 0.03),
    num_gpu_blocks: int | None = 27450,
    old_names: bool = False,
) -> str:
    """vLLM /metrics. old_names: the names before 0.9 / 0.11 (gpu_cache_usage_perc, gpu_prefix_cache_*,
    time_per_output_token_seconds), still shown by servers started with --show-hidden-metrics-for-version."""
    text = PromClientText({"engine": "0", "model_name": model})
    text.gauge("vllm:num_requests_running", "Number of requests in model execution batches.", running)
    text.gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting)
    if old_names:
        text.gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", kv_usage)
        text.counter(
            "vllm:gpu_prefix_cache_queries",
            "GPU prefix cache queries, in terms of number of queried tokens.",
            prefix_queries,
        )
        text.counter(
            "vllm:gpu_prefix_cache_hits", "GPU prefix cache hits, in terms of number of cached tokens.", prefix_hits
        )
    else:
        text.gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", kv_usage)
        text.counter(
            "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", prefix_queries
        )
        text.counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", prefix_hits)
    text.counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", preemptions)
    text.counter("vllm:prompt_tokens", "Number of prefill tokens processed.", prefix_queries)
    text.counter("vllm:generation_tokens", "Number of generation tokens processed.", generation_tokens)
    text.histogram(
        "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", VLLM_TTFT_BUCKETS, ttft
    )
    if old_names:
        text.histogram(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds.",
            VLLM_ITL_BUCKETS,
            itl,
        )
    else:
        text.histogram(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", VLLM_ITL_BUCKETS, itl
        )
    if num_gpu_blocks is not None:
        text.gauge(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            1.0,
            block_size="16",
            cache_dtype="auto",
            enable_prefix_caching="True",
            gpu_memory_utilization="0.9",
            num_gpu_blocks=str(num_gpu_blocks),
        )
    return text.text()


def sglang_metrics(
    *,
    model: str = "qwen3-8b",
    running: int = 5,
    queued: int = 2,
    token_usage: float = 0.62,
    max_total_tokens: int = 200000,
    prompt_tokens: float = 9000.0,
    cached_tokens: float = 3000.0,
    generation_tokens: float = 12000.0,
    retracted: float = 4.0,
    ttft: Sequence[float] = (0.15, 0.3),
    itl: Sequence[float] = (0.009, 0.012, 0.05),
    kv_tokens: tuple[int, int, int] | None = None,
) -> str:
    """`kv_tokens`: (used, evictable, available), the pool gauges newer SGLang exposes."""
    scheduler = PromClientText(
        {"engine_type": "unified", "model_name": model, "moe_ep_rank": "0", "pp_rank": "0", "tp_rank": "0"}
    )
    scheduler.gauge("sglang:num_running_reqs", "The number of running requests.", running)
    scheduler.gauge("sglang:num_used_tokens", "The number of used tokens.", round(token_usage * max_total_tokens))
    scheduler.gauge("sglang:token_usage", "The token usage.", token_usage)
    scheduler.gauge("sglang:gen_throughput", "The generation throughput (token/s).", 812.5)
    scheduler.gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", queued)
    scheduler.gauge("sglang:cache_hit_rate", "The prefix cache hit rate.", 0.5)
    scheduler.gauge(
        "sglang:max_total_num_tokens", "Maximum total number of tokens in the KV cache pool.", max_total_tokens
    )
    scheduler.counter("sglang:num_retracted_requests", "Total number of retracted requests.", retracted)
    if kv_tokens is not None:
        for name, value in zip(("used", "evictable", "available"), kv_tokens):
            scheduler.gauge(f"sglang:kv_{name}_tokens", f"The number of {name} KV tokens.", value)
    tokenizer = PromClientText({"model_name": model})
    tokenizer.counter("sglang:prompt_tokens", "Number of prefill tokens processed.", prompt_tokens)
    tokenizer.counter("sglang:generation_tokens", "Number of generation tokens processed.", generation_tokens)
    tokenizer.counter("sglang:cached_tokens", "Number of cached prompt tokens.", cached_tokens)
    tokenizer.histogram(
        "sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", SGLANG_TTFT_BUCKETS, ttft
    )
    tokenizer.histogram(
        "sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", SGLANG_ITL_BUCKETS, itl
    )
    return scheduler.text() + tokenizer.text()


# ----------------------------------------------------------------------------------------------- TGI

# TGI's duration buckets (router/src/server.rs): 35 steps of a geometric sequence from 0.0001 x 1.5.
TGI_DURATION_BUCKETS = tuple(0.0001 * 1.5 ** (i + 1) for i in range(35))


def tgi_metrics(
    *,
    queue: int = 4,
    batch: int = 8,
    generated_tokens: Sequence[float] = (100, 250),
    itl: Sequence[float] = (0.02, 0.03),
) -> str:
    """metrics-exporter-prometheus output: families separated by blank lines, counters without _total."""
    families = [
        ["# TYPE tgi_request_count counter", f"tgi_request_count {len(generated_tokens) + 1}"],
        ["# TYPE tgi_request_success counter", f"tgi_request_success {len(generated_tokens)}"],
        ["# TYPE tgi_queue_size gauge", f"tgi_queue_size {queue}"],
        ["# TYPE tgi_batch_current_size gauge", f"tgi_batch_current_size {batch}"],
        ["# TYPE tgi_batch_current_max_tokens gauge", "tgi_batch_current_max_tokens 4096"],
    ]

    def histogram(name: str, bounds: Sequence[float], values: Sequence[float]) -> list[str]:
        lines = [f"# TYPE {name} histogram"]
        for bound in bounds:
            lines.append(f'{name}_bucket{{le="{bound!r}"}} {sum(1 for v in values if v <= bound)}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {len(values)}')
        lines.append(f"{name}_sum {sum(values)!r}")
        lines.append(f"{name}_count {len(values)}")
        return lines

    token_buckets = tuple(float(2**i) for i in range(1, 15))
    families.append(histogram("tgi_request_generated_tokens", token_buckets, generated_tokens))
    families.append(histogram("tgi_request_mean_time_per_token_duration", TGI_DURATION_BUCKETS, itl))
    return "\n\n".join("\n".join(family) for family in families) + "\n"


# ---------------------------------------------------------------------------------------- llama.cpp


def llamacpp_metrics(
    *,
    prompt_tokens: int = 1200,
    cached_tokens: int = 300,
    predicted: int = 5000,
    processing: int = 1,
    deferred: int = 0,
    kv_usage_ratio: float | None = None,
) -> str:
    """llama-server --metrics (tools/server): HELP/TYPE per item, no labels. kv_usage_ratio: older builds."""
    counters = [
        ("prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens", prompt_tokens),
        ("prompt_tokens_cached_total", "Number of prompt tokens reused from the cache", cached_tokens),
        ("prompt_seconds_total", "Total time spent processing prompts", 1.25),
        ("tokens_predicted_total", "Number of generation tokens processed", predicted),
        ("tokens_predicted_seconds_total", "Total time spent generating tokens", 61.5),
        ("n_decode_total", "Total number of llama_decode() calls", 5100),
        ("n_tokens_max", "Largest observed sequence length (prompt + generation)", 2048),
    ]
    gauges = [
        ("prompt_tokens_seconds", "Average prompt throughput in tokens/s", 960.0),
        ("predicted_tokens_seconds", "Average generation throughput in tokens/s", 81.3),
        ("requests_processing", "Number of requests processing", processing),
        ("requests_deferred", "Number of requests deferred", deferred),
        ("n_busy_slots_per_decode", "Average number of busy slots per llama_decode() call", 1),
    ]
    if kv_usage_ratio is not None:
        gauges.append(("kv_cache_usage_ratio", "KV-cache usage. 1 means 100 percent usage.", kv_usage_ratio))
    lines = []
    for kind, items in (("counter", counters), ("gauge", gauges)):
        for name, description, value in items:
            lines += [
                f"# HELP llamacpp:{name} {description}",
                f"# TYPE llamacpp:{name} {kind}",
                f"llamacpp:{name} {value:g}",
            ]
    return "\n".join(lines) + "\n"


def llamacpp_slots(*slots: tuple[int, bool, int]) -> list[dict[str, object]]:
    """GET /slots: one (n_ctx, is_processing, n_prompt_tokens) per slot, as server_slot::to_json writes it."""
    return [
        {
            "id": index,
            "n_ctx": n_ctx,
            "speculative": False,
            "is_processing": processing,
            "id_task": 7 + index,
            "n_prompt_tokens": tokens,
            "n_prompt_tokens_processed": tokens,
            "n_prompt_tokens_cache": 0,
            "params": {"n_predict": -1, "temperature": 0.8},
            "next_token": [{"has_next_token": processing, "has_new_line": False, "n_remain": -1, "n_decoded": 12}],
            "prompt": "<|im_start|>user ...",
            "generated": "...",
        }
        for index, (n_ctx, processing, tokens) in enumerate(slots)
    ]


# -------------------------------------------------------------------------------------------- Ollama


def ollama_ps(*models: tuple[str, int, int, int]) -> dict[str, object]:
    """GET /api/ps: one (name, size, size_vram, context_length) per loaded model (server/routes.go PsHandler)."""
    return {
        "models": [
            {
                "name": name,
                "model": name,
                "size": size,
                "digest": "a2af6cc3eb7fa8be8504abaf9b04e88f17a119ec3f04a3addf55f92841195f5a",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "qwen3",
                    "families": ["qwen3"],
                    "parameter_size": "8.2B",
                    "quantization_level": "Q4_K_M",
                },
                "expires_at": "2026-09-01T12:04:05.123456789Z",
                "size_vram": vram,
                "context_length": context,
            }
            for name, size, vram, context in models
        ]
    }
