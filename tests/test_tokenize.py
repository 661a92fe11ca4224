"""The engine tokenizer never holds up the caller: an engine that does not answer leaves the estimate.

The engine here is a socket that takes connections and never answers. A real llama.cpp server's
/tokenize is exercised in tests/test_llama_server.py.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from thinkmeter.instrumentation._tokenize import EngineTokenizer, reasoning_span


@pytest.fixture
def silent_engine() -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)  # connections complete in the backlog; nothing is ever read or answered
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_silent_engine_is_given_up_on_and_the_queue_stays_bounded(silent_engine: str) -> None:
    tokenizer = EngineTokenizer()
    answers: list[int | None] = []
    answered = threading.Event()

    def done(count: int | None) -> None:
        answers.append(count)
        answered.set()

    assert tokenizer.submit(silent_engine, "hmm", done)  # queued: the caller goes on at once
    accepted = sum(tokenizer.submit(silent_engine, f"text {i}", done) for i in range(400))
    assert accepted < 400  # the queue is bounded: what does not fit is not waited for
    assert tokenizer.drain(30)
    assert answers and set(answers) == {None}  # no count: the caller's estimate stands
    # The engine did not answer in time: it is not asked again for a while.
    assert not tokenizer.submit(silent_engine, "again", done)


def test_reasoning_span_adds_the_tags_the_model_generated() -> None:
    assert reasoning_span("Let me think") == "<think>Let me think</think>"
    assert reasoning_span("<think>\nLet me think\n</think>") == "<think>\nLet me think\n</think>"
