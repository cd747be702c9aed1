"""Server-sent events: the engine's answer events (:meth:`Engine.run` with ``stream=True``) sent
as they come, in the encoding of a route (:class:`Encoding`: named events in the native shapes
for ``/v1/ask``, ``chat.completion.chunk`` objects for chat completions).

Frames are ``data: <json>\\n\\n`` (with ``event: <name>`` when named); a comment ``: keep-alive``
every ``sse_keepalive_s`` seconds while nothing else was sent, so proxies and clients do not time
out during retrieval or a slow first token. The blocking engine iterator runs in a worker
thread and hands each frame to the event loop, which sends it. A client that disconnects
cancels the stream: the worker's next hand-over fails, the iterator is closed, and closing it
closes the LLM stream (no more tokens are read or paid for). An error after the response
started (an LLM failing mid-stream, never retried once tokens were sent) arrives as the route's
error frame, then ``data: [DONE]``; errors before it starts are HTTP errors
(:mod:`service.api.errors`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Generator
from concurrent.futures import CancelledError
from contextlib import closing
from typing import Any, Protocol

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import ObjectSendStream
from fastapi import Response
from starlette.types import Receive, Scope, Send

from citeqa.errors import CiteqaError
from service.answering.answer import Answer
from service.answering.engine import PROGRESS, Delta, Event, Finished, Started

log = logging.getLogger("citeqa.sse")

KEEPALIVE = ": keep-alive\n\n"
DONE = "data: [DONE]\n\n"
NO_FRAME = ""  # nothing to send; the hand-over still tells the worker whether the client left

Observer = Callable[[Answer], None]


def sse(data: Any, event: str | None = None) -> str:
    """One SSE frame; JSON has no raw newlines, so one ``data:`` line suffices."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


class Encoding(Protocol):
    """How a route writes the engine's events as frames."""

    def started(self, event: Started) -> str: ...

    def delta(self, event: Delta) -> str: ...

    def finished(self, answer: Answer) -> str: ...

    def error(self, status: int, kind: str, message: str) -> str: ...


def frames(
    events: Callable[[], Generator[Event, None, None]], encoding: Encoding, observe: Observer
) -> Generator[str, None, None]:
    """The events as frames, then ``[DONE]``; ``observe`` sees the finished answer."""
    try:
        with closing(events()) as stream:  # closed early on a disconnect
            for event in stream:
                if isinstance(event, Started):
                    yield encoding.started(event)
                elif event == PROGRESS:
                    yield NO_FRAME
                elif isinstance(event, Delta):
                    yield encoding.delta(event)
                elif isinstance(event, Finished):
                    observe(event.answer)
                    yield encoding.finished(event.answer)
    except CiteqaError as exc:
        yield encoding.error(exc.status, type(exc).__name__, exc.message)
    except Exception:
        log.exception("answer stream failed")
        yield encoding.error(500, "InternalError", "internal error; see the server log")
    yield DONE


class EventStream(Response):
    """The response of a streamed answer: the engine's ``events`` (a call that starts them, in
    the worker thread), written by ``encoding``, sent as server-sent events."""

    media_type = "text/event-stream"

    def __init__(
        self,
        events: Callable[[], Generator[Event, None, None]],
        encoding: Encoding,
        observe: Observer,
        keepalive_s: float,
    ) -> None:
        self.frames = lambda: frames(events, encoding, observe)
        self.keepalive_s = keepalive_s
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        await send(start)
        async with anyio.create_task_group() as group:
            group.start_soon(self._cancel_on_disconnect, receive, group.cancel_scope)
            await self._send_frames(send)
            group.cancel_scope.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _cancel_on_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        log.info("client disconnected; stopping the stream")
        scope.cancel()

    async def _send_frames(self, send: Send) -> None:
        sender, receiver = anyio.create_memory_object_stream[str](0)
        async with anyio.create_task_group() as group:
            group.start_soon(self._produce, sender)
            async with receiver:
                sent_at = anyio.current_time()
                while True:
                    frame = KEEPALIVE
                    with anyio.move_on_after(sent_at + self.keepalive_s - anyio.current_time()):
                        try:
                            frame = await receiver.receive()
                        except anyio.EndOfStream:
                            return
                    if frame == NO_FRAME:
                        continue
                    body = frame.encode()
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    sent_at = anyio.current_time()

    async def _produce(self, sender: ObjectSendStream[str]) -> None:
        async with sender:
            await anyio.to_thread.run_sync(self._pump, sender)

    def _pump(self, sender: ObjectSendStream[str]) -> None:
        """In a worker thread: iterate the frames, hand each to the loop; stop when the
        receiving side is gone, closing the iterator (and the generation behind it)."""
        with closing(self.frames()) as sent:
            try:
                for frame in sent:
                    anyio.from_thread.run(sender.send, frame)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, CancelledError):
                log.info("stream abandoned by the client; generation stopped")
