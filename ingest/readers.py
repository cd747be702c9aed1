"""Readers: turn files into llama-index ``Document`` objects with stable ids.

Two sources:

* a *paper listing* (the bundled corpus): 2 header lines, then title / abstract line pairs;
  the first title is glued to the word "Subscribe";
* a folder of the user's own files: PDF, HTML, DOCX, Markdown and text (one reader per
  format in :mod:`ingest.formats`; title from the document itself, else the file name) and
  ``.jsonl`` (one ``{"id", "title", "text"}`` object per line). Each document comes with its
  :class:`~citeqa.layout.Layout` (page and section starts). Other files, empty ones, files
  whose bytes are not what their extension says, and files a reader cannot read (encrypted,
  damaged, no text layer, zip bombs...) are skipped with a reason, and the rest is read;
  paths that resolve outside the folder (symlinks) are refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from llama_index.core.schema import Document

from citeqa.errors import CorpusFormatError, InputError
from citeqa.layout import Layout
from ingest.formats import Extracted
from ingest.formats.docx import read_docx
from ingest.formats.html import read_html
from ingest.formats.pdf import read_pdf
from ingest.formats.sniff import KINDS, MAX_FILE_BYTES, check_kind
from ingest.formats.text import read_text

LISTING_HEADER_LINES = 2
_URL_RE = re.compile(r"https?://[^\s)\]}>,;\"']+")
_SLUG_RE = re.compile(r"[^a-z0-9]+")


@dataclass
class ReadResult:
    """Documents read from one source, their layouts (by doc id; none for listings and
    records), the files skipped (path, reason), and the source key."""

    source: str
    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    layouts: dict[str, Layout] = field(default_factory=dict)


def make_document(doc_id: str, title: str, text: str, source: str) -> Document:
    """A Document whose metadata the chunker and the store rely on."""
    urls = [u.rstrip(".") for u in _URL_RE.findall(text)]
    metadata = {"doc_id": doc_id, "title": title, "source": source, "url": urls[0] if urls else ""}
    return Document(id_=doc_id, text=text, metadata=metadata)


def slug(text: str, limit: int = 48) -> str:
    return _SLUG_RE.sub("-", text.lower()).strip("-")[:limit].rstrip("-") or "doc"


def listing_doc_id(title: str) -> str:
    """Stable id from the title alone, so reordering the listing changes no id."""
    digest = hashlib.sha1(title.encode()).hexdigest()[:8]
    return f"{slug(title)}-{digest}"


def looks_like_listing(path: Path) -> bool:
    """The bundled format: starts with the 'Get trending papers' header."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        return handle.readline().startswith("Get trending papers")


def read_listing(path: Path) -> ReadResult:
    """Parse a paper listing; a malformed file raises an error naming the line."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise CorpusFormatError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    body = lines[LISTING_HEADER_LINES:]
    if len(lines) <= LISTING_HEADER_LINES:
        raise CorpusFormatError(f"{path}: no papers after the {LISTING_HEADER_LINES} header lines")
    result = ReadResult(source=f"listing:{path.name}")
    seen: dict[str, int] = {}
    for index in range(0, len(body), 2):
        title_line = LISTING_HEADER_LINES + index + 1
        title, abstract = _listing_pair(path, body, index, title_line)
        if title in seen:
            raise CorpusFormatError(
                f"{path}:{title_line}: duplicate title (first at line {seen[title]}): {title!r}"
            )
        seen[title] = title_line
        result.documents.append(
            make_document(listing_doc_id(title), title, abstract, result.source)
        )
    return result


def _listing_pair(path: Path, body: list[str], index: int, line_no: int) -> tuple[str, str]:
    title = body[index].strip()
    if index == 0 and title.startswith("Subscribe"):
        title = title[len("Subscribe") :].strip()
    if not title:
        raise CorpusFormatError(f"{path}:{line_no}: expected a title line, found an empty line")
    if index + 1 >= len(body):
        raise CorpusFormatError(f"{path}:{line_no}: title {title!r} has no abstract line after it")
    abstract = body[index + 1].strip()
    if not abstract:
        raise CorpusFormatError(f"{path}:{line_no + 1}: empty abstract for title {title!r}")
    return title, abstract


def read_folder(root: Path) -> ReadResult:
    """Read every supported file under ``root``; skipped files are listed with the reason."""
    root = root.resolve()
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    result = ReadResult(source=f"folder:{root}")
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            continue
        relative = path.relative_to(root).as_posix()
        reason = _refusal(root, path)
        if reason:
            result.skipped.append((relative, reason))
            continue
        try:  # a file is read whole or skipped whole, never half
            add_read(result, read_file(path, relative, result.source))
        except CorpusFormatError as exc:
            result.skipped.append((relative, exc.message))
    return result


def add_read(result: ReadResult, read: list[tuple[Document, Layout | None]]) -> None:
    for document, layout in read:
        result.documents.append(document)
        if layout is not None:
            result.layouts[document.doc_id] = layout


def _refusal(root: Path, path: Path) -> str | None:
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        return f"resolves outside {root} (symlink to {resolved}); refused"
    if path.suffix.lower() not in KINDS:
        return f"unsupported file type {path.suffix or '(none)'!r}"
    size = resolved.stat().st_size
    if size == 0:
        return "empty file"
    if size > MAX_FILE_BYTES:
        return f"file of {size / 2**20:.0f} MB is larger than {MAX_FILE_BYTES / 2**20:.0f} MB"
    return None


def read_file(
    path: Path, relative: str, source: str, prefix: str = "file:"
) -> list[tuple[Document, Layout | None]]:
    """The documents of one file, with their layouts: one, or one per JSONL record. Its id is
    ``prefix`` + ``relative`` (the name the user knows it by; an upload's path is a hash), and
    its title falls back to that name; :class:`CorpusFormatError` when it cannot be read."""
    data = path.read_bytes()
    kind = check_kind(path.suffix.lower(), data[:8192])
    if kind == "jsonl":
        return [(d, None) for d in _jsonl_documents(_utf8(data), relative, source)]
    extracted = _extract(kind, data)
    if not extracted.text.strip():
        raise CorpusFormatError("no text in the file")
    title = extracted.title or PurePosixPath(relative).stem.replace("_", " ").replace("-", " ")
    document = make_document(f"{prefix}{relative}", title, extracted.text, source)
    return [(document, extracted.layout)]


def _extract(kind: str, data: bytes) -> Extracted:
    if kind == "pdf":
        return read_pdf(data)
    if kind == "docx":
        return read_docx(data)
    if kind == "html":
        return read_html(data)
    return read_text(_utf8(data))


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusFormatError(f"not UTF-8 text (byte {exc.start})") from exc


def _jsonl_documents(text: str, relative: str, source: str) -> Iterator[Document]:
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusFormatError(f"line {line_no}: invalid JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or not all(
            isinstance(record.get(key), str) and record[key].strip()
            for key in ("id", "title", "text")
        ):
            raise CorpusFormatError(f"line {line_no}: needs non-empty string id, title and text")
        yield make_document(f"jsonl:{record['id']}", record["title"], record["text"], source)


def read_source(path: Path) -> ReadResult:
    """A folder, a paper listing, or a single supported file."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_folder(path)
    if looks_like_listing(path):
        return read_listing(path)
    result = ReadResult(source=f"file:{path.resolve()}")
    reason = _refusal(path.parent.resolve(), path)
    if reason:
        raise InputError(f"{path}: {reason}")
    try:
        add_read(result, read_file(path, path.name, result.source))
    except CorpusFormatError as exc:
        raise CorpusFormatError(f"{path}: {exc.message}") from exc
    return result
