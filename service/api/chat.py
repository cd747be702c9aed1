"""The OpenAI-compatible chat API, the streamed ``/v1/ask`` and the web page.

Routes (``chat_router``, included by :func:`service.api.app.create_app`):

* ``POST /v1/chat/completions``: the OpenAI Chat Completions shape, ``stream`` false or true;
  the model is a collection's name (``citeqa`` by default; any id listed by ``GET /v1/models``,
  one per collection; others get 404 ``model_not_found``). A bearer token is accepted; the
  security middleware checks it when API keys are configured. Stateless: the conversation comes
  in ``messages`` (at most :data:`~service.answering.chat.MAX_MESSAGES`, each at most
  :data:`~service.answering.chat.MAX_MESSAGE_CHARS` characters, the last one from the user).
  Sampling
  options (``temperature``...) are accepted and ignored. ``top_k`` is an extension.
* ``GET /v1/models``, ``GET /v1/models/{id}``.
* ``GET``/``HEAD`` ``/`` and ``/static/{app.js,style.css}``: the web page (``service/api/static``);
  the page's text box takes ``max_question_chars`` characters, rendered in from the settings.

Extra fields, which clients that do not know them ignore (the openai SDK keeps them in
``model_extra``). Non-stream: ``citations`` (the objects of ``/v1/ask``), ``sources``,
``refused``, ``standalone_question`` (the rewritten follow-up that retrieval used), ``dropped``,
``timings_ms``. Stream: the first chunk (role ``assistant``) carries ``sources`` (retrieved,
numbered like the citations) and ``standalone_question``; content deltas follow, a delta that
adds citations carrying them as ``citations``; the last chunk (``finish_reason`` ``stop``)
carries all ``citations``, ``refused``, ``dropped`` and ``answer``, then ``data: [DONE]``.

Streaming and validation: only validated text is streamed. The generator's draft is buffered to
the end of each sentence, the sentence is checked against the sources it cites
(:class:`service.answering.citations.Validator`) and sent only if it holds, so the concatenated
content
deltas equal the last chunk's ``answer`` exactly, whatever client shows them. A refusal is
streamed as content too, so a client reading only the content sees it.

Server-sent events (:class:`EventStream`): frames ``data: <json>\\n\\n``; a comment
``: keep-alive`` every ``sse_keepalive_s`` seconds (default :data:`KEEPALIVE_S`) while nothing
else was sent, so proxies and clients do not time out during retrieval or a slow first token;
the blocking chat iterator runs in a worker thread and hands each frame to the event loop, which
sends it. A client that disconnects cancels the stream: the worker's next hand-over fails, the
iterator is closed, and closing it closes the LLM stream (no more tokens are read or paid for).
An error after the response started (an LLM failing mid-stream, never retried once tokens were
sent) arrives as ``data: {"error": {...}}`` in the OpenAI envelope, then ``data: [DONE]``.
Errors before the stream starts (validation, unknown model, store down) are HTTP errors in the
OpenAI envelope, mapped by the app's one exception handler (:func:`openai_error_response`).

``POST /v1/ask`` with ``"stream": true`` uses the same machinery with named events in the
native shapes: ``event: sources`` (question, standalone_question, sources), ``event: delta``
(``{"text"}``, with ``citations`` when the text added some), ``event: answer`` (the validated
``/v1/ask`` JSON), ``event: error`` (problem+json), then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from contextlib import closing
from dataclasses import asdict
from typing import Any, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import ObjectSendStream
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.types import Receive, Scope, Send

from citeqa.errors import CiteqaError
from citeqa.resources import STATIC_DIR
from service.answering.answer import Answer
from service.answering.chat import (
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES,
    PROGRESS,
    ChatEvent,
    ChatService,
    Delta,
    Finished,
    Message,
    Started,
    check_conversation,
)
from service.answering.collections import engine_for
from service.answering.engine import Engine
from service.answering.retrieval import MAX_TOP_K, Hit

log = logging.getLogger("citeqa.chat")

OPENAI_PREFIXES = ("/v1/chat", "/v1/models")
KEEPALIVE_S = 10.0
KEEPALIVE = ": keep-alive\n\n"
DONE = "data: [DONE]\n\n"
NO_FRAME = ""  # nothing to send; the hand-over still tells the worker whether the client left
STATIC_FILES = {
    "app.js": "text/javascript",
    "style.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_INPUT_ERRORS = ("InputError", "InvalidRequest")


class ModelNotFoundError(CiteqaError):
    """A chat request names a model that ``GET /v1/models`` does not list."""

    status = 404


# --------------------------------------------------------------------------- request models


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = Field(
        None, description="Text, or content parts of which the text ones are read."
    )

    @field_validator("content")
    @classmethod
    def _short_enough(cls, content: str | list[ContentPart] | None) -> Any:
        if len(_text(content)) > MAX_MESSAGE_CHARS:
            raise ValueError(f"at most {MAX_MESSAGE_CHARS} characters per message")
        return content

    def message(self) -> Message:
        return Message(role=self.role, content=_text(self.content))


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, max_tokens...: accepted, ignored

    model: str = Field(description="A model id listed by GET /v1/models.")
    messages: list[ChatMessageIn] = Field(
        min_length=1, max_length=MAX_MESSAGES, description="The whole conversation, oldest first."
    )
    stream: bool = Field(False, description="Stream the answer as server-sent events.")
    top_k: int | None = Field(
        None, ge=1, le=MAX_TOP_K, description="citeqa extension: sources to retrieve."
    )

    @model_validator(mode="after")
    def _ends_with_user(self) -> ChatCompletionRequest:
        if self.messages[-1].role != "user":
            raise ValueError("the last message must have the role 'user'")
        return self

    def conversation(self) -> list[Message]:
        return [m.message() for m in self.messages]


# --------------------------------------------------------------------------- response models
# For the OpenAPI schema: what clients get back (the routes build plain dicts).


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorOut(BaseModel):
    error: OpenAIErrorDetail


class ChatChoiceOut(BaseModel):
    index: int
    message: dict[str, Any]
    logprobs: None = None
    finish_reason: str


class ChatCompletionOut(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChatChoiceOut]
    usage: dict[str, int] | None
    answer: str = Field(description="The validated answer (the message content).")
    citations: list[dict[str, Any]] = Field(description="The citation objects of /v1/ask.")
    sources: list[dict[str, Any]] = Field(description="The retrieved sources, numbered.")
    refused: bool
    standalone_question: str | None = Field(description="The question retrieval used.")
    dropped: list[dict[str, str]]
    timings_ms: dict[str, float]


class ModelOut(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelListOut(BaseModel):
    object: Literal["list"]
    data: list[ModelOut]


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": OpenAIErrorOut, "description": "Unknown model."},
    422: {"model": OpenAIErrorOut, "description": "Invalid request."},
    503: {"model": OpenAIErrorOut, "description": "The store is not available."},
}
_STREAM = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "description": "One server-sent event: data is a chat.completion.chunk JSON object, "
            "or [DONE].",
            "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
            "required": ["data"],
        }
    }
}


def _text(content: str | list[ContentPart] | None) -> str:
    if isinstance(content, list):
        return "\n".join(p.text or "" for p in content if p.type == "text")
    return content or ""


# --------------------------------------------------------------------------- errors


def openai_error_body(
    status: int, kind: str, message: str, param: str | None = None
) -> dict[str, Any]:
    """The OpenAI error envelope for an error of class (or kind) ``kind``."""
    code = _error_code(kind)
    if status >= 500:
        error_type = "server_error"
    else:
        error_type = {401: "authentication_error", 403: "permission_error"}.get(
            status, "invalid_request_error"
        )
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _error_code(kind: str) -> str:
    """``StoreUnavailableError`` -> ``store_unavailable``; input errors -> ``invalid_request``."""
    if kind in _INPUT_ERRORS:
        return "invalid_request"
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", kind).lower().removesuffix("_error")


def openai_error_response(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(openai_error_body(status, kind, message), status, headers=headers)


async def model_ids(request: Request) -> list[str]:
    """One model per collection: the model id is the collection's name."""
    return await run_in_threadpool(request.app.state.collections.names)


