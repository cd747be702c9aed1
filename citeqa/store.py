"""The Chroma store: client construction, the two collections, and the embedding-model check.

citeqa keeps two collections per index:

* ``<name>``: one record per chunk (text, metadata, chunk embedding) - what retrieval searches;
* ``<name>__sentences``: one record per sentence of each chunk (embedding, metadata ``chunk_id``
  and offsets) - what the extractive answerer ranks sentences with.

Both record the embedding model and dimension in their metadata; opening them with another
embedder raises :class:`EmbeddingMismatchError` before anything is written or searched.

Chroma has no transaction across batches, so a re-ingested document is, for a while, stored in
two versions, or in one and a half. Every chunk names its version (``doc_hash``), how many chunks
that version has (``doc_chunks``) and when it was written (``ingested_at``); readers show only
:func:`visible_chunks`: per document, the newest version whose chunks are all present.

Requests to a Chroma server are bounded by :data:`CHROMA_TIMEOUT`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import chromadb
import httpx
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import GetResult, Where
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import InternalError
from tenacity import retry, retry_if_exception, stop_after_attempt

from citeqa.changes import CHANGES_SUFFIX, HEADS_SUFFIX, ChangeLog
from citeqa.errors import (
    EmbeddingMismatchError,
    InputError,
    NotFoundError,
    StoreNotReadyError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from citeqa.config import Settings
    from citeqa.embedding import Embedder

SENTENCE_SUFFIX = "__sentences"
JOBS_SUFFIX = "__jobs"  # upload jobs (service/api/jobs.py), beside the server's default collection
DOC_CHUNKS = "doc_chunks"  # chunk metadata: chunks in this version of the document
INGESTED_AT = "ingested_at"  # chunk metadata: start of the ingest run that wrote it (epoch s)

# chromadb's HttpClient sends every request with timeout=None: a server that accepts connections
# but never answers (frozen, overloaded, a half-open network path) would hang requests forever.
CHROMA_TIMEOUT = httpx.Timeout(30.0, connect=3.0)

log = logging.getLogger(__name__)


def connect(settings: Settings) -> ClientAPI:
    """Embedded PersistentClient under data_dir, or an HttpClient when chroma_url is set."""
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        return _http_client(settings.chroma_url, chroma_settings)
    path = settings.data_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def _http_client(url_text: str, chroma_settings: ChromaSettings) -> ClientAPI:
    url = urlparse(url_text)
    host, ssl = url.hostname or "127.0.0.1", url.scheme == "https"
    port = url.port or (443 if ssl else 8000)
    try:
        # The constructor below already talks to the server, without a timeout: probe first.
        heartbeat = f"{'https' if ssl else 'http'}://{host}:{port}/api/v2/heartbeat"
        httpx.get(heartbeat, timeout=CHROMA_TIMEOUT).raise_for_status()
        client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=chroma_settings)
    except Exception as exc:  # httpx errors, or chromadb's plain ValueError/ConnectionError
        raise StoreUnavailableError(f"Chroma server at {url_text} is unreachable: {exc}") from exc
    _bound_requests(client)
    return client


def _bound_requests(client: ClientAPI) -> None:
    """Put :data:`CHROMA_TIMEOUT` on the httpx session chromadb's HttpClient sends through."""
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = CHROMA_TIMEOUT
    else:  # chromadb changed its internals; tests/test_faults.py checks this
        log.warning("cannot set a timeout on chromadb's HTTP session: requests are unbounded")


@dataclass
class Index:
    """The collections behind one citeqa index: chunks, sentences and the change log."""

    chunks: Collection
    sentences: Collection
    log: ChangeLog | None = None  # what changed, for followers (citeqa.changes); None: none kept


def _expected_metadata(embedder: Embedder) -> dict[str, Any]:
    return {"embed_model": embedder.name, "embed_dim": embedder.dim}


