"""The loopback HTTP/1.1 server: one asyncio loop in a background thread serves every connection.

Keep-alive connections, chunked streaming bodies, and sleeps to absolute deadlines counted from the
request's arrival, so a reply's timings stay exact however long rendering or the client takes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import secrets
import threading
import time
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote

from . import anthropic, gemini, ollama, openai_chat, openai_responses
from .routes import Ask, BadRequest, Plan, Reply, Request, Route, SimOptions, dumps
from .scenario import SCENARIO_HEADER, Scenario
from .traffic import derived_scenario

ROUTES: tuple[Route, ...] = (
    *openai_chat.ROUTES,
    *openai_responses.ROUTES,
    *anthropic.ROUTES,
    *gemini.ROUTES,
    *ollama.ROUTES,
)

_FLUSH_EVERY = 256  # chunks already due are coalesced into one write, up to this many
_MAX_HEADER_BYTES = 64 * 1024


class Simulator:
    """A running simulator; `start_simulator()` makes one. Use as a context manager or call close()."""

    def __init__(self, *, time_scale: float = 1.0, options: SimOptions | None = None) -> None:
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0 (0.01 plays a 30 s thinking phase in 0.3 s), got {time_scale}")
        self.time_scale = time_scale
        self.options = options or SimOptions()
        self.replies: list[Reply] = []  # ground truth of every served call, in arrival order
        self._by_id: dict[str, Reply] = {}
        self._counter = itertools.count(1)
        self._id_stem = secrets.token_hex(3)  # ids stay unique across simulator runs
        self._connections: set[asyncio.Task[None]] = set()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(started,), name="thinkmeter-simulator", daemon=True)
        self._thread.start()
        self.port = started.result(timeout=30)
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"  # OpenAI-style base URL

    def reply(self, reply_id: str) -> Reply | None:
        return self._by_id.get(reply_id)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def __enter__(self) -> Simulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run(self, started: concurrent.futures.Future[int]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024, limit=_MAX_HEADER_BYTES)
            )
        except BaseException as exc:
            started.set_exception(exc)
            self._loop.close()
            return
        started.set_result(self._server.sockets[0].getsockname()[1])
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    request = await self._read_request(reader)
                except BadRequest as exc:
                    await self._send_error(writer, None, exc.status, str(exc), keep_alive=False)
                    break
                if request is None or not await self._handle(request, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # the simulator is closing; ending normally keeps asyncio's stream callback quiet
        finally:
            self._connections.discard(task)
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # the client closed an idle keep-alive connection
        except asyncio.LimitOverrunError:
            raise BadRequest(f"request headers exceed {_MAX_HEADER_BYTES} bytes") from None
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise BadRequest(f"malformed request line {lines[0]!r}")
        method, target, _ = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise BadRequest("send the request body with a content-length; chunked request bodies are not supported")
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            raise BadRequest(f"invalid content-length {headers['content-length']!r}") from None
        body = await reader.readexactly(length) if length else b""
        path, _, query = target.partition("?")
        return Request(method, unquote(path), dict(parse_qsl(query)), headers, body, self.options)

    async def _handle(self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection must not be reused."""
        arrival, arrival_unix = time.monotonic(), time.time()
        keep_alive = request.headers.get("connection", "").lower() != "close"
        route = None
        try:
            route = self._route(request)
            ask = route.read(request)
            resumed = ask.resume_id is not None
            if ask.resume_id is not None:
                reply = self._resumable(route, ask.resume_id)
            else:
                reply = self._record(route, request, ask, arrival, arrival_unix)
                if reply.scenario.error_status is not None:
                    await self._fail(writer, route, reply, keep_alive=keep_alive)
                    return keep_alive
            plan = route.render(request, reply)
        except BadRequest as exc:
            await self._send_error(writer, route, exc.status, str(exc), keep_alive=keep_alive)
            return keep_alive
        return await self._play(reader, writer, plan, reply, resumed=resumed) and keep_alive

    def _resumable(self, route: Route, reply_id: str) -> Reply:
        reply = self._by_id.get(reply_id)
        if reply is None or reply.route != route.name or reply.outcome == "error":
            raise BadRequest(f"No response found with id '{reply_id}'.", 404)
        return reply

    async def _fail(self, writer: asyncio.StreamWriter, route: Route, reply: Reply, *, keep_alive: bool) -> None:
        """Answer with the scenario's HTTP error status once its prefill time has passed."""
        await _sleep_until(reply.arrival + reply.scenario.prefill_s * self.time_scale)
        reply.outcome = "error"
        reply.first_chunk_sent_s = time.monotonic() - reply.arrival
        status = reply.scenario.error_status
        assert status is not None
        message = f"Simulated error: the scenario for {reply.id} asked for HTTP {status}."
        await self._send_error(writer, route, status, message, keep_alive=keep_alive)

    def _route(self, request: Request) -> Route:
        allowed = False
        for route in ROUTES:
            match = route.path.fullmatch(request.path)
            if match is None:
                continue
            if route.method == request.method:
                request.params = match.groupdict()
                return route
            allowed = True
        if allowed:
            raise BadRequest(f"{request.method} is not allowed on {request.path}", 405)
        raise BadRequest(f"the simulator serves no route {request.method} {request.path}", 404)

    def _record(self, route: Route, request: Request, ask: Ask, arrival: float, arrival_unix: float) -> Reply:
        header = request.headers.get(SCENARIO_HEADER)
        if header:
            try:
                scenario = Scenario.from_header(header)
            except ValueError as exc:
                raise BadRequest(f"{SCENARIO_HEADER} must hold a Scenario as JSON: {exc}") from None
        else:
            scenario = derived_scenario(ask.model, ask.prompt)
        if scenario.model is None:
            scenario = scenario.model_copy(update={"model": ask.model or "unknown"})
        reply = Reply(
            id=f"{route.id_prefix}{self._id_stem}{next(self._counter):08x}",
            route=route.name,
            scenario=scenario.capped(ask.max_output_tokens, ask.thinking_budget),
            request_body=request.json() if request.body else {},
            ask=ask,
            time_scale=self.time_scale,
            arrival=arrival,
            arrival_unix=arrival_unix,
        )
        self._by_id[reply.id] = reply
        self.replies.append(reply)
        return reply

    async def _play(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, plan: Plan, reply: Reply, *, resumed: bool
    ) -> bool:
        """Send the plan against the reply's deadlines; False when the connection was dropped.

        A resumed stream only replays: it neither drops the connection nor touches the ground truth.
        While a stream waits for its next chunk the server watches the connection, so a client that
        closes it (a budget cut-off, an early break) is seen at once, as a provider sees it.
        """
        limit = None if resumed else reply.scenario.disconnect_after_visible
        request_id = reply.id
        closed: asyncio.Future[bytes] | None = None
        try:
            if not plan.stream:
                (emit,) = plan.emits
                await _sleep_until(reply.arrival + emit.at_s * self.time_scale)
                if limit is not None and emit.visible > limit:
                    reply.outcome = "disconnected"
                    writer.close()
                    return False
                if not resumed:
                    _mark_sent(reply, emit.visible, emit.visible)
                    reply.outcome = "completed"
                writer.write(_head(200, plan.content_type, request_id, length=len(emit.data)) + emit.data)
                await writer.drain()
                return True
            writer.write(_head(200, plan.content_type, request_id))
            pending: list[bytes] = []
            visible = 0
            for emit in plan.emits:
                delay = reply.arrival + emit.at_s * self.time_scale - time.monotonic()
                if delay > 0 or len(pending) >= _FLUSH_EVERY:
                    if pending:
                        writer.write(_chunk(pending))
                        pending.clear()
                        await writer.drain()
                    if delay > 0:
                        if closed is None:
                            closed = asyncio.ensure_future(reader.read(1))
                        done, _ = await asyncio.wait({closed}, timeout=delay)
                        if done:
                            raise ConnectionResetError("the client closed the stream")
                if writer.is_closing():
                    raise ConnectionResetError("the client closed the stream")
                if limit is not None and visible + emit.visible > limit:
                    reply.outcome = "disconnected"
                    if pending:
                        writer.write(_chunk(pending))
                    writer.close()  # flushes what was sent, then ends the body without its final empty chunk
                    return False
                pending.append(emit.data)
                visible += emit.visible
                if not resumed:
                    _mark_sent(reply, visible, emit.visible)
            if not resumed:
                reply.outcome = "completed"
            writer.write((_chunk(pending) if pending else b"") + b"0\r\n\r\n")  # empty chunk: end of body
            await writer.drain()
            return True
        except ConnectionError:
            if not resumed:
                reply.outcome = "client_closed"
                reply.client_closed_s = time.monotonic() - reply.arrival
            raise
        finally:
            if closed is not None:
                closed.cancel()  # and wait for it: the connection's next request is read next
                await asyncio.gather(closed, return_exceptions=True)

    async def _send_error(
        self, writer: asyncio.StreamWriter, route: Route | None, status: int, message: str, *, keep_alive: bool
    ) -> None:
        body: dict[str, Any] = route.error_body(status, message) if route else {"error": {"message": message}}
        data = dumps(body)
        writer.write(_head(status, "application/json", None, length=len(data), keep_alive=keep_alive) + data)
        await writer.drain()


