"""The engine behind a request, and a whole answer computed for a client that may leave.

The collection a request names (``collection`` on ask, search and the documents routes,
``model`` on chat completions) picks the engine: the server's own (``app.state.engine``, opened
at startup) or another collection's from :class:`~service.answering.collections.Collections`.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio.from_thread
from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from citeqa.config import Settings
from citeqa.errors import StoreUnavailableError
from service.answering.answer import Answer
from service.answering.collections import Collections
from service.answering.conversation import Message
from service.answering.engine import Engine


def default_engine(request: Request) -> Engine:
    """The engine of the server's own collection."""
    engine: Engine | None = request.app.state.engine
    if engine is None:
        raise StoreUnavailableError(f"the store is not open yet: {request.app.state.startup_error}")
    return engine


async def engine_for(request: Request, name: str | None, create: bool = False) -> Engine:
    """The engine of collection ``name`` (None: the server's own)."""
    settings: Settings = request.app.state.settings
    if name is None or name == settings.collection:
        return default_engine(request)
    collections: Collections = request.app.state.collections
    return await run_in_threadpool(collections.get, name, create)


async def whole_answer(
    request: Request,
    engine: Engine,
    question: str,
    top_k: int | None,
    history: Sequence[Message] | None = None,
) -> Answer:
    """The whole answer (:meth:`Engine.ask`), computed in a worker thread that asks the event
    loop, between its stages (before retrieval, before generation), whether the client is
    still connected: once it is gone, the work stops there instead of finishing an answer no
    one will read."""

    def gone() -> bool:
        return bool(anyio.from_thread.run(request.is_disconnected))

    return await run_in_threadpool(engine.ask, question, top_k, history, gone)