# A wide search beam: the default ef_search (100) let two processes return different tails of
# the same top-30 for the same query vector, so eval numbers moved between identical runs.
HNSW_CONFIG: dict[str, Any] = {
    "hnsw": {"space": "cosine", "ef_construction": 200, "ef_search": 512, "max_neighbors": 32}
}


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
                    full_name,
                    metadata=_expected_metadata(embedder),
                    configuration=HNSW_CONFIG,  # type: ignore[arg-type]
                    embedding_function=None,
                )
            else:
                collection = client.get_collection(full_name, embedding_function=None)
        except EmbeddingMismatchError:
            raise
        except Exception as exc:
            raise _classify(exc, full_name) from exc
        check_embedder(collection, embedder)
        collections.append(collection)
    return Index(
        chunks=collections[0], sentences=collections[1], log=_open_log(client, collections[0])
    )


def _open_log(client: ClientAPI, chunks: Collection) -> ChangeLog:
    """The index's change log and its writers' heads, created beside it; a log created with an
    empty index holds every change of it (:meth:`ChangeLog.start`), one added to an older index
    does not."""
    name = chunks.name + CHANGES_SUFFIX
    try:
        changes = client.get_or_create_collection(name, embedding_function=None)
        heads = client.get_or_create_collection(chunks.name + HEADS_SUFFIX, embedding_function=None)
        log = ChangeLog(changes, heads)
        if changes.count() == 0 and chunks.count() == 0:
            log.start()
    except Exception as exc:
        raise _classify(exc, name) from exc
    return log


def _classify(exc: Exception, name: str) -> Exception:
    text = f"{type(exc).__name__}: {exc}"
    if "does not exist" in text or "NotFound" in text:
        return StoreNotReadyError(f"collection {name!r} does not exist yet: run `citeqa ingest`")
    return StoreUnavailableError(f"Chroma is unavailable ({text})")


def visible_chunks(metadatas: Sequence[Mapping[str, Any] | None]) -> list[int]:
    """Positions of the chunks readers may show: per document, its newest complete version.

    A version (``doc_id``, ``doc_hash``) is complete when all of its ``doc_chunks`` chunks are
    present; chunks written before versions were recorded count as complete. Ingest writes the
    new version beside the old one and deletes the old one afterwards, so readers see the old
    version until the new one is whole, then the new one only: never both, never a part.
    """
    versions: dict[tuple[str, str], list[int]] = {}
    for i, meta in enumerate(metadatas):
        if meta is not None:  # None: a record caught while it is being deleted
            key = (str(meta["doc_id"]), str(meta.get("doc_hash", "")))
            versions.setdefault(key, []).append(i)
    newest: dict[str, tuple[float, list[int]]] = {}
    for (doc_id, _), rows in versions.items():
        metas = [metadatas[i] or {} for i in rows]
        expected = next((int(m[DOC_CHUNKS]) for m in metas if DOC_CHUNKS in m), len(rows))
        written = max(float(m.get(INGESTED_AT, 0.0)) for m in metas)
        if len(rows) == expected and (doc_id not in newest or written > newest[doc_id][0]):
            newest[doc_id] = (written, rows)
    return sorted(i for _, rows in newest.values() for i in rows)


GET_PAGE = 5000  # records per Chroma get when reading a whole collection or source
GET_ATTEMPTS = 4  # a get with vectors that races a delete is asked again (get_with_vectors)


@dataclass
class Records:
    """Ids, documents and metadatas of the records one :func:`get_all` read."""

    ids: list[str]
    documents: list[str]
    metadatas: list[Any]


def get_all(
    collection: Collection,
    include: list[str],
    where: Where | None = None,
    page: int | None = None,
) -> Records:
    """Every record of ``collection`` (matching ``where``), read in pages of ``page``.

    One get of ~32k records or more fails in Chroma's SQLite ("too many SQL variables"):
    a 100k-chunk store in BENCHMARKS.md, or a single source that large at ingest.
    """
    size = page or GET_PAGE
    out = Records([], [], [])
    while True:
        got = collection.get(
            where=where,
            include=include,  # type: ignore[arg-type]
            limit=size,
            offset=len(out.ids),
        )
        out.ids.extend(got["ids"])
        out.documents.extend(got["documents"] or [])
        out.metadatas.extend(got["metadatas"] or [])
        if len(got["ids"]) < size:
            return out


