"""The documents of one index: listed, shown and deleted, and their original files.

There is no separate table of documents: the chunk collection is the catalog, as it is the
manifest of ingest (:mod:`ingest.pipeline`). A document is listed when one of its versions is
complete (:func:`citeqa.store.visible_chunks`), so an upload that died half-way lists nothing.

The original file of a document is found from what ingest recorded in its chunks' ``source``,
never from a request: ``folder:<root>`` with the id ``file:<relative path>`` (a folder ingest),
``file:<path>`` (a single file), ``upload:<name>`` with the chunk metadata ``file``
(``<sha256><ext>``: an upload, kept under ``<data_dir>/files/`` by content hash). Listings,
JSONL records of a folder and JSON texts have no file.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from chromadb.api.types import Where

from citeqa.errors import InputError, NotFoundError
from citeqa.store import INGESTED_AT, Index, delete_records, get_all, public_source, visible_chunks

FILES_DIR = "files"  # under data_dir: uploaded files, named by content hash
STORED_NAME = re.compile(r"[0-9a-f]{64}\.[a-z]+")  # what ingest/uploads.py names them
MAX_PAGE = 200

FORMATS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".jsonl": "jsonl",
}
CONTENT_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "html": "text/html",
    "markdown": "text/markdown; charset=utf-8",
    "text": "text/plain; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
}


@dataclass
class DocumentInfo:
    """One document as ``GET /v1/documents`` lists it; ``file`` (its original) stays inside."""

    id: str
    title: str
    source: str
    format: str
    pages: int | None
    chunks: int
    bytes: int | None
    ingested_at: str
    collection: str
    file: Path | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        del out["file"]
        return out


def files_dir(data_dir: Path) -> Path:
    return data_dir / FILES_DIR


def summarise(doc_id: str, chunks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the listing shows of a document, from the metadata of its visible ``chunks`` (one
    complete version): computed once per version by whoever holds them (the lexical index keeps
    it with the document's record), not again per listing."""
    first = chunks[0]
    pages = [int(m[k]) for m in chunks for k in ("page_start", "page_end") if m.get(k)]
    return {
        "doc_id": doc_id,
        "title": str(first.get("title", "")),
        "source": str(first.get("source", "")),
        "file": str(first.get("file", "")),
        "pages": max(pages) if pages else None,
        "chunks": len(chunks),
        "ingested_at": max(float(m.get(INGESTED_AT, 0.0)) for m in chunks),
    }


class Listing(Protocol):
    """The documents of a collection as some view of it holds them (:func:`summarise`'s)."""

    def documents_after(self, after: str | None, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` documents whose id sorts after ``after`` (all: None), by id."""
        ...

    def document(self, doc_id: str) -> dict[str, Any] | None: ...


class Catalog:
    """The documents of ``index``; uploaded originals are under ``uploads``. ``listing``, when
    given, returns the current :class:`Listing` of a view the caller keeps (the server's
    lexical index): a page reads as many documents as it shows. Without it, listing reads
    every chunk's metadata from Chroma (the command line's ``citeqa documents``)."""

    def __init__(
        self, index: Index, uploads: Path, listing: Callable[[], Listing] | None = None
    ) -> None:
        self.index = index
        self.uploads = uploads
        self.listing = listing

    @property
    def name(self) -> str:
        return self.index.chunks.name

    def documents(self, where: Where | None = None) -> list[DocumentInfo]:
        """Every visible document (matching ``where``), sorted by id, read from Chroma."""
        metadatas = get_all(self.index.chunks, ["metadatas"], where).metadatas
        by_doc: dict[str, list[Mapping[str, Any]]] = {}
        for i in visible_chunks(metadatas):
            by_doc.setdefault(str(metadatas[i]["doc_id"]), []).append(metadatas[i])
        return [self._describe(summarise(d, by_doc[d])) for d in sorted(by_doc)]

    def page(self, limit: int, cursor: str | None) -> tuple[list[DocumentInfo], str | None]:
        """Up to ``limit`` documents after ``cursor``, and the cursor of the next page."""
        if not 1 <= limit <= MAX_PAGE:
            raise InputError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        after = _decode_cursor(cursor) if cursor else None
        if self.listing is not None:
            found = self.listing().documents_after(after, limit + 1)
            documents = [self._describe(summary) for summary in found]
        else:
            documents = [d for d in self.documents() if after is None or d.id > after]
        shown = documents[:limit]
        more = len(documents) > limit
        return shown, _encode_cursor(shown[-1].id) if more else None

    def get(self, doc_id: str) -> DocumentInfo:
        if self.listing is not None:
            summary = self.listing().document(doc_id)
            found = [self._describe(summary)] if summary is not None else []
        else:
            found = self.documents({"doc_id": doc_id})
        if not found:
            raise NotFoundError(f"document {doc_id!r} does not exist in collection {self.name!r}")
        return found[0]

    def delete(self, doc_id: str, max_batch: int) -> None:
        """Delete every version of the document: chunks first, then their sentences."""
        self.get(doc_id)
        delete_records(self.index, {"doc_id": doc_id}, max_batch)

    def original(self, doc_id: str) -> tuple[Path, str, str]:
        """The document's original file: path, content type and a file name to show."""
        document = self.get(doc_id)
        if document.file is None or not document.file.is_file():
            raise NotFoundError(f"document {doc_id!r} has no original file")
        return document.file, CONTENT_TYPES[document.format], document.source

    def _describe(self, summary: Mapping[str, Any]) -> DocumentInfo:
        doc_id, source_key = str(summary["doc_id"]), str(summary["source"])
        source = public_source(doc_id, source_key)
        kind = _format(doc_id, source_key, source)
        file = self._file(doc_id, source_key, summary["file"]) if kind in CONTENT_TYPES else None
        size = file.stat().st_size if file is not None and file.is_file() else None
        written = datetime.fromtimestamp(summary["ingested_at"], UTC)
        return DocumentInfo(
            id=doc_id,
            title=summary["title"],
            source=source,
            format=kind,
            pages=summary["pages"],
            chunks=summary["chunks"],
            bytes=size,
            ingested_at=written.strftime("%Y-%m-%dT%H:%M:%SZ"),
            collection=self.name,
            file=file,
        )

    def _file(self, doc_id: str, source_key: str, stored: str) -> Path | None:
        """The original file ingest recorded for the document, or None."""
        kind, _, where = source_key.partition(":")
        if kind == "upload":
            return self.uploads / stored if STORED_NAME.fullmatch(stored) else None
        if not doc_id.startswith("file:"):
            return None  # a JSONL record of a folder: no file of its own
        if kind == "file":
            return Path(where)
        if kind == "folder":
            root = Path(where).resolve()
            path = (root / doc_id.removeprefix("file:")).resolve()
            return path if path.is_relative_to(root) else None
        return None


def _format(doc_id: str, source_key: str, source: str) -> str:
    if source_key.startswith("listing:"):
        return "listing"
    if doc_id.startswith("text:"):
        return "json"
    if doc_id.startswith("jsonl:"):
        return "jsonl"
    return FORMATS.get(PurePosixPath(source).suffix.lower(), "text")


def _encode_cursor(doc_id: str) -> str:
    return base64.urlsafe_b64encode(doc_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InputError("cursor is not one this server gave out (pass next_cursor back)") from None
