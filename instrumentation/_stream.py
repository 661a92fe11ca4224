"""Transparent stream proxies: one accumulator protocol serves sync and async streams.

The proxies are wrapt ObjectProxies, so `isinstance(stream, openai.Stream)` and every attribute of
the SDK's stream keep working. The call ends exactly once: on exhaustion, error, close, context-manager
exit, or garbage collection of a stream the caller abandoned.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import wrapt

from thinkmeter.budgets import BudgetExceeded
from thinkmeter.instrumentation._budget import StreamMeter, watchdog
from thinkmeter.instrumentation._safety import dont_throw, log_once
from thinkmeter.instrumentation._telemetry import Call
from thinkmeter.schemas.record import CallRecord


# What on_item says about an item: the caller sees it (False), never sees it (True: a usage chunk we
# asked for), or sees it once the next item has been read (HOLD: the last chunk, which gets what
# the server put on the hidden usage chunk instead of on it, as it would without us).
HOLD = 2


class StreamAccumulator(Protocol):
    call: Call

    def on_item(self, item: Any) -> bool | int:
        """Take in one streamed item; True hides it from the caller, HOLD delays it by one item."""

    def on_end(self) -> None:
        """Move what the stream carried (usage, model, finish reasons) into call.record."""


def traced(stream: Any, accumulator: StreamAccumulator, is_async: bool) -> Any:
    """The proxy that feeds `accumulator` from an SDK's sync or async stream."""
    if accumulator.call.meter is not None:
        _watch(accumulator.call.meter, stream)
    return TracedAsyncStream(stream, accumulator) if is_async else TracedStream(stream, accumulator)


@dont_throw
def _watch(meter: StreamMeter, stream: Any) -> None:
    watchdog.watch(meter, stream)


@dont_throw
def _cut_due(meter: StreamMeter) -> bool:
    """After a chunk of a stream under a budget: whether to close it now; guarded."""
    return meter.should_cut()


def _cut_pending(acc: StreamAccumulator) -> bool:
    """After a failed read: whether the watchdog shut the connection for a cut (the failure is ours)."""
    meter = acc.call.meter
    return meter is not None and meter.breach is not None and meter.budgets.enforce and not meter.cut


def _cut(acc: StreamAccumulator, wrapped: Any) -> BudgetExceeded:
    """Close a stream past its budget (the connection goes, so the provider stops), end its span once,
    and return the exception the caller gets in place of the chunk that passed the cap."""
    error = acc.call.meter.exception()  # type: ignore[union-attr]
    try:
        close = getattr(wrapped, "close", None)
        if close is not None:
            close()
    except Exception:
        log_once("budgets.close", "thinkmeter: closing a stream past its budget failed")
    finish_stream(acc, None)
    return error


async def _acut(acc: StreamAccumulator, wrapped: Any) -> BudgetExceeded:
    error = acc.call.meter.exception()  # type: ignore[union-attr]
    try:
        close = getattr(wrapped, "aclose", None) or getattr(wrapped, "close", None)
        if close is not None:
            await close()
    except Exception:
        log_once("budgets.close", "thinkmeter: closing a stream past its budget failed")
    finish_stream(acc, None)
    return error


def record_reply_identity(record: CallRecord, model: str | None, response_id: str | None, finish_reasons: dict[int, str]) -> None:
    """What a streamed reply said about itself: its model, id and per-choice finish reasons in choice order."""
    record.response_model = model
    record.response_id = response_id
    if finish_reasons:
        record.finish_reasons = tuple(finish_reasons[i] for i in sorted(finish_reasons))


def _verdict(acc: StreamAccumulator, item: Any) -> bool | int:
    """Feed one item to the accumulator; what the caller gets of it. An unreadable item is shown."""
    try:
        return acc.on_item(item)
    except Exception:
        log_once(f"{type(acc).__name__}.on_item", "thinkmeter: cannot read a streamed item; figures of this stream may be incomplete")
        return False


def _traced_items(proxy: TracedStream, wrapped: Any, acc: StreamAccumulator) -> Iterator[Any]:
    """`for item in stream`: a generator resumes faster than a Python __next__ is called per item.
    It pulls from the wrapped stream's __next__, as next(stream) does, so the two can be mixed; a loop
    left early leaves the stream open, as the SDK's own iterator does. It holds `proxy`: in
    `for item in client.create(stream=True)` nothing else does, and the proxy's __del__ would end
    the call before its first item."""
    pull = wrapped.__next__
    pending = proxy._pending()  # read by an earlier next(stream)
    if pending is not None:
        yield pending
    holding = proxy._self_held is not None  # kept on the proxy too, for a next(stream) in between
    meter = acc.call.meter
    while True:
        try:
            item = pull()
        except StopIteration:
            finish_stream(acc, None)
            if holding and proxy._self_held is not None:
                yield proxy._release()
            return
        except BaseException as error:
            if _cut_pending(acc):
                raise _cut(acc, wrapped) from error
            finish_stream(acc, error)
            if holding and proxy._self_held is not None:
                yield proxy._release()
            raise
        verdict = _verdict(acc, item)
        if meter is not None and _cut_due(meter):
            raise _cut(acc, wrapped)
        if holding:
            holding = False
            if proxy._self_held is not None:
                yield proxy._release()
        if not verdict:
            yield item
        elif verdict == HOLD:
            proxy._self_held = item
            holding = True


