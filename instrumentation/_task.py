"""Tasks: the unit a team pays for. `thinkmeter.task(task_id, task_class=...)` groups the LLM calls made
inside it (best-of-N, votes, verifier loops, retries, agent steps) and `record_outcome` grades it.

Inside a task every call carries `thinkmeter.task.id` (through the tags contextvar, so nested tags
still apply and asyncio tasks inherit it) and the task span is the calls' parent. The task span ends
with the totals of the calls made inside it in this process. Outcomes are spans of their own, so they
travel the same write path as every other span, from any process, before or after the task ran; the
store joins them to the task's calls by id at query time.

One id open twice in a process is one task: a worker thread (which does not inherit contextvars)
joins the open task with `with thinkmeter.task(task.id):`, and the task span ends when the last one
leaves. The innermost task owns a call; a nested task's span is a child of the enclosing task's.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from thinkmeter.instrumentation._tags import current_tag_attributes, push_tag_attributes, reset_tag_attributes, tag_text
from thinkmeter.schemas import semconv as sc

if TYPE_CHECKING:
    from thinkmeter.schemas.record import CallRecord

log = logging.getLogger("thinkmeter")

_tracer: trace.Tracer | None = None
_current: contextvars.ContextVar[TaskState | None] = contextvars.ContextVar("thinkmeter_task", default=None)
_open: dict[str, TaskState] = {}
_open_lock = threading.Lock()
_warned_uninstrumented = False


def use_tracer(tracer: trace.Tracer | None) -> None:
    """The tracer task and outcome spans are made with (instrument() sets it; None when uninstrumented)."""
    global _tracer
    _tracer = tracer


def current_task() -> TaskState | None:
    return _current.get()


class TaskState:
    """One open task in this process: its span and the running totals of its calls."""

    def __init__(self, task_id: str, task_class: str | None, parent: TaskState | None) -> None:
        self.id = task_id
        self.task_class = task_class
        self.users = 0
        self.lock = threading.Lock()
        self.calls = self.errors = 0
        self.input_tokens = self.output_tokens = self.reasoning_tokens = 0
        self.cost_usd = 0.0
        self.unpriced_calls = self.reasoning_unknown_calls = 0
        self.correct: bool | None = None
        self.score: float | None = None
        attributes: dict[str, Any] = {sc.TASK_ID: task_id}
        if task_class is not None:
            attributes[sc.TASK_CLASS] = task_class
        if parent is not None:
            attributes[sc.TASK_PARENT_ID] = parent.id
        name = f"{sc.TASK_SPAN_NAME} {task_class}" if task_class else sc.TASK_SPAN_NAME
        tracer = _tracer or trace.NoOpTracer()
        self.span = tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)

    def add(self, record: CallRecord) -> None:
        """Count a finished call (from Telemetry.finish, on the caller's thread)."""
        usage = record.usage
        with self.lock:
            self.calls += 1
            if record.error_type is not None:
                self.errors += 1
            if usage.input_tokens is not None:
                self.input_tokens += usage.input_tokens
            if usage.output_tokens is not None:
                self.output_tokens += usage.output_tokens
                if usage.reasoning_tokens is None:
                    self.reasoning_unknown_calls += 1
                if record.cost_usd is None:
                    self.unpriced_calls += 1
            if usage.reasoning_tokens is not None:
                self.reasoning_tokens += usage.reasoning_tokens
            if record.cost_usd is not None:
                self.cost_usd += record.cost_usd

    def end(self, error: BaseException | None) -> None:
        """End the span with the totals; a block left by an exception marks the task failed."""
        if error is not None:
            from opentelemetry.trace import Status, StatusCode

            self.span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)
            self.span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))
        with self.lock:
            totals: dict[str, Any] = {
                sc.TASK_CALLS: self.calls,
                sc.TASK_ERRORS: self.errors,
                sc.TASK_INPUT_TOKENS: self.input_tokens,
                sc.TASK_OUTPUT_TOKENS: self.output_tokens,
                sc.TASK_REASONING_TOKENS: self.reasoning_tokens,
                sc.TASK_COST_USD: self.cost_usd,
                sc.TASK_UNPRICED_CALLS: self.unpriced_calls,
                sc.TASK_REASONING_UNKNOWN_CALLS: self.reasoning_unknown_calls,
            }
            if self.correct is not None:
                totals[sc.TASK_OUTCOME_CORRECT] = self.correct
            if self.score is not None:
                totals[sc.TASK_OUTCOME_SCORE] = self.score
        self.span.set_attributes(totals)
        self.span.end()


