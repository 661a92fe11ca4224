"""Scrape inference-engine servers into one normalized snapshot per server.

vLLM, SGLang, TGI and llama.cpp expose Prometheus `/metrics`; llama.cpp's KV state and in-flight tokens
are read from `/slots`, its model from `/v1/models`, and Ollama's loaded models from `/api/ps`. Engine
metric names changed across releases, so each quantity lists its names newest first and the first one
present wins.

Counters and histograms become deltas between two scrapes (a value that went down means the server
restarted: the new value is what was counted since). A quantity the engine does not expose, or that
needs two scrapes, is None, never 0.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from thinkmeter.collectors import prometheus_text
from thinkmeter.collectors.prometheus_text import Exposition
from thinkmeter.schemas import semconv as sc

ENGINES = (sc.ENGINE_VLLM, sc.ENGINE_SGLANG, sc.ENGINE_TGI, sc.ENGINE_LLAMA_CPP, sc.ENGINE_OLLAMA)
KV_LAYOUTS = (sc.KV_LAYOUT_UNIFIED, sc.KV_LAYOUT_PER_SLOT)
# llama-server's slot count when none is given: 4 slots sharing one unified KV pool.
_LLAMA_CPP_DEFAULT_SLOTS = 4
_MAX_BODY_BYTES = 8 * 1024 * 1024
_TIMEOUT_S = 2.0  # per request; a server slower than this is treated as not answering


class ScrapeError(Exception):
    """The server could not be read: unreachable, an HTTP error, or not what the engine serves."""


@dataclass(frozen=True)
class HistogramDelta:
    """Observations between two scrapes: per-bucket counts, the last one above bounds[-1]."""

    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]
    count: int
    sum: float


@dataclass(frozen=True)
class LoadedModel:
    """A model an Ollama server holds in memory (`/api/ps`)."""

    name: str
    size_bytes: int | None
    vram_bytes: int | None
    context_length: int | None


@dataclass(frozen=True)
class EngineSnapshot:
    engine: str
    url: str
    server_address: str
    server_port: int | None
    model: str | None
    time_unix_nano: int
    # Start of the interval the deltas cover (the previous successful scrape); None on the first scrape.
    interval_start_unix_nano: int | None = None
    kv_cache_usage: float | None = None  # 0-1 fraction of the KV pool held by running requests
    kv_cache_capacity_tokens: int | None = None
    kv_cache_layout: str | None = None  # llama.cpp: how usage counts a pool shared by several slots
    # SGLang's pool in tokens: held by running requests, cached and reclaimable, free.
    kv_cache_used_tokens: int | None = None
    kv_cache_evictable_tokens: int | None = None
    kv_cache_available_tokens: int | None = None
    requests_running: int | None = None
    requests_waiting: int | None = None
    preemptions: float | None = None  # preemptions during the interval
    prefix_cache_hit_rate: float | None = None  # cached / queried prompt tokens during the interval
    generation_tokens_rate: float | None = None  # generated tokens per second over the interval
    time_to_first_token: HistogramDelta | None = None
    inter_token_latency: HistogramDelta | None = None
    loaded_models: tuple[LoadedModel, ...] = ()


@dataclass(frozen=True)
class _Names:
    """Where one engine keeps each quantity; each tuple lists metric names newest first."""

    prefix: str
    kv_usage: tuple[str, ...] = ()
    kv_capacity: tuple[str, ...] = ()  # a gauge in tokens, summed over data-parallel ranks
    # The pool in tokens (summed over ranks): used by running requests, evictable cache, free.
    kv_used: tuple[str, ...] = ()
    kv_evictable: tuple[str, ...] = ()
    kv_available: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    preemptions: tuple[str, ...] = ()
    generation_tokens: tuple[str, ...] = ()
    prefix_hits: tuple[str, ...] = ()
    prefix_queries: tuple[str, ...] = ()
    # llama.cpp counts processed (uncached) prompt tokens, so queries = hits + that counter.
    prefix_queries_exclude_hits: bool = False
    prefix_hit_rate_gauge: tuple[str, ...] = ()
    ttft: tuple[str, ...] = ()
    itl: tuple[str, ...] = ()


_PROMETHEUS_ENGINES: dict[str, _Names] = {
    sc.ENGINE_VLLM: _Names(
        prefix="vllm:",
        kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        running=("vllm:num_requests_running",),
        waiting=("vllm:num_requests_waiting",),
        preemptions=("vllm:num_preemptions_total",),
        generation_tokens=("vllm:generation_tokens_total",),
        prefix_hits=("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
        prefix_queries=("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
        prefix_hit_rate_gauge=("vllm:gpu_prefix_cache_hit_rate",),
        ttft=("vllm:time_to_first_token_seconds",),
        itl=("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    ),
    sc.ENGINE_SGLANG: _Names(
        prefix="sglang:",
        kv_usage=("sglang:token_usage",),
        kv_capacity=("sglang:max_total_num_tokens",),
        # Newer SGLang: token_usage leaves the radix cache out, so agentic sessions' cached prefixes
        # look like free room; these gauges split the pool exactly.
        kv_used=("sglang:kv_used_tokens",),
        kv_evictable=("sglang:kv_evictable_tokens",),
        kv_available=("sglang:kv_available_tokens",),
        running=("sglang:num_running_reqs",),
        waiting=("sglang:num_queue_reqs",),
        # SGLang retracts (preempts) requests when the KV pool runs out; older versions only had a gauge.
        preemptions=("sglang:num_retracted_requests_total",),
        generation_tokens=("sglang:generation_tokens_total",),
        prefix_hits=("sglang:cached_tokens_total",),
        prefix_queries=("sglang:prompt_tokens_total",),
        prefix_hit_rate_gauge=("sglang:cache_hit_rate",),
        ttft=("sglang:time_to_first_token_seconds",),
        itl=("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
    ),
    # TGI has neither a KV gauge nor a TTFT histogram; its generated-token histogram's _sum is a counter.
    "tgi": _Names(
        prefix="tgi_",
        running=("tgi_batch_current_size",),
        waiting=("tgi_queue_size",),
        generation_tokens=("tgi_request_generated_tokens_sum",),
        itl=("tgi_request_mean_time_per_token_duration",),
    ),
    # kv_cache_usage_ratio exists only in older llama.cpp builds; newer ones need /slots.
    sc.ENGINE_LLAMA_CPP: _Names(
        prefix="llamacpp:",
        kv_usage=("llamacpp:kv_cache_usage_ratio",),
        running=("llamacpp:requests_processing",),
        waiting=("llamacpp:requests_deferred",),
        generation_tokens=("llamacpp:tokens_predicted_total",),
        prefix_hits=("llamacpp:prompt_tokens_cached_total",),
        prefix_queries=("llamacpp:prompt_tokens_total",),
        prefix_queries_exclude_hits=True,
    ),
}


@dataclass(frozen=True)
class _Slots:
    """What llama.cpp's `/slots` says about the whole server."""

    running: int
    kv_usage: float | None
    capacity: int | None
    layout: str | None
    decoding: int  # tokens generated so far by the requests in flight