@dont_throw
def finish_stream(acc: StreamAccumulator, error: BaseException | None) -> None:
    """End the call of a stream once, with what its accumulator read; guarded."""
    if acc.call.ended:
        return
    try:
        acc.on_end()
    finally:
        acc.call.finish(error)


class _Holding:
    """An item an accumulator held back (HOLD) until the next one was read, an item read but not yet
    returned, and an error that ended the stream meanwhile: delivered in that order, as they came."""

    _self_held: Any = None
    _self_ready: Any = None
    _self_error: BaseException | None = None

    def _release(self) -> Any:
        item, self._self_held = self._self_held, None
        return item

    def _pending(self) -> Any:
        """The item read earlier that is due now, or None; raises the error that came after it."""
        item, self._self_ready = self._self_ready, None
        if item is None:
            error, self._self_error = self._self_error, None
            if error is not None:
                raise error
        return item

    def _after_pull(self, item: Any, verdict: bool | int) -> Any:
        """What this pull returns (None: nothing yet, pull again) once `item` was fed in."""
        if self._self_held is not None:
            held = self._release()
            if verdict == HOLD:
                self._self_held = item
            elif not verdict:
                self._self_ready = item
            return held
        if not verdict:
            return item
        if verdict == HOLD:
            self._self_held = item
        return None

    def _after_end(self, error: BaseException | None) -> Any:
        """What this pull returns when the stream ended (None: nothing, re-raise the end)."""
        if self._self_held is None:
            return None
        self._self_error = error
        return self._release()


class TracedStream(_Holding, wrapt.ObjectProxy):
    def __init__(self, wrapped: Any, accumulator: StreamAccumulator) -> None:
        super().__init__(wrapped)
        self._self_acc = accumulator

    def __iter__(self) -> Iterator[Any]:
        return _traced_items(self, self.__wrapped__, self._self_acc)

    def __next__(self) -> Any:
        pending = self._pending()
        if pending is not None:
            return pending
        acc = self._self_acc
        while True:
            try:
                item = self.__wrapped__.__next__()
            except StopIteration:
                finish_stream(acc, None)
                held = self._after_end(None)
                if held is not None:
                    return held
                raise
            except BaseException as error:
                if _cut_pending(acc):
                    raise _cut(acc, self.__wrapped__) from error
                finish_stream(acc, error)
                held = self._after_end(error)
                if held is not None:
                    return held
                raise
            verdict = _verdict(acc, item)
            meter = acc.call.meter
            if meter is not None and _cut_due(meter):
                raise _cut(acc, self.__wrapped__)
            out = self._after_pull(item, verdict)
            if out is not None:
                return out

    def __enter__(self) -> TracedStream:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            finish_stream(self._self_acc, None)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            finish_stream(self._self_acc, None)

    def __del__(self) -> None:
        finish_stream(self._self_acc, None)


class TracedAsyncStream(_Holding, wrapt.ObjectProxy):
    def __init__(self, wrapped: Any, accumulator: StreamAccumulator) -> None:
        super().__init__(wrapped)
        self._self_acc = accumulator

    def __aiter__(self) -> TracedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        pending = self._pending()
        if pending is not None:
            return pending
        acc = self._self_acc
        while True:
            try:
                item = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                finish_stream(acc, None)
                held = self._after_end(None)
                if held is not None:
                    return held
                raise
            except BaseException as error:  # CancelledError included: the span still ends
                if _cut_pending(acc):
                    raise await _acut(acc, self.__wrapped__) from error
                finish_stream(acc, error)
                held = self._after_end(error)
                if held is not None:
                    return held
                raise
            verdict = _verdict(acc, item)
            meter = acc.call.meter
            if meter is not None and _cut_due(meter):
                raise await _acut(acc, self.__wrapped__)
            out = self._after_pull(item, verdict)
            if out is not None:
                return out

    async def __aenter__(self) -> TracedAsyncStream:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            finish_stream(self._self_acc, None)

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            finish_stream(self._self_acc, None)

    async def aclose(self) -> Any:
        """Async generators (google-genai's streams) close with aclose()."""
        try:
            return await self.__wrapped__.aclose()
        finally:
            finish_stream(self._self_acc, None)

    def __del__(self) -> None:
        finish_stream(self._self_acc, None)
