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
from typing import Any

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


class Catalog:
    """The documents of ``index``; uploaded originals are under ``uploads``. ``visible``, when
    given, returns the metadata of the visible chunks from a snapshot the caller keeps (the
    server's BM25 snapshot); without it, listing reads every chunk's metadata from Chroma."""

    def __init__(
        self,
        index: Index,
        uploads: Path,
        visible: Callable[[], Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.index = index
        self.uploads = uploads
        self.visible = visible

    @property
    def name(self) -> str:
        return self.index.chunks.name

    def documents(self, where: Where | None = None) -> list[DocumentInfo]:
        """Every visible document (matching ``where``), sorted by id."""
        if where is None and self.visible is not None:
            shown: Sequence[Mapping[str, Any]] = self.visible()
        else:
            metadatas = get_all(self.index.chunks, ["metadatas"], where).metadatas
            shown = [metadatas[i] for i in visible_chunks(metadatas)]
        by_doc: dict[str, list[Mapping[str, Any]]] = {}
        for meta in shown:
            by_doc.setdefault(str(meta["doc_id"]), []).append(meta)
        return [self._describe(doc_id, by_doc[doc_id]) for doc_id in sorted(by_doc)]

    def page(self, limit: int, cursor: str | None) -> tuple[list[DocumentInfo], str | None]:
        """Up to ``limit`` documents after ``cursor``, and the cursor of the next page."""
        if not 1 <= limit <= MAX_PAGE:
            raise InputError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        after = _decode_cursor(cursor) if cursor else None
        documents = [d for d in self.documents() if after is None or d.id > after]
        shown = documents[:limit]
        more = len(documents) > limit
        return shown, _encode_cursor(shown[-1].id) if more else None

    def get(self, doc_id: str) -> DocumentInfo:
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

    def _describe(self, doc_id: str, chunks: Sequence[Mapping[str, Any]]) -> DocumentInfo:
        first = chunks[0]
        source_key = str(first.get("source", ""))
        source = public_source(doc_id, source_key)
        kind = _format(doc_id, source_key, source)
        pages = [int(m[k]) for m in chunks for k in ("page_start", "page_end") if m.get(k)]
        stored = str(first.get("file", ""))
        file = self._file(doc_id, source_key, stored) if kind in CONTENT_TYPES else None
        size = file.stat().st_size if file is not None and file.is_file() else None
        written = max(float(m.get(INGESTED_AT, 0.0)) for m in chunks)
        return DocumentInfo(
            id=doc_id,
            title=str(first.get("title", "")),
            source=source,
            format=kind,
            pages=max(pages) if pages else None,
            chunks=len(chunks),
            bytes=size,
            ingested_at=datetime.fromtimestamp(written, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
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
