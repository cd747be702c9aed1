"""The Chroma store: client construction, the two collections, and the embedding-model check.

citeqa keeps two collections per index:

* ``<name>``: one record per chunk (text, metadata, chunk embedding) - what retrieval searches;
* ``<name>__sentences``: one record per sentence of each chunk (embedding, metadata ``chunk_id``
  and offsets) - what the extractive answerer ranks sentences with.

Both record the embedding model and dimension in their metadata; opening them with another
embedder raises :class:`EmbeddingMismatchError` before anything is written or searched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import chromadb
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings as ChromaSettings

from citeqa.errors import EmbeddingMismatchError, StoreNotReadyError, StoreUnavailableError

if TYPE_CHECKING:
    from citeqa.config import Settings
    from citeqa.embedding import Embedder

SENTENCE_SUFFIX = "__sentences"


def connect(settings: Settings) -> ClientAPI:
    """Embedded PersistentClient under data_dir, or an HttpClient when chroma_url is set."""
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        try:
            return chromadb.HttpClient(
                host=url.hostname or "127.0.0.1",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
        except Exception as exc:  # chromadb raises plain ValueError/ConnectionError here
            raise StoreUnavailableError(
                f"Chroma server at {settings.chroma_url} is unreachable: {exc}"
            ) from exc
    path = settings.data_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


@dataclass
class Index:
    """The pair of collections behind one citeqa index."""

    chunks: Collection
    sentences: Collection


def _expected_metadata(embedder: Embedder) -> dict[str, Any]:
    return {"embed_model": embedder.name, "embed_dim": embedder.dim, "hnsw:space": "cosine"}


def check_embedder(collection: Collection, embedder: Embedder) -> None:
    """Fail fast when the collection was built with another embedding model or dimension."""
    meta = collection.metadata or {}
    model, dim = meta.get("embed_model"), meta.get("embed_dim")
    if model is None:
        return
    if model != embedder.name or dim != embedder.dim:
        raise EmbeddingMismatchError(
            f"collection {collection.name!r} was built with embedding model {model!r} "
            f"(dimension {dim}) but citeqa is configured with {embedder.name!r} "
            f"(dimension {embedder.dim}). Set CITEQA_COLLECTION to a new name and run "
            f"`citeqa ingest`, or restore the embedding settings used to build it."
        )


def open_index(client: ClientAPI, name: str, embedder: Embedder, create: bool) -> Index:
    """Open (or create) the chunk and sentence collections, checking the embedder."""
    collections = []
    for full_name in (name, name + SENTENCE_SUFFIX):
        try:
            if create:
                collection = client.get_or_create_collection(
                    full_name, metadata=_expected_metadata(embedder), embedding_function=None
                )
            else:
                collection = client.get_collection(full_name, embedding_function=None)
        except EmbeddingMismatchError:
            raise
        except Exception as exc:
            raise _classify(exc, full_name) from exc
        check_embedder(collection, embedder)
        collections.append(collection)
    return Index(chunks=collections[0], sentences=collections[1])


def _classify(exc: Exception, name: str) -> Exception:
    text = f"{type(exc).__name__}: {exc}"
    if "does not exist" in text or "NotFound" in text:
        return StoreNotReadyError(f"collection {name!r} does not exist yet: run `citeqa ingest`")
    return StoreUnavailableError(f"Chroma is unavailable ({text})")


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