async def check_model(request: Request, model: str) -> None:
    models = await model_ids(request)
    if model not in models:
        raise ModelNotFoundError(
            f"The model `{model}` does not exist; GET /v1/models lists the available ones: "
            + ", ".join(models)
        )


# --------------------------------------------------------------------------- server-sent events


def sse(data: Any, event: str | None = None) -> str:
    """One SSE frame; JSON has no raw newlines, so one ``data:`` line suffices."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


class EventStream(Response):
    """Frames of a blocking iterator, sent as server-sent events (see the module docstring)."""

    media_type = "text/event-stream"

    def __init__(self, frames: Callable[[], Iterator[str]], keepalive_s: float) -> None:
        self.frames = frames
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
        frames = self.frames()
        try:
            for frame in frames:
                anyio.from_thread.run(sender.send, frame)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, CancelledError):
            log.info("stream abandoned by the client; generation stopped")
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()


def keepalive_seconds(engine: Engine) -> float:
    return engine.settings.sse_keepalive_s


def public_sources(hits: list[Hit]) -> list[dict[str, Any]]:
    return [dict(h.public(), n=i + 1) for i, h in enumerate(hits)]


Observer = Callable[[Answer], None]


def chat_frames(
    chat: ChatService,
    messages: list[Message],
    top_k: int | None,
    model: str,
    observe: Observer | None = None,
) -> Iterator[str]:
    """The chat answer as ``chat.completion.chunk`` frames, then ``[DONE]``."""
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({**base, "choices": [choice], **extra})

    try:
        with closing(chat.stream(messages, top_k)) as events:  # closed early on a disconnect
            yield from _chunks(events, chunk, observe)
    except CiteqaError as exc:
        yield sse(openai_error_body(exc.status, type(exc).__name__, exc.message))
    except Exception:
        log.exception("chat stream failed")
        yield sse(openai_error_body(500, "InternalError", "internal error; see the server log"))
    yield DONE


def _chunks(
    events: Iterator[ChatEvent], chunk: Callable[..., str], observe: Observer | None
) -> Iterator[str]:
    for event in events:
        if isinstance(event, Started):
            yield chunk(
                {"role": "assistant", "content": ""},
                sources=public_sources(event.sources),
                standalone_question=event.standalone_question,
            )
        elif event == PROGRESS:
            yield NO_FRAME
        elif isinstance(event, Delta):
            yield chunk({"content": event.text}, **_delta_citations(event))
        elif isinstance(event, Finished):
            if observe is not None:
                observe(event.answer)
            yield chunk({}, "stop", **_final_fields(event.answer))


def _delta_citations(delta: Delta) -> dict[str, Any]:
    """The citations a streamed sentence added, in the shape of the final ``citations``."""
    return {"citations": [asdict(c) for c in delta.citations]} if delta.citations else {}


def _final_fields(answer: Answer) -> dict[str, Any]:
    public = answer.public()
    return {
        "answer": answer.answer,
        "citations": public["citations"],
        "refused": answer.refused,
        "dropped": public["dropped"],
        "timings_ms": public["timings_ms"],
    }


def _openai_usage(usage: dict[str, int]) -> dict[str, int] | None:
    """OpenAI's usage object from the answer's LLM tokens; None when no LLM was called."""
    if not usage:
        return None
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    total = prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def completion_body(answer: Answer, model: str) -> dict[str, Any]:
    """A ``chat.completion`` with citeqa's extra fields."""
    public = answer.public()
    message = {"role": "assistant", "content": answer.answer, "refusal": None}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": _openai_usage(answer.usage),
        "standalone_question": answer.standalone_question,
        "sources": public["sources"],
        **_final_fields(answer),
    }