def _deleted_meanwhile(exc: BaseException) -> bool:
    return isinstance(exc, InternalError) and "Error finding id" in str(exc)


@retry(
    retry=retry_if_exception(_deleted_meanwhile),
    stop=stop_after_attempt(GET_ATTEMPTS),
    reraise=True,
)
def get_with_vectors(
    collection: Collection, where: Where | None, include: list[str], ids: list[str] | None = None
) -> GetResult:
    """``collection.get(ids, where=where, include=include)``, ``include`` naming "embeddings". A
    Chroma server answers such a get that races a delete of a matching record (a re-ingest
    replacing a document) with ``InternalError: Error finding id`` instead of leaving the
    record out, as the embedded store does (about 1 get in 100 beside a delete loop, none
    without "embeddings"): asked again, the delete is done and the record is left out."""
    return collection.get(ids=ids, where=where, include=include)  # type: ignore[arg-type]


def batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------- collections

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,61}[A-Za-z0-9]")


def check_collection_name(name: str) -> str:
    """``name`` when a user may create a collection by it: 3-63 letters, digits, ``-`` and
    ``_``, starting and ending with a letter or digit, no ``__`` (the suffixes of the
    collections citeqa keeps beside each index)."""
    if not _NAME_RE.fullmatch(name) or "__" in name:
        raise InputError(
            f"invalid collection name {name!r}: use 3-63 letters, digits, '-' or '_', starting "
            "and ending with a letter or digit (no '__')"
        )
    return name


def collection_names(client: ClientAPI) -> list[str]:
    """The citeqa indexes in the store: the collections that have a sentence collection."""
    try:
        names = {c if isinstance(c, str) else c.name for c in client.list_collections()}
    except Exception as exc:
        raise _classify(exc, "(all)") from exc
    return sorted(n for n in names if n + SENTENCE_SUFFIX in names)


def require_collection(client: ClientAPI, name: str) -> None:
    """Raise :class:`NotFoundError` naming ``name`` unless that index exists."""
    if name not in collection_names(client):
        raise NotFoundError(f"collection {name!r} does not exist")


def public_source(doc_id: str, source: str) -> str:
    """Where a document comes from, without the server's own paths: the file relative to the
    ingested folder ("notes/kettle.md"), the uploaded file name, the paper listing
    ("ml_papers.txt"), or else the document id ("jsonl:<id>")."""
    if doc_id.startswith("file:"):
        return doc_id.removeprefix("file:")
    kind, _, where = source.partition(":")
    return where if kind in ("listing", "upload") else doc_id


def backfill_log(index: Index) -> None:
    """Log every document ``index`` shows, then mark its log complete: once, for an index
    written before it kept a log (this is the one read of the whole collection by offset)."""
    if index.log is None:
        return
    metadatas = get_all(index.chunks, ["metadatas"]).metadatas
    versions = {}
    for i in visible_chunks(metadatas):
        meta = metadatas[i]
        versions[str(meta["doc_id"])] = (
            str(meta.get("doc_hash", "")),
            int(meta.get(DOC_CHUNKS, 1)),
        )
    index.log.append((d, *versions[d]) for d in sorted(versions))
    index.log.start()


def delete_records(index: Index, where: Where, max_batch: int) -> int:
    """Delete the chunks matching ``where``, then their sentences (a chunk that exists always
    has its sentences), then log each document deleted; the number of chunks deleted."""
    chunks = get_all(index.chunks, ["metadatas"], where)
    for group in batches(chunks.ids, max_batch):
        index.chunks.delete(ids=group)
    for group in batches(get_all(index.sentences, [], where).ids, max_batch):
        index.sentences.delete(ids=group)
    if index.log is not None:
        index.log.deleted((str((m or {}).get("doc_id")) for m in chunks.metadatas), max_batch)
    return len(chunks.ids)
