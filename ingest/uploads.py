"""Uploaded documents: files kept by content hash, read and ingested one at a time.

An uploaded file is written to ``<data_dir>/files/<sha256><ext>`` (:func:`store_file`); the
client's file name is a label (the document id ``upload:<name>``, the citation's ``source``),
never part of a path. Each file name is its own source, ``upload:<name>``, and its chunks record
the kept file (metadata ``file``), so, as for any source of :mod:`ingest.pipeline`:

* the same content again plans nothing to write (the chunk ids and ``doc_hash`` are there);
* changed content under the same name is a new version of the document, written beside the old
  one, which is deleted once the new one is whole: readers see one complete version, never part
  of one (:func:`citeqa.store.visible_chunks`), also when the upload dies half-way.

A JSON text (``{"title", "text"}``) is the source ``text:<id>``, one per title: posting the same
title with another text replaces it.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from citeqa.errors import CorpusFormatError, TooLargeError
from ingest.formats.sniff import KINDS
from ingest.readers import ReadResult, add_read, listing_doc_id, make_document, read_file

COPY_BLOCK = 1 << 20
MAX_NAME_CHARS = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class StoredFile:
    """An uploaded file: the name the client gave (cleaned), and where its bytes are kept
    (``stored`` under the files folder; empty when it was refused before being kept)."""

    name: str
    stored: str
    size: int
    refusal: str | None = None


@dataclass(frozen=True)
class TextItem:
    """A document posted as JSON."""

    title: str
    text: str
    url: str = ""


Item = StoredFile | TextItem


def clean_name(raw: str | None) -> str:
    """The client's file name as a label: its last path part, without control characters,
    NFC, at most :data:`MAX_NAME_CHARS` characters; "upload" when nothing is left."""
    base = re.split(r"[/\\]", raw or "")[-1]
    name = _UNSAFE.sub("", unicodedata.normalize("NFC", base)).strip().strip(".")
    if len(name) > MAX_NAME_CHARS:
        suffix = PurePosixPath(name).suffix[:16]
        name = name[: MAX_NAME_CHARS - len(suffix)] + suffix
    return name or "upload"


def store_file(data: BinaryIO, raw_name: str | None, folder: Path, limit: int) -> StoredFile:
    """Copy an upload into ``folder`` under its content hash; refuse (keep nothing) a file of a
    type citeqa does not read, or an empty one; :class:`TooLargeError` over ``limit`` bytes."""
    name = clean_name(raw_name)
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in KINDS:
        return StoredFile(name, "", 0, f"unsupported file type {suffix or '(none)'!r}")
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".partial-{uuid.uuid4().hex}"
    digest, size = hashlib.sha256(), 0
    try:
        with partial.open("wb") as out:
            while block := data.read(COPY_BLOCK):
                size += len(block)
                if size > limit:
                    raise TooLargeError(
                        f"{name}: the file is larger than the limit of {limit} bytes "
                        "(CITEQA_MAX_UPLOAD_FILE_BYTES)"
                    )
                digest.update(block)
                out.write(block)
        if size == 0:
            return StoredFile(name, "", 0, "empty file")
        stored = f"{digest.hexdigest()}{suffix}"
        os.replace(partial, folder / stored)  # atomic; the same content lands on itself
        return StoredFile(name, stored, size)
    finally:
        partial.unlink(missing_ok=True)


def read_item(item: Item, folder: Path) -> ReadResult:
    """The documents of one uploaded item; a file that cannot be read is in ``skipped``."""
    if isinstance(item, TextItem):
        doc_id = f"text:{listing_doc_id(item.title)}"
        read = ReadResult(source=doc_id)
        document = make_document(doc_id, item.title, item.text, read.source)
        if item.url:
            document.metadata["url"] = item.url
        read.documents.append(document)
        return read
    read = ReadResult(source=f"upload:{item.name}")
    if item.refusal:
        read.skipped.append((item.name, item.refusal))
        return read
    try:
        add_read(read, read_file(folder / item.stored, item.name, read.source, "upload:"))
    except CorpusFormatError as exc:
        read.skipped.append((item.name, exc.message))
    for document in read.documents:
        document.metadata["file"] = item.stored  # recorded in every chunk (ingest/chunker.py)
    return read
