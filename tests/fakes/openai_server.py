"""A scripted, real-HTTP fake of the OpenAI Chat Completions and Embeddings APIs for tests.

In the spirit of ``llm``'s ``MockModel``: tests ``enqueue()`` scripted steps and
inspect ``history`` afterwards. The fake really listens on ``127.0.0.1`` and
speaks HTTP/1.1 (JSON and Server-Sent Events), so the official ``openai`` client
can be pointed at it unmodified via ``base_url``.

Example::

    with FakeOpenAIServer() as srv:
        srv.enqueue(Error(429, headers={"Retry-After": "1"}), Reply("hello"))
        client = openai.OpenAI(base_url=srv.base_url, api_key="test")
        ...
        assert srv.requests_count == 2

``POST /v1/embeddings`` answers :func:`fake_embedding` of each input (float lists, or base64
as the SDK asks by default) after ``embedding_latency`` seconds; it takes its scripted steps
from a queue of its own (``enqueue_embeddings``), so chat and embedding scripts do not mix.
``max_embeddings_in_flight`` is the most embedding requests it served at once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

__all__ = [
    "CutStream",
    "Drop",
    "Error",
    "FakeOpenAIServer",
    "Hang",
    "Malformed",
    "RecordedRequest",
    "Reply",
    "Step",
    "fake_embedding",
]

FAKE_MODEL_ID = "fake-model"
_REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key"})
_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("not_found_error", "model_not_found"),
    408: ("timeout_error", None),
    409: ("conflict_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "overloaded"),
}


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Reply:
    """A successful completion.

    Non-streaming requests get a ``chat.completion`` JSON object; requests with
    ``"stream": true`` get the same content as ``chat.completion.chunk`` SSE events
    (role chunk, several content chunks, ``finish_reason="stop"`` chunk, optional
    usage chunk, ``data: [DONE]``), ``chunk_delay`` seconds apart.
    ``delay`` simulates a slow model before the first byte.
    """

    content: str
    usage: bool = True
    delay: float = 0.0
    chunk_delay: float = 0.0
    finish_reason: str = "stop"  # "length": the reply was cut by max_tokens


@dataclass(frozen=True)
class Error:
    """An API error: ``status`` with an OpenAI error envelope and extra ``headers``.

    Simulates rate limits (429 + ``Retry-After``), auth failures, 5xx outages...
    """

    status: int
    message: str = "Simulated error from FakeOpenAIServer"
    headers: dict[str, str] | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Hang:
    """A server that stalls for ``seconds`` before answering (client timeouts).

    If the client is still connected afterwards it receives ``Reply("late")``.
    Closing the fake server interrupts the stall immediately.
    """

    seconds: float


@dataclass(frozen=True)
class Malformed:
    """A 200 response labelled ``application/json`` whose body is not JSON."""

    body: str = "this is {not json"


@dataclass(frozen=True)
class CutStream:
    """A stream that dies mid-way: ``after_chunks`` content chunks, then EOF.

    The connection is closed without the terminating chunk or ``data: [DONE]``.
    For a non-streaming request, headers and a truncated JSON body are sent
    (``Content-Length`` promises more bytes) before the connection is closed.
    """

    content: str
    after_chunks: int


@dataclass(frozen=True)
class Drop:
    """A connection closed by the server without sending any response."""


Step = Reply | Error | Hang | Malformed | CutStream | Drop


@dataclass(frozen=True)
class RecordedRequest:
    """One request received by the fake (credentials redacted)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any = None  # parsed JSON, raw text if not JSON, None if empty

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat ``messages`` of the request body (empty if absent)."""
        if isinstance(self.body, dict):
            return list(self.body.get("messages") or [])
        return []


# --------------------------------------------------------------------------- payloads


def _split_content(content: str) -> list[str]:
    """Split text into small token-like pieces (leading whitespace kept)."""
    return re.findall(r"\s*\S+|\s+", content)


def _count_prompt_tokens(body: Any) -> int:
    """Rough, deterministic prompt token count (whitespace-separated words)."""
    if not isinstance(body, dict):
        return 0
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content.split())
        elif isinstance(content, list):
            total += sum(
                len(str(part.get("text", "")).split()) for part in content if isinstance(part, dict)
            )
    return total


def _usage(body: Any, content: str) -> dict[str, int]:
    prompt = _count_prompt_tokens(body)
    completion = len(_split_content(content))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _model_of(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        return body["model"]
    return FAKE_MODEL_ID


def _completion_payload(completion_id: str, body: Any, reply: Reply) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": _model_of(body),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content, "refusal": None},
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": _usage(body, reply.content) if reply.usage else None,
    }


def _chunk_payload(
    completion_id: str, body: Any, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": _model_of(body),
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def _error_payload(status: int, message: str) -> dict[str, Any]:
    error_type, code = _ERROR_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _wants_stream(body: Any) -> bool:
    return isinstance(body, dict) and body.get("stream") is True


def _wants_stream_usage(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def fake_embedding(text: str, dim: int) -> np.ndarray:
    """The fake's vector of ``text``: ``dim`` float32 numbers in [-1, 1) from its SHA-256,
    the same on every machine (not normalised: the client must do that)."""
    out = bytearray()
    counter = 0
    while len(out) < dim:
        out += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    return (np.frombuffer(bytes(out[:dim]), dtype=np.uint8).astype(np.float32) - 128) / 128


def _embeddings_payload(body: Any, dim: int) -> dict[str, Any]:
    inputs = body.get("input") if isinstance(body, dict) else None
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    as_base64 = isinstance(body, dict) and body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = fake_embedding(str(text), dim)
        encoded: Any = (
            base64.b64encode(vector.astype("<f4").tobytes()).decode()
            if as_base64
            else vector.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(len(str(text).split()) for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": _model_of(body),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _redact(headers: dict[str, str]) -> dict[str, str]:
    """Lower-case header names and hide credential values (keep the scheme)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in _REDACTED_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            value = f"{scheme} <redacted>".strip()
        out[key] = value
    return out


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, fake: FakeOpenAIServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "FakeOpenAI/1.0"

    # -- lifecycle ---------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._untrack(self.connection)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    # -- routing -------------------------------------------------------------

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/") == "/v1/models":
            payload = {
                "object": "list",
                "data": [
                    {
                        "id": FAKE_MODEL_ID,
                        "object": "model",
                        "created": 0,
                        "owned_by": "citeqa-tests",
                    }
                ],
            }
            self._send_json(200, payload)
        else:
            self._send_json(404, _error_payload(404, f"Unknown path {self.path}"))

    def do_POST(self) -> None:
        body = self._read_body()
        self._record(body)
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/v1/embeddings":
            self._embeddings(body)
            return
        if path != "/v1/chat/completions":
            self._send_json(404, _error_payload(404, f"Unknown path {self.path}"))
            return
        fake = self.server.fake
        step = fake._next_step()
        completion_id = fake._next_completion_id()
        self._run_step(step, body, completion_id)

    def _embeddings(self, body: Any) -> None:
        fake = self.server.fake
        step = fake._next_embeddings_step()
        with fake._embedding_in_flight():
            if not self._pause(fake.embedding_latency):
                self._drop()
            elif isinstance(step, Reply):
                if self._pause(step.delay):
                    self._send_json(200, _embeddings_payload(body, fake.embedding_dim))
                else:
                    self._drop()
            else:
                self._run_step(step, body, fake._next_completion_id())

    def _run_step(self, step: Step, body: Any, completion_id: str) -> None:
        if isinstance(step, Reply):
            self._reply(step, body, completion_id)
        elif isinstance(step, Error):
            self._error(step)
        elif isinstance(step, Hang):
            self._hang(step, body, completion_id)
        elif isinstance(step, Malformed):
            self._malformed(step)
        elif isinstance(step, CutStream):
            self._cut_stream(step, body, completion_id)
        elif isinstance(step, Drop):
            self._drop()
        else:  # pragma: no cover - programming error in a test
            self._send_json(500, _error_payload(500, f"Unknown scripted step {step!r}"))

    # -- steps ---------------------------------------------------------------

    def _reply(self, step: Reply, body: Any, completion_id: str) -> None:
        if not self._pause(step.delay):
            self._drop()
            return
        if not _wants_stream(body):
            self._send_json(200, _completion_payload(completion_id, body, step))
            return
        self._start_stream()
        events = [_chunk_payload(completion_id, body, {"role": "assistant", "content": ""})]
        events += [
            _chunk_payload(completion_id, body, {"content": p})
            for p in _split_content(step.content)
        ]
        events.append(_chunk_payload(completion_id, body, {}, finish_reason=step.finish_reason))
        if _wants_stream_usage(body):
            usage_event = _chunk_payload(completion_id, body, {})
            usage_event["choices"] = []
            usage_event["usage"] = _usage(body, step.content) if step.usage else None
            events.append(usage_event)
        for index, event in enumerate(events):
            if index and not self._pause(step.chunk_delay):
                self._drop()
                return
            self._send_event(json.dumps(event))
        self._send_event("[DONE]")
        self._end_chunked()

    def _error(self, step: Error) -> None:
        if not self._pause(step.delay):
            self._drop()
            return
        self._send_json(step.status, _error_payload(step.status, step.message), step.headers)

    def _hang(self, step: Hang, body: Any, completion_id: str) -> None:
        if not self._pause(step.seconds):
            self._drop()
            return
        try:
            self._reply(Reply("late"), body, completion_id)
        except OSError:  # client gave up (timeout): nothing to answer
            self.close_connection = True

    def _malformed(self, step: Malformed) -> None:
        self._send_raw(200, step.body.encode(), "application/json")

    def _cut_stream(self, step: CutStream, body: Any, completion_id: str) -> None:
        if not _wants_stream(body):
            data = json.dumps(
                _completion_payload(completion_id, body, Reply(step.content))
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self._drop()
            return
        self._start_stream()
        self._send_event(
            json.dumps(_chunk_payload(completion_id, body, {"role": "assistant", "content": ""}))
        )
        for piece in _split_content(step.content)[: step.after_chunks]:
            self._send_event(json.dumps(_chunk_payload(completion_id, body, {"content": piece})))
        self._drop()

    def _drop(self) -> None:
        """Close the connection now; the client sees EOF without (more) data."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- low-level I/O -------------------------------------------------------

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw:
            return None
        text = raw.decode("utf-8", errors="replace")
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    def _record(self, body: Any) -> None:
        request = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=_redact(dict(self.headers.items())),
            body=body,
        )
        self.server.fake._record(request)

    def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; return False if the fake server is shutting down."""
        return self.server.fake._sleep(seconds)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _send_event(self, data: str) -> None:
        payload = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(payload):X}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


