"""Span attribute and metric names: the contract between instrumentation, collectors, storage,
dashboards and alerts. Which attribute fills which `llm_calls` column is in schemas/contract.py.

GenAI names follow the OTel GenAI semantic conventions (current development version:
`gen_ai.usage.cache_write.input_tokens` replaced `gen_ai.usage.cache_creation.input_tokens`), GPU
metrics the OTel hardware conventions. `thinkmeter.*` names cover what the conventions have no name for.
"""

from typing import Final

# Request
OPERATION: Final = "gen_ai.operation.name"
PROVIDER: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_STREAM: Final = "gen_ai.request.stream"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_REASONING_LEVEL: Final = "gen_ai.request.reasoning.level"
REQUEST_THINKING_BUDGET: Final = "thinkmeter.request.thinking_budget_tokens"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
ENGINE: Final = "thinkmeter.engine"
# thinkmeter.engine values: one spelling on spans, in llm_calls and on engine metrics.
ENGINE_VLLM: Final = "vllm"
ENGINE_SGLANG: Final = "sglang"
ENGINE_TGI: Final = "tgi"
ENGINE_LLAMA_CPP: Final = "llama.cpp"
ENGINE_OLLAMA: Final = "ollama"
ENGINE_TRANSFORMERS: Final = "transformers"
ENGINE_NAMES: Final = (ENGINE_VLLM, ENGINE_SGLANG, ENGINE_TGI, ENGINE_LLAMA_CPP, ENGINE_OLLAMA, ENGINE_TRANSFORMERS)

# Response
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_ID: Final = "gen_ai.response.id"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"

# Usage: input includes cached tokens; reasoning is a subset of output.
INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
CACHE_READ_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
REASONING_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
VISIBLE_OUTPUT_TOKENS: Final = "thinkmeter.usage.visible_output_tokens"
REASONING_SOURCE: Final = "thinkmeter.usage.reasoning.source"
OUTPUT_SOURCE: Final = "thinkmeter.usage.output.source"

# Timings, seconds from the start of the SDK call
TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
TIME_TO_FIRST_TOKEN: Final = "thinkmeter.latency.time_to_first_token"
TIME_TO_FIRST_VISIBLE_TOKEN: Final = "thinkmeter.latency.time_to_first_visible_token"
TIME_PER_OUTPUT_TOKEN: Final = "thinkmeter.latency.time_per_output_token"

# Cost, USD; absent when the price is unknown
COST_USD: Final = "thinkmeter.cost.usd"
REASONING_COST_USD: Final = "thinkmeter.cost.reasoning_usd"
COST_SOURCE: Final = "thinkmeter.cost.source"

# Server-side timings an engine reports in its reply, seconds (Groq `usage.*_time`, llama.cpp
# `timings.*_ms`): queueing, prompt processing (prefill), token generation (decode), all of it.
SERVER_QUEUE_TIME: Final = "thinkmeter.server.queue_time_s"
SERVER_PROMPT_TIME: Final = "thinkmeter.server.prompt_time_s"
SERVER_DECODE_TIME: Final = "thinkmeter.server.decode_time_s"
SERVER_TOTAL_TIME: Final = "thinkmeter.server.total_time_s"
# vLLM's per-request `metrics` (--enable-per-request-metrics): its own TTFT, mean inter-token latency
# and output rate for this request.
SERVER_TIME_TO_FIRST_TOKEN: Final = "thinkmeter.server.time_to_first_token_s"
SERVER_INTER_TOKEN_LATENCY: Final = "thinkmeter.server.inter_token_latency_s"
SERVER_OUTPUT_TOKENS_PER_S: Final = "thinkmeter.server.output_tokens_per_s"
# Ollama's own durations (reported in nanoseconds, stored in seconds); load is the model (re)load.
OLLAMA_LOAD_DURATION: Final = "thinkmeter.ollama.load_duration_s"
OLLAMA_PROMPT_EVAL_DURATION: Final = "thinkmeter.ollama.prompt_eval_duration_s"
OLLAMA_EVAL_DURATION: Final = "thinkmeter.ollama.eval_duration_s"
OLLAMA_TOTAL_DURATION: Final = "thinkmeter.ollama.total_duration_s"
# KV cache an in-process generate() call held at its end: bytes of its key/value tensors, and token
# positions (sequences x cached length) they cover.
KV_CACHE_BYTES: Final = "thinkmeter.kv_cache.bytes"
KV_CACHE_TOKENS: Final = "thinkmeter.kv_cache.tokens"

