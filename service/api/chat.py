"""The OpenAI-compatible chat API (``chat_router``, included by :func:`service.api.app.create_app`).

* ``POST /v1/chat/completions``: the OpenAI Chat Completions shape, ``stream`` false or true;
  the model is a collection's name (``citeqa`` by default; any id listed by ``GET /v1/models``,
  one per collection; others get 404 ``model_not_found``). A bearer token is accepted; the
  security middleware checks it when API keys are configured. Stateless: the conversation comes
  in ``messages`` (at most :data:`~service.answering.limits.MAX_MESSAGES`, each at most
  :data:`~service.answering.limits.MAX_MESSAGE_CHARS` characters, the last one from the user).
  Sampling options (``temperature``...) are accepted and ignored. ``top_k`` is an extension.
* ``GET /v1/models``, ``GET /v1/models/{id}``.

The answer comes from the engine's one answer path (:meth:`Engine.run` with the conversation
before the last message as ``history``): collected for a whole completion, sent as it comes
for a stream (:mod:`service.api.sse`). Only validated text is streamed: the draft is checked
sentence by sentence against the sources it cites, so the concatenated content deltas equal the
last chunk's ``answer`` exactly, whatever client shows them. A refusal is streamed as content
too, so a client reading only the content sees it.

Extra fields, which clients that do not know them ignore (the openai SDK keeps them in
``model_extra``). Non-stream: ``citations`` (the objects of ``/v1/ask``), ``sources``,
``refused``, ``standalone_question`` (the rewritten follow-up that retrieval used), ``dropped``,
``timings_ms``. Stream: the first chunk (role ``assistant``) carries ``sources`` (retrieved,
numbered like the citations) and ``standalone_question``; content deltas follow, a delta that
adds citations carrying them as ``citations``; the last chunk (``finish_reason`` ``stop``)
carries all ``citations``, ``refused``, ``dropped``, ``timings_ms`` and ``answer``, then
``data: [DONE]``. An error after the stream started is ``data: {"error": {...}}`` in the OpenAI
envelope; errors before it are HTTP errors in the same envelope (:mod:`service.api.errors`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from citeqa.errors import CiteqaError
from service.answering.answer import Answer, public_sources
from service.answering.conversation import Message
from service.answering.engine import Delta, Started
from service.answering.limits import MAX_MESSAGE_CHARS, MAX_MESSAGES, MAX_TOP_K
from service.api.ask import delta_citations
from service.api.engines import engine_for, whole_answer
from service.api.errors import openai_error_body
from service.api.observability import MetricsDep
from service.api.sse import EventStream, sse

chat_router = APIRouter()


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


# --------------------------------------------------------------------------- answers


class ChatEvents:
    """The stream as ``chat.completion.chunk`` objects (:class:`service.api.sse.Encoding`)."""

    def __init__(self, model: str) -> None:
        self.base = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse({**self.base, "choices": [choice], **extra})

    def started(self, event: Started) -> str:
        return self.chunk(
            {"role": "assistant", "content": ""},
            sources=public_sources(event.sources),
            standalone_question=event.standalone_question,
        )

    def delta(self, event: Delta) -> str:
        return self.chunk({"content": event.text}, **delta_citations(event))

    def finished(self, answer: Answer) -> str:
        return self.chunk({}, "stop", **_final_fields(answer))

    def error(self, status: int, kind: str, message: str) -> str:
        return sse(openai_error_body(status, kind, message))


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
        "sources": public_sources(answer.sources),
        **_final_fields(answer),
    }


# --------------------------------------------------------------------------- routes


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


@chat_router.post(
    "/v1/chat/completions",
    response_model=ChatCompletionOut,
    responses={200: {"content": _STREAM}, **_ERRORS},
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, metrics: MetricsDep
) -> Response | dict[str, Any]:
    await check_model(request, body.model)
    engine = await engine_for(request, body.model)  # the model names a collection
    messages = body.conversation()
    history = messages[:-1]
    question, top_k = engine.check(messages[-1]["content"], body.top_k, history)
    if body.stream:
        return EventStream(
            lambda: engine.run(question, top_k, history, stream=True),
            ChatEvents(body.model),
            metrics.observe_answer,
            engine.settings.sse_keepalive_s,
        )
    answer = await whole_answer(request, engine, question, top_k, history)
    metrics.observe_answer(answer)
    return completion_body(answer, body.model)


def _model_card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "citeqa"}


@chat_router.get("/v1/models", response_model=ModelListOut)
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(m) for m in await model_ids(request)]}


@chat_router.get("/v1/models/{model_id}", response_model=ModelOut, responses=_ERRORS)
async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    await check_model(request, model_id)
    return _model_card(model_id)
