"""The native question routes: ``POST /v1/ask`` (whole or streamed) and ``GET /v1/search``.

Both answer through the engine's one answer path (:meth:`Engine.run`): the whole answer is its
events collected (:func:`~service.api.engines.whole_answer`), the stream sends them as they come
(:mod:`service.api.sse`), with named events in the native shapes: ``event: sources``
(question, standalone_question, sources), ``event: delta`` (``{"text"}``, with ``citations``
when the text added some), ``event: answer`` (the validated ``/v1/ask`` JSON), ``event:
error`` (problem+json), then ``data: [DONE]``. Only validated text is streamed: the deltas
joined equal the answer's text exactly.

The input limits are :mod:`service.answering.limits`': ``top_k`` in the request models (and so
in the OpenAPI schema), the question length, a setting, through the engine; both are checked
before a stream starts, so bad input is a 422 problem, never an error event.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from service.answering.answer import Answer, Citation, public_sources
from service.answering.engine import Delta, Started
from service.answering.limits import MAX_TOP_K
from service.api.engines import engine_for, whole_answer
from service.api.errors import problem_body
from service.api.observability import MetricsDep
from service.api.sse import EventStream, sse

ask_router = APIRouter()


class AskRequest(BaseModel):
    question: str = Field(
        min_length=1,
        description="The question to answer (at most CITEQA_MAX_QUESTION_CHARS characters).",
    )
    top_k: int | None = Field(
        None, ge=1, le=MAX_TOP_K, description="Sources to retrieve (default from settings)."
    )
    stream: bool = Field(False, description="Server-sent events (see service/api/ask.py).")
    collection: str | None = Field(
        None, description="The collection to answer from (default: the server's own)."
    )


class SourceOut(BaseModel):
    n: int
    chunk_id: str
    doc_id: str
    title: str
    url: str | None
    score: float
    text: str
    page: int | None = None
    page_end: int | None = None
    page_label: str | None = None
    section: str | None = None
    source: str | None = None


class AskResponse(BaseModel):
    question: str
    answer: str
    refused: bool
    citations: list[Citation]  # the engine's dataclass: one definition of a citation
    sources: list[SourceOut]
    timings_ms: dict[str, float]
    generator: str
    answerability: float
    dropped: list[dict[str, str]]
    usage: dict[str, int] = Field(
        description="LLM tokens of this answer (prompt_tokens, completion_tokens); {} offline."
    )
    read_as: dict[str, str] = Field(
        description="Names of the question no document writes, read as the name one letter "
        'away that the collection does ("Perseption": "Perception"); {} when none.'
    )


class SearchResponse(BaseModel):
    query: str
    hits: list[SourceOut]


class AskEvents:
    """``/v1/ask``'s stream encoding (:class:`service.api.sse.Encoding`)."""

    def started(self, event: Started) -> str:
        q = event.standalone_question
        body = {"question": q, "standalone_question": q, "sources": public_sources(event.sources)}
        return sse(body, "sources")

    def delta(self, event: Delta) -> str:
        return sse({"text": event.text, **delta_citations(event)}, "delta")

    def finished(self, answer: Answer) -> str:
        return sse(answer.public(), "answer")

    def error(self, status: int, kind: str, message: str) -> str:
        return sse(problem_body(status, kind, message), "error")


def delta_citations(delta: Delta) -> dict[str, Any]:
    """The citations a streamed sentence added, in the shape of the final ``citations``."""
    return {"citations": [asdict(c) for c in delta.citations]} if delta.citations else {}


@ask_router.post("/v1/ask", response_model=AskResponse)
async def ask(body: AskRequest, request: Request, metrics: MetricsDep) -> Any:
    engine = await engine_for(request, body.collection)
    question, top_k = engine.check(body.question, body.top_k)
    if body.stream:
        return EventStream(
            lambda: engine.run(question, top_k, stream=True),
            AskEvents(),
            metrics.observe_answer,
            engine.settings.sse_keepalive_s,
        )
    answer = await whole_answer(request, engine, question, top_k)
    metrics.observe_answer(answer)
    return answer.public()


@ask_router.get("/v1/search", response_model=SearchResponse)
async def search(
    request: Request,
    response: Response,
    q: Annotated[
        str,
        Query(min_length=1, description="Query text (at most CITEQA_MAX_QUESTION_CHARS)."),
    ],
    k: Annotated[int, Query(ge=1, le=MAX_TOP_K, description="Hits to return.")] = 5,
    collection: Annotated[
        str | None, Query(description="The collection (default: the server's own).")
    ] = None,
) -> dict[str, Any]:
    engine = await engine_for(request, collection)
    found = await run_in_threadpool(engine.searched, q, k)
    response.headers["Server-Timing"] = server_timing(found.timings_ms)
    return {"query": q, "hits": public_sources(found.hits)}


def server_timing(timings_ms: dict[str, float]) -> str:
    """A Server-Timing header (W3C) of a search's steps: ``lexical;dur=12.5, embed;dur=...``."""
    return ", ".join(f"{step};dur={ms:.1f}" for step, ms in timings_ms.items())