def start_simulator(time_scale: float = 1.0, **options: Any) -> Simulator:
    """Start a simulator on 127.0.0.1 (ephemeral port) in a background thread.

    `time_scale` multiplies every simulated delay (0.01: a 30 s thinking phase takes 0.3 s); `options`
    are `SimOptions` fields, e.g. `reasoning_field="reasoning_content"` for DeepSeek-style chat.
    """
    return Simulator(time_scale=time_scale, options=SimOptions(**options))


def _mark_sent(reply: Reply, visible_total: int, visible_now: int) -> None:
    """Record on the ground truth when its chunks actually left (set before the write, so a client
    that has read them always finds them recorded)."""
    sent_s = time.monotonic() - reply.arrival
    if reply.first_chunk_sent_s is None:
        reply.first_chunk_sent_s = sent_s
    if visible_now and reply.first_visible_sent_s is None:
        reply.first_visible_sent_s = sent_s
    reply.visible_sent = visible_total


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _head(
    status: int, content_type: str, request_id: str | None, *, length: int | None = None, keep_alive: bool = True
) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:  # e.g. Anthropic's 529 Overloaded
        phrase = "Error"
    lines = [f"HTTP/1.1 {status} {phrase}", f"content-type: {content_type}"]
    if length is None:
        lines += ["transfer-encoding: chunked", "cache-control: no-cache"]
    else:
        lines.append(f"content-length: {length}")
    if request_id:
        lines.append(f"x-request-id: req_{request_id}")
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(parts: list[bytes]) -> bytes:
    data = b"".join(parts)
    return b"%x\r\n%s\r\n" % (len(data), data)