def ask_frames(
    engine: Engine, question: str, top_k: int | None, observe: Observer | None = None
) -> Iterator[str]:
    """``/v1/ask`` streamed: named events in the native shapes (see the module docstring)."""
    messages = [Message(role="user", content=question)]
    try:
        with closing(ChatService(engine).stream(messages, top_k)) as events:
            for event in events:
                if isinstance(event, Started):
                    sources = {"sources": public_sources(event.sources)}
                    q = event.standalone_question
                    yield sse({"question": q, "standalone_question": q, **sources}, "sources")
                elif event == PROGRESS:
                    yield NO_FRAME
                elif isinstance(event, Delta):
                    yield sse({"text": event.text, **_delta_citations(event)}, "delta")
                elif isinstance(event, Finished):
                    if observe is not None:
                        observe(event.answer)
                    yield sse(event.answer.public(), "answer")
    except CiteqaError as exc:
        yield sse(_problem(exc.status, type(exc).__name__, exc.message), "error")
    except Exception:
        log.exception("ask stream failed")
        yield sse(_problem(500, "InternalError", "internal error; see the server log"), "error")
    yield DONE


def _problem(status: int, kind: str, detail: str) -> dict[str, Any]:
    return {"type": kind, "title": kind, "status": status, "detail": detail}


