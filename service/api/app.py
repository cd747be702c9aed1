"""The FastAPI app: /v1/ask, /v1/search, /healthz, /readyz (the documents routes are in
:mod:`service.api.documents`, the OpenAI-compatible ones in :mod:`service.api.chat`).

Routes stay thin: they validate input with pydantic models, call the :class:`Engine` held in
``app.state`` (built once in the lifespan), and let one exception handler map
:mod:`citeqa.errors` to HTTP. Engine calls are blocking (ONNX, Chroma), so they run in the
threadpool, never on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any

import httpx
from chromadb.errors import ChromaError
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from citeqa import __version__
from citeqa.catalog import files_dir
from citeqa.config import Settings
from citeqa.errors import CiteqaError
from service.answering.answer import Citation
from service.answering.collections import Collections, default_engine, engine_for
from service.answering.engine import Engine, build_engine
from service.answering.retrieval import MAX_TOP_K
from service.api.chat import OPENAI_PREFIXES, ask_event_stream, chat_router, openai_error_response
from service.api.docs import install_docs
from service.api.documents import documents_router
from service.api.jobs import JobStore, UploadRunner
from service.api.observability import MetricsDep, configure_logging, install_observability
from service.api.security import install_security

log = logging.getLogger("citeqa.api")


class AskRequest(BaseModel):
    question: str = Field(
        min_length=1,
        description="The question to answer (at most CITEQA_MAX_QUESTION_CHARS characters).",
    )
    top_k: int | None = Field(
        None, ge=1, le=MAX_TOP_K, description="Sources to retrieve (default from settings)."
    )
    stream: bool = Field(False, description="Server-sent events (see service/api/chat.py).")
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


class SearchResponse(BaseModel):
    query: str
    hits: list[SourceOut]


get_engine = default_engine  # the chat router's dependency


def create_app(
    settings: Settings | None = None, engine_factory: Callable[[Settings], Engine] | None = None
) -> FastAPI:
    settings = settings or Settings()
    factory = engine_factory or build_engine

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings)  # here, after the server has set up its own logging
        app.state.engine = None
        app.state.startup_error = ""
        try:
            app.state.engine = await run_in_threadpool(_open_engine, factory, settings)
        except CiteqaError as exc:  # serve healthz and 503s; readyz retries the store
            app.state.startup_error = exc.message
            log.error("engine not ready: %s", exc.message)
        app.state.uploads = UploadRunner(
            JobStore(app.state.collections.client, settings.collection),
            files_dir(settings.data_dir),
        )
        yield
        app.state.uploads.close()

    app = FastAPI(
        title="citeqa", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = settings
    app.state.factory = factory
    app.state.collections = Collections(settings, factory)
    _install_error_handlers(app)
    _install_routes(app)
    install_docs(app)
    app.include_router(chat_router)
    app.include_router(documents_router)
    install_security(app, settings)
    install_observability(app, settings)  # last: outermost, so it sees the security refusals too
    return app


def _install_routes(app: FastAPI) -> None:
    @app.post("/v1/ask", response_model=AskResponse)
    async def ask(body: AskRequest, request: Request, metrics: MetricsDep) -> Any:
        engine = await engine_for(request, body.collection)
        if body.stream:
            return ask_event_stream(engine, body.question, body.top_k, metrics.observe_answer)
        answer = await run_in_threadpool(engine.ask, body.question, body.top_k)
        metrics.observe_answer(answer)
        return answer.public()

    @app.get("/v1/search", response_model=SearchResponse)
    async def search(
        request: Request,
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
        hits = await run_in_threadpool(engine.search, q, k)
        return {"query": q, "hits": [dict(h.public(), n=i + 1) for i, h in enumerate(hits)]}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Public (probes need no key); while API keys are set it says ready or not and nothing
        more: the reason of a 503 goes to the log."""
        ok, detail = await run_in_threadpool(_readiness, request.app)
        if not ok:
            log.warning("not ready: %s", detail)
        body: dict[str, Any] = {"ready": ok}
        settings = request.app.state.settings
        if not (settings.api_key_list or settings.write_keys):
            body["detail"] = detail
        return JSONResponse(body, status_code=200 if ok else 503)


def _open_engine(factory: Callable[[Settings], Engine], settings: Settings) -> Engine:
    """The engine, with its BM25 snapshot built: /readyz is true only after this."""
    engine = factory(settings)
    try:
        engine.retriever.warm()
    except Exception as exc:  # the store went away; the first search (or /readyz) retries
        log.warning("BM25 snapshot not built at startup: %s: %s", type(exc).__name__, exc)
    return engine