# Attribution from thinkmeter.tags(...)
TENANT: Final = "thinkmeter.tenant"
USER: Final = "thinkmeter.user"
SESSION: Final = "thinkmeter.session"
FEATURE: Final = "thinkmeter.feature"
TASK_CLASS: Final = "thinkmeter.task_class"
TAG_ATTRIBUTES: Final = {
    "tenant": TENANT,
    "user": USER,
    "session": SESSION,
    "feature": FEATURE,
    "task_class": TASK_CLASS,
}

ERROR_TYPE: Final = "error.type"

# Budgets (thinkmeter/budgets): the policy line that acted or would have acted ("task_classes.lookup.
# max_reasoning_tokens", "tenants.acme.daily_usd"), its cap and the figure the call reached; what was
# injected into the request ("max_completion_tokens=5120"); a stream closed mid-way (cut) or a call
# refused before sending (rejected), or in observe mode what would have happened; the running cost
# when the stream was (or would have been) cut.
BUDGET_LINE: Final = "thinkmeter.budget.line"
BUDGET_CAP: Final = "thinkmeter.budget.cap"
BUDGET_REACHED: Final = "thinkmeter.budget.reached"
BUDGET_INJECTED: Final = "thinkmeter.budget.injected"
BUDGET_CUT: Final = "thinkmeter.budget.cut"
BUDGET_WOULD_CUT: Final = "thinkmeter.budget.would_cut"
BUDGET_REJECTED: Final = "thinkmeter.budget.rejected"
BUDGET_WOULD_REJECT: Final = "thinkmeter.budget.would_reject"
BUDGET_CUT_COST_USD: Final = "thinkmeter.budget.cut_cost_usd"

# True when the call ended on its output cap with no visible output: billed reasoning, no answer.
ANSWER_LOST: Final = "thinkmeter.answer_lost"

# Tasks (`thinkmeter.task(...)`): every call made inside carries the task's id. The task span (name
# TASK_SPAN_NAME, the parent of its calls) carries the totals of the calls made inside it in this
# process; an outcome span (OUTCOME_SPAN_NAME) carries one recorded outcome, from any process.
TASK_ID: Final = "thinkmeter.task.id"
TASK_PARENT_ID: Final = "thinkmeter.task.parent_id"  # the enclosing task of a nested one
TASK_CALLS: Final = "thinkmeter.task.calls"
TASK_ERRORS: Final = "thinkmeter.task.errors"
TASK_INPUT_TOKENS: Final = "thinkmeter.task.usage.input_tokens"
TASK_OUTPUT_TOKENS: Final = "thinkmeter.task.usage.output_tokens"
TASK_REASONING_TOKENS: Final = "thinkmeter.task.usage.reasoning_tokens"
TASK_COST_USD: Final = "thinkmeter.task.cost.usd"
# Calls whose figure was unknown (usage without a price; output without a reasoning count): the sums
# above leave them out, so a total is never mistaken for a complete one.
TASK_UNPRICED_CALLS: Final = "thinkmeter.task.unpriced_calls"
TASK_REASONING_UNKNOWN_CALLS: Final = "thinkmeter.task.reasoning_unknown_calls"
TASK_OUTCOME_CORRECT: Final = "thinkmeter.task.outcome.correct"
TASK_OUTCOME_SCORE: Final = "thinkmeter.task.outcome.score"
TASK_SPAN_NAME: Final = "task"
OUTCOME_SPAN_NAME: Final = "task.outcome"

# Engine and GPU state at request start (calls to a self-hosted engine that a collector watches)
ENGINE_KV_CACHE_USAGE: Final = "thinkmeter.engine.kv_cache.usage"
ENGINE_REQUESTS_RUNNING: Final = "thinkmeter.engine.requests.running"
ENGINE_REQUESTS_WAITING: Final = "thinkmeter.engine.requests.waiting"
# How kv_cache.usage counts a pool that serves several slots (llama.cpp): "unified" = the slots share
# one pool (their tokens over the pool), "per_slot" = each slot has its own part (tokens over the parts).
ENGINE_KV_CACHE_LAYOUT: Final = "thinkmeter.engine.kv_cache.layout"
KV_LAYOUT_UNIFIED: Final = "unified"
KV_LAYOUT_PER_SLOT: Final = "per_slot"
GPU_UTILIZATION: Final = "thinkmeter.gpu.utilization"
GPU_MEMORY_USED_BYTES: Final = "thinkmeter.gpu.memory.used_bytes"