def ask_event_stream(
    engine: Engine, question: str, top_k: int | None, observe: Observer | None = None
) -> EventStream:
    """The response of ``POST /v1/ask`` with ``"stream": true`` (input checked first: 422)."""
    engine.check_question(question)
    engine.check_top_k(top_k)
    return EventStream(
        lambda: ask_frames(engine, question, top_k, observe), keepalive_seconds(engine)
    )


# --------------------------------------------------------------------------- routes


chat_router = APIRouter()


def _observer(request: Request) -> Observer | None:
    metrics = getattr(request.app.state, "metrics", None)
    return getattr(metrics, "observe_answer", None)


@chat_router.post(
    "/v1/chat/completions",
    response_model=ChatCompletionOut,
    responses={200: {"content": _STREAM}, **_ERRORS},
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request
) -> Response | dict[str, Any]:
    await check_model(request, body.model)
    chat = ChatService(await engine_for(request, body.model))  # the model names a collection
    messages = body.conversation()
    check_conversation(messages)
    chat.engine.check_question(messages[-1]["content"])
    observe = _observer(request)
    if body.stream:
        return EventStream(
            lambda: chat_frames(chat, messages, body.top_k, body.model, observe),
            keepalive_seconds(chat.engine),
        )
    answer = await _until_disconnected(request, chat, messages, body.top_k)
    if observe is not None:
        observe(answer)
    return completion_body(answer, body.model)


async def _until_disconnected(
    request: Request, chat: ChatService, messages: list[Message], top_k: int | None
) -> Answer:
    """The whole answer, computed in a worker thread that asks the event loop, between its
    stages (before retrieval, before generation), whether the client is still connected: once
    it is gone, the work stops there instead of finishing an answer no one will read."""

    def gone() -> bool:
        return bool(anyio.from_thread.run(request.is_disconnected))

    return await run_in_threadpool(chat.complete, messages, top_k, gone)


def _model_card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "citeqa"}


@chat_router.get("/v1/models", response_model=ModelListOut)
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(m) for m in await model_ids(request)]}


@chat_router.get("/v1/models/{model_id}", response_model=ModelOut, responses=_ERRORS)
async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    await check_model(request, model_id)
    return _model_card(model_id)


@chat_router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def web_page(request: Request) -> HTMLResponse:
    """The page, with the server's limits rendered in (the text box takes what the API takes)."""
    limit = request.app.state.settings.max_question_chars
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    page = page.replace("{{max_question_chars}}", str(int(limit)))
    return HTMLResponse(page, headers=PAGE_HEADERS)


@chat_router.api_route("/static/{name}", methods=["GET", "HEAD"], include_in_schema=False)
async def web_asset(name: str) -> FileResponse:
    if name not in STATIC_FILES:  # a fixed list: no path ever reaches the file system
        raise HTTPException(404)
    return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name], headers=PAGE_HEADERS)