def _readiness(app: FastAPI) -> tuple[bool, str]:
    """Store reachable, collections present and non-empty, embedding model matching, the BM25
    snapshot built."""
    if app.state.engine is None:
        try:
            app.state.engine = _open_engine(app.state.factory, app.state.settings)
        except CiteqaError as exc:
            return False, exc.message
    engine: Engine = app.state.engine
    try:
        count = engine.index.chunks.count()
        if count and not engine.retriever.warmed:
            engine.retriever.warm()
    except Exception as exc:
        return False, f"Chroma is unavailable ({type(exc).__name__}: {exc})"
    if count == 0:
        return False, "the collection is empty: run `citeqa ingest`"
    return True, f"{count} chunks; embedding model {engine.embedder.name}"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CiteqaError)
    async def citeqa_error(request: Request, exc: CiteqaError) -> JSONResponse:
        if exc.status >= 500:
            _log_failure(request, exc)
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return _error(request, exc.status, type(exc).__name__, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _body_not_json(request, exc):
            return _error(request, 422, "InvalidRequest", _NOT_JSON)
        message = "; ".join(_describe(err) for err in exc.errors())
        return _error(request, 422, "InvalidRequest", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        unparsable = _unparsable_body(exc)
        if unparsable is not None:
            return _error(request, 422, "InvalidRequest", unparsable)
        kind = HTTPStatus(exc.status_code).phrase.replace(" ", "")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(exc.headers) if exc.headers else None
        return _error(request, exc.status_code, kind, detail, headers)

    async def store_failure(request: Request, exc: Exception) -> JSONResponse:
        _log_failure(request, exc)
        detail = f"Chroma is unavailable: {type(exc).__name__}: {exc}"
        return _error(request, 503, "StoreUnavailableError", detail, {"Retry-After": "5"})

    # Handled by type, not by the catch-all below: Starlette runs that one in its outermost
    # middleware, after the exception has crossed the others, and re-raises it; with uvicorn the
    # client saw a reset connection instead of the 503 (tests/test_faults.py).
    for kind in STORE_FAILURES:
        app.add_exception_handler(kind, store_failure)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        if _is_store_failure(exc):
            return await store_failure(request, exc)
        log.exception("unhandled error on %s", request.url.path)
        return _error(request, 500, "InternalError", "internal error; see the server log")


def _log_failure(request: Request, exc: Exception) -> None:
    """A server-side failure answered with a 5xx: its cause goes to the log (the client only
    sees the response; the operator needs the type and message to act)."""
    message = exc.message if isinstance(exc, CiteqaError) else str(exc)
    log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, message)


STORE_FAILURES: tuple[type[Exception], ...] = (httpx.HTTPError, ChromaError, ConnectionError)


def _is_store_failure(exc: Exception) -> bool:
    module = type(exc).__module__
    return module.startswith(("chromadb", "httpx", "httpcore")) or isinstance(exc, ConnectionError)


_NOT_JSON = "the body must be a JSON object sent with `Content-Type: application/json`"


def _body_not_json(request: Request, exc: RequestValidationError) -> bool:
    """FastAPI passes a body that is not declared JSON on as bytes, and the model then says
    "Input should be a valid dictionary": say what is wrong instead."""
    content_type = request.headers.get("content-type", "")
    declared_json = content_type.split(";")[0].strip().lower().endswith(("/json", "+json"))
    return not declared_json and any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors())


def _unparsable_body(exc: StarletteHTTPException) -> str | None:
    """What is wrong with a body FastAPI could not parse (its 400 "There was an error parsing
    the body" keeps the cause in ``__cause__``), or None for any other HTTP error."""
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None:
        return None
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8 (byte {cause.start}): send JSON encoded as UTF-8"
    if isinstance(cause, RecursionError):
        return "the body is not acceptable JSON: it is nested too deeply"
    return f"the body is not acceptable JSON: {str(cause).split(';')[0]}"  # not Python's advice


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{location or 'body'}: {error.get('msg', 'invalid')}"


def _error(
    request: Request, status: int, kind: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """problem+json, or the OpenAI error envelope under /v1/chat and /v1/models."""
    if request.url.path.startswith(OPENAI_PREFIXES):
        return openai_error_response(status, kind, detail, headers)
    return _problem(status, kind, detail, headers)


def _problem(
    status: int, kind: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"type": kind, "title": kind, "status": status, "detail": detail},
        status_code=status,
        headers=headers,
        media_type="application/problem+json",
    )