class task:
    """Group the LLM calls made inside into one task, and grade it; a context manager (sync or async).

    >>> with thinkmeter.task("ticket-8812", task_class="math") as t:
    ...     answers = [client.responses.create(...) for _ in range(5)]
    ...     t.outcome(correct=True, score=0.92)

    Calls inside carry the task's id (tags in force still apply; `task_class` is set as the class tag).
    Outcomes may also come later, from any process: `thinkmeter.record_outcome("ticket-8812", correct=True)`.
    In a worker thread, `with thinkmeter.task(t.id):` joins the task that is open in this process.
    """

    def __init__(self, task_id: str, task_class: str | None = None) -> None:
        if not isinstance(task_id, str) or not task_id:
            raise TypeError(f"thinkmeter.task() needs a non-empty task id string, got {task_id!r}")
        self.id = tag_text("task_id", task_id)
        self.task_class = tag_text("task_class", task_class) if task_class is not None else None
        self._entered: list[tuple[TaskState, contextvars.Token, contextvars.Token, object]] = []

    # ---- context manager

    def __enter__(self) -> task:
        parent = _current.get()
        task_class = self.task_class
        if task_class is None:  # the class tag in force, if any
            task_class = current_tag_attributes().get(sc.TASK_CLASS)
        with _open_lock:
            state = _open.get(self.id)
            if state is None:
                state = _open[self.id] = TaskState(self.id, task_class, parent)
            state.users += 1
        tags = {sc.TASK_ID: self.id}
        if state.task_class is not None:
            tags[sc.TASK_CLASS] = state.task_class
        context_token = otel_context.attach(trace.set_span_in_context(state.span))
        self._entered.append((state, _current.set(state), push_tag_attributes(tags), context_token))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        state, task_token, tags_token, context_token = self._entered.pop()
        reset_tag_attributes(tags_token)
        _current.reset(task_token)
        otel_context.detach(context_token)
        with _open_lock:
            state.users -= 1
            last = state.users == 0
            if last and _open.get(self.id) is state:
                del _open[self.id]
        if last:
            try:
                state.end(exc)
            except Exception as error:  # never break the host app over a span
                log.debug("thinkmeter: could not end the span of task %s: %s", self.id, error)

    async def __aenter__(self) -> task:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    # ---- grading

    def outcome(self, correct: bool | None = None, score: float | None = None) -> None:
        """Record this task's outcome now (also on its span when the task is still open)."""
        correct, score = _checked_outcome(correct, score)
        with _open_lock:
            state = _open.get(self.id)
        if state is not None:
            with state.lock:
                if correct is not None:
                    state.correct = correct
                if score is not None:
                    state.score = score
        _emit_outcome(self.id, self.task_class or (state.task_class if state else None), correct, score)


def record_outcome(task_id: str, correct: bool | None = None, score: float | None = None) -> None:
    """Record a task's outcome from any process, before or after the task ran (a verifier, a human
    label, a unit-test run); the store joins it to the task's calls by id. `correct` and/or `score`;
    the latest recorded value of each counts."""
    if not isinstance(task_id, str) or not task_id:
        raise TypeError(f"thinkmeter.record_outcome() needs a non-empty task id string, got {task_id!r}")
    correct, score = _checked_outcome(correct, score)
    _emit_outcome(tag_text("task_id", task_id), None, correct, score)


def _checked_outcome(correct: bool | None, score: float | None) -> tuple[bool | None, float | None]:
    if correct is None and score is None:
        raise TypeError("an outcome needs correct=True/False and/or score=<float>")
    if correct is not None and not isinstance(correct, bool):
        raise TypeError(f"correct must be True or False, got {correct!r}")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise TypeError(f"score must be a finite number, got {score!r}")
        score = float(score)
    return correct, score


def _emit_outcome(task_id: str, task_class: str | None, correct: bool | None, score: float | None) -> None:
    global _warned_uninstrumented
    if _tracer is None:
        if not _warned_uninstrumented:
            _warned_uninstrumented = True
            log.warning("thinkmeter: an outcome of task %s was not recorded: call thinkmeter.instrument() first", task_id)
        return
    attributes: dict[str, Any] = {sc.TASK_ID: task_id}
    if task_class is not None:
        attributes[sc.TASK_CLASS] = task_class
    if correct is not None:
        attributes[sc.TASK_OUTCOME_CORRECT] = correct
    if score is not None:
        attributes[sc.TASK_OUTCOME_SCORE] = score
    try:
        now = time.time_ns()
        _tracer.start_span(sc.OUTCOME_SPAN_NAME, kind=SpanKind.INTERNAL, attributes=attributes, start_time=now).end(end_time=now)
    except Exception as error:  # never break the host app over a span
        log.debug("thinkmeter: could not record the outcome of task %s: %s", task_id, error)
