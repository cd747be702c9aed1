"""The FastAPI app: its lifespan, /healthz and /readyz, and the wiring of the routes: the
question routes (:mod:`service.api.ask`), the OpenAI-compatible ones (:mod:`service.api.chat`),
the documents routes (:mod:`service.api.documents`) and the web page (:mod:`service.api.page`).

Routes stay thin: they validate input with pydantic models, call the :class:`Engine` held in
``app.state`` (built once in the lifespan), and let one set of exception handlers
(:mod:`service.api.errors`) map :mod:`citeqa.errors` to HTTP. Engine calls are blocking (ONNX,
Chroma), so they run in the threadpool, never on the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from citeqa import __version__
from citeqa.catalog import files_dir
from citeqa.config import Settings
from citeqa.errors import CiteqaError
from service.answering.collections import Collections
from service.answering.engine import Engine, build_engine
from service.api.ask import ask_router
from service.api.chat import chat_router
from service.api.docs import install_docs
from service.api.documents import documents_router
from service.api.errors import install_error_handlers
from service.api.jobs import JobStore, UploadRunner
from service.api.observability import configure_logging, install_observability
from service.api.page import page_router
from service.api.security import install_security

log = logging.getLogger("citeqa.api")
PROBE_ID = "citeqa-readiness-probe"  # no chunk has it: /readyz reads it to reach Chroma


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
    install_error_handlers(app)
    _install_probes(app)
    install_docs(app)
    for router in (ask_router, chat_router, documents_router, page_router):
        app.include_router(router)
    install_security(app, settings)
    install_observability(app, settings)  # last: outermost, so it sees the security refusals too
    return app


def _install_probes(app: FastAPI) -> None:
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
    """Store reachable, collections present, embedding model matching, the lexical index built
    and holding documents."""
    if app.state.engine is None:
        try:
            app.state.engine = _open_engine(app.state.factory, app.state.settings)
        except CiteqaError as exc:
            return False, exc.message
    engine: Engine = app.state.engine
    try:
        # Chroma reachable: a read by id. count(), and a get by position (limit=1) too, cost
        # Chroma a pass over the whole collection (1M chunks: 100 and 130 ms, the searches
        # waiting behind it), and every replica is probed every few seconds.
        engine.index.chunks.get(ids=[PROBE_ID], include=[])
        if not engine.retriever.warmed:
            engine.retriever.warm()
        documents = engine.retriever.stats().documents  # what this replica's index holds
    except Exception as exc:
        return False, f"Chroma is unavailable ({type(exc).__name__}: {exc})"
    if not documents:
        return False, "no document indexed yet: run `citeqa ingest`"
    return True, f"lexical index: {documents} documents; embedding model {engine.embedder.name}"
