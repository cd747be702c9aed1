"""The documents listing reads the lexical view's document records: a page costs as many
records as it shows, whatever the collection holds, and shows what a full read of Chroma
shows (citeqa.catalog, service.answering.tantivy_view)."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import Any

import chromadb
import pytest
import tantivy
from chromadb.config import Settings as ChromaSettings

from citeqa.catalog import Catalog, DocumentInfo
from citeqa.embedding import Embedder
from citeqa.store import Index, open_index
from ingest.chunker import SentenceChunker
from ingest.pipeline import Ingestor
from ingest.readers import read_source
from service.answering.lexical import TantivyIndex
from service.answering.lexical_views import SnapshotIndex
from service.answering.tantivy_view import TantivyView, chunk_schema, doc_schema

# File names whose ids hold what a regex or a query parser reads as syntax, characters of
# one, two, three and four UTF-8 bytes, names that begin others, and a path of over 900 bytes
# (past what one regex query of the listing takes: read by a pass instead).
LONG = "/".join(["d" * 200] * 5) + "/deep.md"
NAMES = [
    "a.md",
    "a.md.md",
    "a b.md",
    'q"x.md',
    "[x]*(y)?.md",
    "b\\c.md",
    "é.md",
    "z\u4e2d.md",
    "\U0001f600.md",
    "sub/a.md",
    LONG,
]


@pytest.fixture
def index(embedder: Embedder) -> Index:
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    return open_index(client, f"ls{uuid.uuid4().hex[:12]}", embedder, create=True)


@pytest.fixture
def folder(tmp_path: Path, index: Index, embedder: Embedder) -> Path:
    root = tmp_path / "docs"
    for n, name in enumerate(NAMES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = f"Paragraph {n} of this file. " * (n + 1)
        path.write_text(f"# Title {n}\n\n{body}", encoding="utf-8")
    chunker = SentenceChunker(max_tokens=64, count_tokens=embedder.count_tokens)
    Ingestor(index, embedder, chunker, max_batch=64).ingest(read_source(root))
    return root


def walk(catalog: Catalog, limit: int) -> list[DocumentInfo]:
    """Every page from the first, each after the last one's documents (or the test fails
    there, rather than walking the same page again and again)."""
    shown: list[DocumentInfo] = []
    cursor = None
    for _ in range(len(NAMES) + 1):
        page, cursor = catalog.page(limit, cursor)
        assert not shown or all(d.id > shown[-1].id for d in page), [d.id for d in page]
        shown += page
        if cursor is None:
            return shown
    raise AssertionError("more pages than documents")


def test_pages_from_the_lexical_view_show_what_chroma_shows(
    tmp_path: Path, index: Index, folder: Path
) -> None:
    from_chroma = Catalog(index, tmp_path).documents()
    assert len(from_chroma) == len(NAMES)
    assert sum(d.chunks for d in from_chroma) > len(NAMES)  # the later files have more chunks
    follower = TantivyIndex(index, tmp_path / "lexical", poll_s=0)
    try:
        for listing in (follower.view, SnapshotIndex(index).view):
            catalog = Catalog(index, tmp_path, listing)
            for limit in (1, 2, 5):
                assert walk(catalog, limit) == from_chroma
            for document in from_chroma:
                assert catalog.get(document.id) == document
    finally:
        follower.close()


ALPHABET = ["a", "b", "z", " ", '"', "\\", ".", "*", "[", "]", "{", "}", "\x00", "é", "\u4e2d"]
ALPHABET += ["\U0001f600", "\uffff", "\ud7ff", "\ue000", "\U0010ffff"]


def test_every_cursor_continues_in_the_order_of_the_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids of random characters (regex syntax, every UTF-8 length, the last code point and
    those around the surrogates), many the start of others: from every cursor, an id or not,
    the next page is the next ids in Python's order, deleted documents left out; only a
    cursor too long for one regex query reads every id."""
    rng = random.Random(7)
    ids = {"".join(rng.choices(ALPHABET, k=rng.randint(1, 6))) for _ in range(300)}
    ids |= {i[:cut] for i in list(ids)[:60] for cut in (1, 2)}
    ids |= {"x" * 1000, "x" * 1000 + "a"}  # past one regex query: read by a pass
    docs_path, chunks_path = tmp_path / "docs", tmp_path / "chunks"
    docs_path.mkdir()
    chunks_path.mkdir()
    docs = tantivy.Index(doc_schema(), path=str(docs_path))
    chunks = tantivy.Index(chunk_schema(), path=str(chunks_path))
    writer = docs.writer(heap_size=15_000_000, num_threads=1)
    for doc_id in sorted(ids, key=lambda _: rng.random()):
        summary = json.dumps({"doc_id": doc_id}).encode()
        writer.add_document(tantivy.Document(doc_id=doc_id, summary=summary))
        if rng.random() < 0.02:
            writer.commit()  # several segments
    deleted = set(rng.sample(sorted(ids), 30))
    for doc_id in deleted:
        writer.delete_documents_by_term("doc_id", doc_id)
    writer.commit()
    docs.reload()
    chunks.reload()
    view = TantivyView(chunks.searcher(), docs.searcher(), chunk_schema(), doc_schema())
    passes: list[str] = []
    scan = view._scan_after

    def counted(after: str, limit: int) -> list[dict[str, Any]]:
        passes.append(after)
        return scan(after, limit)

    monkeypatch.setattr(view, "_scan_after", counted)
    shown = sorted(ids - deleted)
    cursors = [None, "", "\U0010ffff\U0010ffff", *sorted(ids), *(i + "\x00" for i in shown[:20])]
    for cursor in cursors:
        expected = [i for i in shown if cursor is None or i > cursor][:4]
        got = [d["doc_id"] for d in view.documents_after(cursor, 4)]
        assert got == expected, repr(cursor)
    assert passes and all(len(cursor.encode()) > 900 for cursor in passes)
    for doc_id in sorted(ids)[:50]:
        found = view.document(doc_id)
        assert (found is None) == (doc_id in deleted)
