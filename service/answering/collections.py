"""One engine per collection: built on first use, then kept (its BM25 snapshot with it).

The server's own collection (``Settings.collection``) is the engine the app opens at startup
(``app.state.engine``); any other collection a request names (``collection`` on ask, search and
the documents routes, ``model`` on chat completions) gets its engine here, from the same
factory with the collection swapped in, so the embedder is shared and each collection keeps its
own lexical snapshot. A name that is not an index in the store is a 404 naming it; uploads may
create one (:meth:`Collections.get` with ``create``). :mod:`service.api.engines` picks the
engine of a request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from chromadb.api import ClientAPI

from citeqa.config import Settings
from citeqa.store import check_collection_name, collection_names, connect, require_collection
from service.answering.engine import Engine


class Collections:
    """The engines of the collections other than the server's own."""

    def __init__(self, settings: Settings, factory: Callable[[Settings], Engine]) -> None:
        self.settings = settings
        self.factory = factory
        self._engines: dict[str, Engine] = {}
        self._client: ClientAPI | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> ClientAPI:
        if self._client is None:
            self._client = connect(self.settings)
        return self._client

    def names(self) -> list[str]:
        """Every collection of the store, the server's own included."""
        return sorted({self.settings.collection, *collection_names(self.client)})

    def get(self, name: str, create: bool = False) -> Engine:
        """The engine of collection ``name`` (blocking: it may open the collection)."""
        with self._lock:
            engine = self._engines.get(name)
            if engine is None:
                if create:
                    check_collection_name(name)
                else:
                    require_collection(self.client, name)
                engine = self.factory(self.settings.model_copy(update={"collection": name}))
                self._engines[name] = engine
            return engine
