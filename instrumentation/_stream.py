"""Transparent stream proxies: one accumulator protocol serves sync and async streams.

The proxies are wrapt ObjectProxies, so `isinstance(stream, openai.Stream)` and every attribute of
the SDK's stream keep working. The call ends exactly once: on exhaustion, error, close, context-manager
exit, or garbage collection of a stream the caller abandoned.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import wrapt

from thinkmeter.instrumentation._safety import dont_throw, log_once
from thinkmeter.instrumentation._telemetry import Call
from thinkmeter.schemas.record import CallRecord


class StreamAccumulator(Protocol):
    call: Call

    def on_item(self, item: Any) -> bool:
        """Take in one streamed item; True hides it from the caller (a usage chunk we asked for)."""

    def on_end(self) -> None:
        """Move what the stream carried (usage, model, finish reasons) into call.record."""


def traced(stream: Any, accumulator: StreamAccumulator, is_async: bool) -> Any:
    """The proxy that feeds `accumulator` from an SDK's sync or async stream."""
    return TracedAsyncStream(stream, accumulator) if is_async else TracedStream(stream, accumulator)


def record_reply_identity(record: CallRecord, model: str | None, response_id: str | None, finish_reasons: dict[int, str]) -> None:
    """What a streamed reply said about itself: its model, id and per-choice finish reasons in choice order."""
    record.response_model = model
    record.response_id = response_id
    if finish_reasons:
        record.finish_reasons = tuple(finish_reasons[i] for i in sorted(finish_reasons))


def _shown(acc: StreamAccumulator, item: Any) -> bool:
    """Feed one item to the accumulator; whether the caller sees it. An unreadable item is shown."""
    try:
        return not acc.on_item(item)
    except Exception:
        _unreadable(acc)
        return True


def _unreadable(acc: StreamAccumulator) -> None:
    log_once(f"{type(acc).__name__}.on_item", "thinkmeter: cannot read a streamed item; figures of this stream may be incomplete")


def _traced_items(proxy: TracedStream, wrapped: Any, acc: StreamAccumulator) -> Iterator[Any]:
    """`for item in stream`: a generator resumes faster than a Python __next__ is called per item.
    It pulls from the wrapped stream's __next__, as next(stream) does, so the two can be mixed; a loop
    left early leaves the stream open, as the SDK's own iterator does. It holds `proxy`: in
    `for item in client.create(stream=True)` nothing else does, and the proxy's __del__ would end
    the call before its first item."""
    pull, on_item = wrapped.__next__, acc.on_item
    while True:
        try:
            item = pull()
        except StopIteration:
            finish_stream(acc, None)
            return
        except BaseException as error:
            finish_stream(acc, error)
            raise
        try:  # _shown, inlined: one Python call less per chunk
            hidden = on_item(item)
        except Exception:
            _unreadable(acc)
            hidden = False
        if not hidden:
            yield item


@dont_throw
def finish_stream(acc: StreamAccumulator, error: BaseException | None) -> None:
    """End the call of a stream once, with what its accumulator read; guarded."""
    if acc.call.ended:
        return
    try:
        acc.on_end()
    finally:
        acc.call.finish(error)


class TracedStream(wrapt.ObjectProxy):
    def __init__(self, wrapped: Any, accumulator: StreamAccumulator) -> None:
        super().__init__(wrapped)
        self._self_acc = accumulator

    def __iter__(self) -> Iterator[Any]:
        return _traced_items(self, self.__wrapped__, self._self_acc)

    def __next__(self) -> Any:
        acc = self._self_acc
        while True:
            try:
                item = self.__wrapped__.__next__()
            except StopIteration:
                finish_stream(acc, None)
                raise
            except BaseException as error:
                finish_stream(acc, error)
                raise
            if _shown(acc, item):
                return item

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


class TracedAsyncStream(wrapt.ObjectProxy):
    def __init__(self, wrapped: Any, accumulator: StreamAccumulator) -> None:
        super().__init__(wrapped)
        self._self_acc = accumulator

    def __aiter__(self) -> TracedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        acc = self._self_acc
        while True:
            try:
                item = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                finish_stream(acc, None)
                raise
            except BaseException as error:  # CancelledError included: the span still ends
                finish_stream(acc, error)
                raise
            if _shown(acc, item):
                return item

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