# Opt-in content capture
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"

# Metrics (released GenAI semconv names) and their advisory bucket boundaries
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
TOKEN_TYPE: Final = "gen_ai.token.type"
TOKEN_BUCKETS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

# Engine metrics (collectors/metrics.py); the first three share their names with the span attributes above.
METRIC_ENGINE_UP: Final = "thinkmeter.engine.up"
METRIC_ENGINE_KV_CACHE_USAGE: Final = ENGINE_KV_CACHE_USAGE
METRIC_ENGINE_KV_CACHE_CAPACITY: Final = "thinkmeter.engine.kv_cache.capacity"
# SGLang's KV pool in tokens: held by running requests, cached but reclaimable (radix cache), free.
METRIC_ENGINE_KV_CACHE_USED_TOKENS: Final = "thinkmeter.engine.kv_cache.used_tokens"
METRIC_ENGINE_KV_CACHE_EVICTABLE_TOKENS: Final = "thinkmeter.engine.kv_cache.evictable_tokens"
METRIC_ENGINE_KV_CACHE_AVAILABLE_TOKENS: Final = "thinkmeter.engine.kv_cache.available_tokens"
METRIC_ENGINE_REQUESTS_RUNNING: Final = ENGINE_REQUESTS_RUNNING
METRIC_ENGINE_REQUESTS_WAITING: Final = ENGINE_REQUESTS_WAITING
METRIC_ENGINE_PREEMPTIONS: Final = "thinkmeter.engine.preemptions"
METRIC_ENGINE_PREFIX_CACHE_HIT_RATE: Final = "thinkmeter.engine.prefix_cache.hit_rate"
METRIC_ENGINE_GENERATION_TOKENS_RATE: Final = "thinkmeter.engine.generation_tokens.rate"
METRIC_ENGINE_TIME_TO_FIRST_TOKEN: Final = "thinkmeter.engine.time_to_first_token"
METRIC_ENGINE_INTER_TOKEN_LATENCY: Final = "thinkmeter.engine.inter_token_latency"
METRIC_ENGINE_MODELS_LOADED: Final = "thinkmeter.engine.models.loaded"
METRIC_ENGINE_MODEL_SIZE: Final = "thinkmeter.engine.model.size"
METRIC_ENGINE_MODEL_SIZE_VRAM: Final = "thinkmeter.engine.model.size_vram"
METRIC_ENGINE_MODEL_CONTEXT_LENGTH: Final = "thinkmeter.engine.model.context_length"

# GPU metrics (OTel hardware conventions, then thinkmeter.* for readings they have no name for)
METRIC_HW_GPU_UTILIZATION: Final = "hw.gpu.utilization"
METRIC_HW_GPU_MEMORY_USAGE: Final = "hw.gpu.memory.usage"
METRIC_HW_GPU_MEMORY_LIMIT: Final = "hw.gpu.memory.limit"
METRIC_HW_GPU_MEMORY_UTILIZATION: Final = "hw.gpu.memory.utilization"
METRIC_HW_POWER: Final = "hw.power"
METRIC_HW_ENERGY: Final = "hw.energy"
METRIC_GPU_MEMORY_COPY_UTILIZATION: Final = "thinkmeter.gpu.memory_copy.utilization"
METRIC_GPU_TEMPERATURE: Final = "thinkmeter.gpu.temperature"
METRIC_GPU_SM_CLOCK: Final = "thinkmeter.gpu.clock.sm"
METRIC_GPU_PROCESS_MEMORY_USAGE: Final = "thinkmeter.gpu.process.memory.usage"

# Metric point attributes
HW_ID: Final = "hw.id"
HW_TYPE: Final = "hw.type"
HW_NAME: Final = "hw.name"
HW_MODEL: Final = "hw.model"
HW_VENDOR: Final = "hw.vendor"
HW_PARENT: Final = "hw.parent"
HW_DRIVER_VERSION: Final = "hw.driver_version"
HW_GPU_TASK: Final = "hw.gpu.task"
PROCESS_PID: Final = "process.pid"