class EngineScraper:
    """Reads one engine server; `scrape()` returns its current snapshot or raises ScrapeError.

    `kv_layout` (llama.cpp): whether the server's slots share one KV pool ("unified") or each has its
    own part ("per_slot"). The server does not say; without it, a server with llama-server's default
    4 slots is taken as unified and any other count as per-slot (`--parallel N` without
    `--kv-unified`), unless the slots hold more tokens than one slot's context, which only per-slot
    parts can.
    """

    def __init__(
        self,
        url: str,
        engine: str | None = None,
        model: str | None = None,
        interval_s: float = 5.0,
        kv_layout: str | None = None,
    ) -> None:
        if engine is not None and engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)} or leave it out to detect it")
        if kv_layout is not None and kv_layout not in KV_LAYOUTS:
            raise ValueError(f"unknown KV-cache layout {kv_layout!r}; use {' or '.join(KV_LAYOUTS)}")
        self.base_url = _base_url(url)
        parts = urlsplit(self.base_url)
        if not parts.hostname:
            raise ValueError(f"engine URL {url!r} has no host; give it as http://HOST:PORT")
        self.server_address = parts.hostname
        self.server_port = parts.port or (443 if parts.scheme == "https" else 80)
        self.engine = engine
        self.model = model
        self.interval_s = interval_s
        self.kv_layout = kv_layout
        self._served_model: str | None = None  # llama.cpp's /v1/models, read once per run of the server
        self._decoding: int | None = None  # llama.cpp: tokens in flight at the previous scrape
        self._overcounted = 0.0  # llama.cpp: tokens an earlier interval counted that a later one takes back
        self._previous_time_ns: int | None = None
        self._previous_monotonic: float | None = None
        self._counters: dict[str, float] = {}
        self._histograms: dict[str, prometheus_text.Histogram] = {}
        # No proxies: engines sit on the local network, and a proxy from the environment would only get in the way.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def scrape(self) -> EngineSnapshot:
        now_ns = time.time_ns()
        monotonic = time.monotonic()
        fetched = None  # what detection already read, so the first scrape reads each endpoint once
        if self.engine is None:
            self.engine, fetched = self._detect()
        try:
            if self.engine == sc.ENGINE_OLLAMA:
                snapshot = self._ollama(now_ns, fetched)
            else:
                snapshot = self._prometheus(self.engine, now_ns, monotonic, fetched)
        except ScrapeError:
            self._served_model = None  # the server may come back with another model
            raise
        self._previous_time_ns = now_ns
        self._previous_monotonic = monotonic
        return snapshot

    # --- reading ---------------------------------------------------------------------------------

    def _get(self, path: str) -> str:
        url = self.base_url + path
        try:
            with self._opener.open(url, timeout=_TIMEOUT_S) as response:
                body = response.read(_MAX_BODY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise ScrapeError(f"{url} answered HTTP {exc.code}") from None
        except (OSError, ValueError) as exc:  # refused, timed out, reset, bad URL
            raise ScrapeError(f"cannot reach {url}: {exc}") from None
        if len(body) > _MAX_BODY_BYTES:
            raise ScrapeError(f"{url} sent more than {_MAX_BODY_BYTES} bytes; is this a metrics endpoint?")
        return body.decode("utf-8", errors="replace")

    def _get_json(self, path: str) -> Any:
        text = self._get(path)
        try:
            return json.loads(text)
        except ValueError:
            raise ScrapeError(f"{self.base_url + path} did not return JSON") from None

    def _metrics(self) -> Exposition:
        exposition = prometheus_text.parse(self._get("/metrics"))
        if not len(exposition):
            raise ScrapeError(f"{self.base_url}/metrics returned no Prometheus samples")
        return exposition

    def _detect(self) -> tuple[str, Any]:
        """The engine, from its metric prefixes or an Ollama /api/ps, and what was read to tell."""
        try:
            exposition = self._metrics()
        except ScrapeError as metrics_error:
            try:
                payload = self._get_json("/api/ps")
            except ScrapeError:
                raise metrics_error from None
            if isinstance(payload, dict) and isinstance(payload.get("models"), list):
                return sc.ENGINE_OLLAMA, payload
            raise metrics_error from None
        for engine, names in _PROMETHEUS_ENGINES.items():
            if any(name.startswith(names.prefix) for name in exposition.samples):
                return engine, exposition
        raise ScrapeError(
            f"{self.base_url}/metrics has no vllm:, sglang:, tgi_ or llamacpp: metrics; pass the engine explicitly"
        )

    # --- Prometheus engines ------------------------------------------------------------------------

    def _prometheus(self, engine: str, now_ns: int, monotonic: float, exposition: Exposition | None) -> EngineSnapshot:
        names = _PROMETHEUS_ENGINES[engine]
        slots = None
        model = self.model
        if engine == sc.ENGINE_LLAMA_CPP:
            slots, exposition = self._llamacpp_sources(exposition)
            model = model or self._llamacpp_model()
        elif exposition is None:
            exposition = self._metrics()
        elapsed = None if self._previous_monotonic is None else monotonic - self._previous_monotonic

        kv_usage = _mean(exposition, names.kv_usage)
        running = _total(exposition, names.running)
        waiting = _total(exposition, names.waiting)
        capacity = _vllm_capacity(exposition) if engine == sc.ENGINE_VLLM else _total(exposition, names.kv_capacity)
        used, evictable, available = (_total(exposition, n) for n in (names.kv_used, names.kv_evictable, names.kv_available))
        if used is not None and available is not None:
            pool = used + (evictable or 0) + available
            if pool > 0:
                kv_usage = used / pool
                capacity = capacity if capacity is not None else pool
        layout = None
        if slots is not None:
            running = running if running is not None else slots.running
            if kv_usage is None:
                kv_usage, capacity, layout = slots.kv_usage, slots.capacity, slots.layout

        preemptions = self._counter_delta(exposition, names.preemptions)
        generated = self._counter_delta(exposition, names.generation_tokens)
        if engine == sc.ENGINE_LLAMA_CPP:
            generated = self._llamacpp_generated(generated, slots)
        hit_rate = self._prefix_hit_rate(exposition, names)

        return EngineSnapshot(
            engine=engine,
            url=self.base_url,
            server_address=self.server_address,
            server_port=self.server_port,
            model=model or _reported_model(exposition),
            time_unix_nano=now_ns,
            interval_start_unix_nano=self._previous_time_ns,
            kv_cache_usage=kv_usage,
            kv_cache_capacity_tokens=None if capacity is None else round(capacity),
            kv_cache_layout=layout,
            kv_cache_used_tokens=_tokens(used),
            kv_cache_evictable_tokens=_tokens(evictable),
            kv_cache_available_tokens=_tokens(available),
            requests_running=None if running is None else round(running),
            requests_waiting=None if waiting is None else round(waiting),
            preemptions=preemptions,
            prefix_cache_hit_rate=hit_rate,
            generation_tokens_rate=generated / elapsed if generated is not None and elapsed else None,
            time_to_first_token=self._histogram_delta(exposition, names.ttft),
            inter_token_latency=self._histogram_delta(exposition, names.itl),
        )

    def _llamacpp_sources(self, exposition: Exposition | None) -> tuple[_Slots | None, Exposition]:
        """/metrics (needs --metrics) and /slots (off with --no-slots): either one is enough. When the
        two disagree on the requests in flight, one ended or began between the reads, and /slots is
        read again so that each request is counted either in flight or done."""
        errors = []
        if exposition is None:
            try:
                exposition = self._metrics()
            except ScrapeError as exc:
                errors.append(exc)
                exposition = Exposition()
        try:
            slots = _llamacpp_slots(self._get_json("/slots"), self.kv_layout)
            processing = _total(exposition, _PROMETHEUS_ENGINES[sc.ENGINE_LLAMA_CPP].running)
            if processing is not None and processing != slots.running:
                slots = _llamacpp_slots(self._get_json("/slots"), self.kv_layout)
        except ScrapeError as exc:
            errors.append(exc)
            slots = None
        if len(errors) == 2:
            raise ScrapeError(f"{errors[0]}; {errors[1]}")
        return slots, exposition

    def _llamacpp_model(self) -> str | None:
        """The model the server serves (`/v1/models`), read on the first scrape after it came up."""
        if self._served_model is None:
            try:
                payload = self._get_json("/v1/models")
            except ScrapeError:
                return None
            data = payload.get("data") if isinstance(payload, dict) else None
            ids = sorted({str(m["id"]) for m in data if isinstance(m, dict) and m.get("id")}) if isinstance(data, list) else []
            self._served_model = ",".join(ids) or None
        return self._served_model

    def _llamacpp_generated(self, finished: float | None, slots: _Slots | None) -> float | None:
        """Tokens generated during the interval. llama.cpp adds a request's tokens to
        tokens_predicted_total only when the request ends, so the counter alone reads 0 while requests
        generate and all of it at their end: add the change in tokens the slots have decoded in flight."""
        decoding, self._decoding = self._decoding, None if slots is None else slots.decoding
        if finished is None or slots is None or decoding is None:
            return None
        # A request that ended between the two reads can still be counted twice or not at all; what an
        # interval would take back below zero is taken from the next ones instead, so totals stay exact.
        generated = finished + slots.decoding - decoding - self._overcounted
        self._overcounted = max(0.0, -generated)
        return max(0.0, generated)

    def _prefix_hit_rate(self, exposition: Exposition, names: _Names) -> float | None:
        """From the hit and query counters when the engine has them (None for an interval without
        queries), else from the engine's own hit-rate gauge (vLLM v0)."""
        if not (_first_series(exposition, names.prefix_hits) and _first_series(exposition, names.prefix_queries)):
            return _mean(exposition, names.prefix_hit_rate_gauge)
        hits = self._counter_delta(exposition, names.prefix_hits)
        queries = self._counter_delta(exposition, names.prefix_queries)
        if hits is None or queries is None:
            return None
        if names.prefix_queries_exclude_hits:
            queries += hits
        return hits / queries if queries > 0 else None

    def _counter_delta(self, exposition: Exposition, names: tuple[str, ...]) -> float | None:
        series = _first_series(exposition, names)
        return self._delta(series[0].name, sum(s.value for s in series)) if series else None

    def _delta(self, key: str, value: float) -> float | None:
        previous = self._counters.get(key)
        self._counters[key] = value
        if previous is None:
            return None
        return value - previous if value >= previous else value  # lower than before: the server restarted

    def _histogram_delta(self, exposition: Exposition, names: tuple[str, ...]) -> HistogramDelta | None:
        for name in names:
            current = _summed_histogram(exposition.histograms(name))
            if current is None:
                continue
            previous = self._histograms.get(name)
            self._histograms[name] = current
            if previous is None:
                return None
            return _histogram_difference(previous, current)
        return None

    # --- Ollama ------------------------------------------------------------------------------------

    def _ollama(self, now_ns: int, payload: Any) -> EngineSnapshot:
        if payload is None:
            payload = self._get_json("/api/ps")
        entries = payload.get("models") if isinstance(payload, dict) else None
        if not isinstance(entries, list):
            raise ScrapeError(f"{self.base_url}/api/ps has no models list; is this an Ollama server?")
        models = tuple(
            LoadedModel(
                name=str(entry.get("name") or entry.get("model") or ""),
                size_bytes=_int_or_none(entry.get("size")),
                vram_bytes=_int_or_none(entry.get("size_vram")),
                context_length=_int_or_none(entry.get("context_length")),
            )
            for entry in entries
            if isinstance(entry, dict)
        )
        names = sorted({m.name for m in models if m.name})
        return EngineSnapshot(
            engine=sc.ENGINE_OLLAMA,
            url=self.base_url,
            server_address=self.server_address,
            server_port=self.server_port,
            model=self.model or (",".join(names) if names else None),
            time_unix_nano=now_ns,
            interval_start_unix_nano=self._previous_time_ns,
            loaded_models=models,
        )


def _base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    for suffix in ("/metrics", "/v1"):
        url = url.removesuffix(suffix)
    return url


def _first_series(exposition: Exposition, names: tuple[str, ...]) -> list[prometheus_text.Sample]:
    """The series of the first name present; NaN samples (a reading the engine does not have) left out."""
    for name in names:
        series = [sample for sample in exposition.series(name) if not math.isnan(sample.value)]
        if series:
            return series
    return []


def _total(exposition: Exposition, names: tuple[str, ...]) -> float | None:
    """Sum over series: data-parallel ranks each report their own requests."""
    series = _first_series(exposition, names)
    return sum(s.value for s in series) if series else None


def _tokens(value: float | None) -> int | None:
    return None if value is None else round(value)


def _mean(exposition: Exposition, names: tuple[str, ...]) -> float | None:
    """Mean over series: data-parallel ranks each report the usage of an equally sized pool."""
    series = _first_series(exposition, names)
    return sum(s.value for s in series) / len(series) if series else None


def _reported_model(exposition: Exposition) -> str | None:
    models = {
        sample.labels["model_name"]
        for series in exposition.samples.values()
        for sample in series
        if "model_name" in sample.labels
    }
    return ",".join(sorted(models)) if models else None


def _vllm_capacity(exposition: Exposition) -> int | None:
    """KV capacity in tokens = num_gpu_blocks x block_size, summed over data-parallel engines."""
    total = 0
    for sample in exposition.series("vllm:cache_config_info"):
        try:
            total += int(sample.labels["num_gpu_blocks"]) * int(sample.labels["block_size"])
        except (KeyError, ValueError):  # "None" before the engine has profiled its memory
            return None
    return total or None


def _llamacpp_slots(payload: Any, layout: str | None) -> _Slots:
    """Running requests, KV usage and capacity, and tokens in flight from llama.cpp `/slots`.

    A busy slot's `n_prompt_tokens` is what it holds in the KV cache (prompt plus generated tokens) and
    `next_token[0].n_decoded` what it generated so far. Every slot reports its context as `n_ctx`: the
    whole pool when the slots share it (unified), its own part otherwise (per_slot).
    """
    if not isinstance(payload, list) or not all(isinstance(slot, dict) for slot in payload):
        raise ScrapeError("llama.cpp /slots did not return a list of slots")
    busy = [slot for slot in payload if slot.get("is_processing") or slot.get("state", 0) != 0]
    decoding = sum(_int_or_none(_first(slot.get("next_token")).get("n_decoded")) or 0 for slot in busy)
    contexts = [_int_or_none(slot.get("n_ctx")) for slot in payload]
    held = [_int_or_none(slot.get("n_prompt_tokens")) for slot in busy]
    if not payload or not all(contexts) or None in held:
        return _Slots(len(busy), None, None, None, decoding)
    tokens = sum(held)  # type: ignore[arg-type]
    if layout is None:
        shared = len(payload) == _LLAMA_CPP_DEFAULT_SLOTS and len(set(contexts)) == 1 and tokens <= contexts[0]  # type: ignore[operator]
        layout = sc.KV_LAYOUT_UNIFIED if shared else sc.KV_LAYOUT_PER_SLOT
    capacity = contexts[0] if layout == sc.KV_LAYOUT_UNIFIED else sum(contexts)  # type: ignore[arg-type]
    return _Slots(len(busy), min(tokens / capacity, 1.0), capacity, layout, decoding)  # type: ignore[operator]


def _first(value: Any) -> dict:
    return value[0] if isinstance(value, list) and value and isinstance(value[0], dict) else {}


def _summed_histogram(series: list[prometheus_text.Histogram]) -> prometheus_text.Histogram | None:
    """One histogram for the server: series with the same buckets (data-parallel ranks) added up."""
    if not series:
        return None
    bounds = series[0].bounds
    same = [h for h in series if h.bounds == bounds]
    return prometheus_text.Histogram(
        labels={},
        bounds=bounds,
        cumulative_counts=tuple(map(sum, zip(*(h.cumulative_counts for h in same)))),
        count=sum(h.count for h in same),
        sum=sum(h.sum for h in same),
    )


def _histogram_difference(
    previous: prometheus_text.Histogram, current: prometheus_text.Histogram
) -> HistogramDelta | None:
    cumulative = current.cumulative_counts
    count, total = current.count, current.sum
    if previous.bounds == current.bounds and current.count >= previous.count:
        diff = tuple(c - p for c, p in zip(current.cumulative_counts, previous.cumulative_counts))
        if all(d >= 0 for d in diff):
            cumulative, count, total = diff, current.count - previous.count, current.sum - previous.sum
    # Otherwise the server restarted (or changed its buckets): the current values are the new interval.
    per_bucket = []
    below = 0.0
    for value in (*cumulative, count):
        per_bucket.append(round(value - below))
        below = value
    if any(n < 0 for n in per_bucket):
        return None  # buckets that shrink as they widen: not a histogram we can trust
    return HistogramDelta(bounds=current.bounds, bucket_counts=tuple(per_bucket), count=round(count), sum=total)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    return None