# --------------------------------------------------------------------------- public server


@dataclass
class _State:
    queue: deque[Step] = field(default_factory=deque)
    embeddings_queue: deque[Step] = field(default_factory=deque)
    embeddings_in_flight: int = 0
    max_embeddings_in_flight: int = 0
    history: list[RecordedRequest] = field(default_factory=list)
    connections: set[socket.socket] = field(default_factory=set)
    completions: int = 0


class FakeOpenAIServer:
    """Scripted OpenAI-compatible server on ``127.0.0.1`` (random free port).

    Each ``POST /v1/chat/completions`` consumes the next enqueued step; when the
    queue is empty it answers ``Reply(self.default_reply)``. ``GET /v1/models``
    lists ``fake-model``. Every request (including errors) lands in ``history``.
    Each ``POST /v1/embeddings`` waits ``embedding_latency`` seconds, then consumes the next
    step of its own queue (``enqueue_embeddings``); a ``Reply`` (the default) answers vectors
    of ``embedding_dim`` numbers. The server starts on construction; use it as a context
    manager or ``close()``.
    """

    def __init__(
        self, default_reply: str = "OK", embedding_dim: int = 8, embedding_latency: float = 0.0
    ) -> None:
        self.default_reply = default_reply
        self.embedding_dim = embedding_dim
        self.embedding_latency = embedding_latency
        self._lock = threading.Lock()
        self._state = _State()
        self._stopping = threading.Event()
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    # -- public API ----------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """Base URL for ``openai.OpenAI(base_url=...)``, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *steps: Step) -> None:
        """Append scripted steps, consumed one per chat completion request."""
        with self._lock:
            self._state.queue.extend(steps)

    def enqueue_embeddings(self, *steps: Step) -> None:
        """Append scripted steps, consumed one per embeddings request."""
        with self._lock:
            self._state.embeddings_queue.extend(steps)

    @property
    def max_embeddings_in_flight(self) -> int:
        """The most embeddings requests served at the same time so far."""
        with self._lock:
            return self._state.max_embeddings_in_flight

    @property
    def pending(self) -> int:
        """Number of scripted steps not consumed yet."""
        with self._lock:
            return len(self._state.queue)

    @property
    def history(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._state.history)

    @property
    def requests_count(self) -> int:
        """Number of requests received (any path, including failed ones)."""
        with self._lock:
            return len(self._state.history)

    def close(self) -> None:
        """Stop serving, abort stalled steps and open connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._state.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join(timeout=2)

    def __enter__(self) -> FakeOpenAIServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"FakeOpenAIServer(base_url={self.base_url!r}, "
            f"pending={self.pending}, requests={self.requests_count})"
        )

    # -- used by the handler -------------------------------------------------

    def _next_step(self) -> Step:
        with self._lock:
            if self._state.queue:
                return self._state.queue.popleft()
        return Reply(self.default_reply)

    def _next_embeddings_step(self) -> Step:
        with self._lock:
            if self._state.embeddings_queue:
                return self._state.embeddings_queue.popleft()
        return Reply("")

    @contextlib.contextmanager
    def _embedding_in_flight(self) -> Iterator[None]:
        with self._lock:
            state = self._state
            state.embeddings_in_flight += 1
            state.max_embeddings_in_flight = max(
                state.max_embeddings_in_flight, state.embeddings_in_flight
            )
        try:
            yield
        finally:
            with self._lock:
                self._state.embeddings_in_flight -= 1

    def _next_completion_id(self) -> str:
        with self._lock:
            self._state.completions += 1
            return f"chatcmpl-fake-{self._state.completions}"

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._state.history.append(request)

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._state.connections.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._state.connections.discard(conn)

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the server is closing; True if still running."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)
