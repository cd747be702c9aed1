"""What an eval runs over: a collection of the store, ingested from a folder first when asked.

``citeqa eval --corpus DIR`` ingests ``DIR`` into a collection of its own, named after the
folder (:func:`collection_for`), so the bundled papers and the user's documents stay apart and
a second run re-ingests only what changed. :func:`documents` reads a collection back as whole
documents (source, title, text, page of every sentence), for grounding a dataset and drafting
one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.errors import InputError
from citeqa.layout import location
from citeqa.store import Index, get_all, public_source, visible_chunks

_NAME_RE = re.compile(r"[^a-z0-9]+")
_MAX_NAME = 40  # Chroma allows 63 characters; the sentence collection adds a suffix


def collection_for(folder: Path) -> str:
    """The collection ``--corpus`` ingests ``folder`` into: ``corpus-<folder name>`` (a short
    hash of the resolved path stands in for a name too long or without letters). It depends on
    the folder's name only, so a CI checkout in a fresh path finds its collection again."""
    resolved = Path(folder).resolve()
    name = _NAME_RE.sub("-", resolved.name.lower()).strip("-")
    if not name or len(name) > _MAX_NAME:
        digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
        name = f"{name[: _MAX_NAME - 9].rstrip('-')}-{digest}".lstrip("-")
    return f"corpus-{name}"


def ingest_corpus(
    settings: Settings,
    folder: Path,
    embedder: Embedder | None = None,
    progress: bool = True,
    calibrate: bool = True,
) -> str:
    """Ingest ``folder`` into ``settings.collection`` (incremental: unchanged files are not
    embedded again) and, unless ``calibrate`` is False, fit the collection's answerability
    model when that changed it materially, as ``citeqa ingest`` does: an eval measures the
    engine a user of the folder gets. Returns the summary line (and the fit's)."""
    import sys

    from ingest.progress import for_stream
    from ingest.run import default_embedder, ingest_paths, refit_report

    if not Path(folder).is_dir():
        raise InputError(f"--corpus {folder}: not a folder")
    reporter = for_stream(sys.stderr) if progress else None
    embedder = embedder or default_embedder(settings)
    (summary,) = ingest_paths(settings, [Path(folder)], progress=reporter, embedder=embedder)
    report = refit_report(settings, summary.changed, embedder) if calibrate else None
    return summary.line() if report is None else f"{summary.line()}\n{report}"


@dataclass
class Sentence:
    """One sentence of a document as ingested, and the physical page it starts on."""

    text: str
    page: int | None


@dataclass
class Document:
    """A document of a collection: its source (file relative to the ingested folder), title,
    text (its chunks in order) and sentences."""

    doc_id: str
    source: str
    title: str
    text: str
    sentences: list[Sentence] = field(default_factory=list)


def documents(index: Index) -> list[Document]:
    """Every document of ``index`` (newest complete versions only), in doc id order."""
    records = get_all(index.chunks, ["documents", "metadatas"])
    parts: dict[str, list[tuple[int, str, dict[str, object]]]] = {}
    for i in visible_chunks(records.metadatas):
        meta = dict(records.metadatas[i] or {})
        body = records.documents[i][int(str(meta.get("prefix_len", 0))) :]
        parts.setdefault(str(meta["doc_id"]), []).append(
            (int(str(meta.get("chunk_index", 0))), body, meta)
        )
    out = []
    for doc_id, chunks in sorted(parts.items()):
        chunks.sort(key=lambda part: part[0])
        first = chunks[0][2]
        doc = Document(
            doc_id=doc_id,
            source=public_source(doc_id, str(first.get("source", ""))),
            title=str(first.get("title", "")),
            text=" ".join(body for _, body, _ in chunks),
        )
        for _, body, meta in chunks:
            doc.sentences.extend(_sentences(body, meta))
        out.append(doc)
    return out


def _sentences(body: str, meta: dict[str, object]) -> list[Sentence]:
    """The chunk's sentences (``meta["sentences"]`` and the page map hold document offsets;
    the chunk body starts at ``meta["start"]``)."""
    spans: Sequence[Sequence[int]] = json.loads(str(meta.get("sentences") or "[]"))
    offset = int(str(meta.get("start", 0)))
    out = []
    for start, end in spans:
        text = body[start - offset : end - offset].strip()
        if text:
            out.append(Sentence(text, location(meta, start, end).get("page")))
    return out
