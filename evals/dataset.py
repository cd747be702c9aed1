"""Evaluation dataset schema, JSONL loader and corpus-grounded validator.

A dataset is a JSONL file with one :class:`EvalItem` per line. Blank lines are
ignored. Answerable items name their gold documents by exact corpus title (``gold_titles``)
or by file (``gold_docs``: paths relative to the ingested folder, as citations give them in
``source``), or both, and list short ``key_facts`` that must appear in the text of a gold
document; ``gold_pages`` gives, per gold file, the 1-based physical pages that hold the answer.
Unanswerable items have no gold and no key facts. ``tags`` are free labels the report breaks
the metrics down by.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ItemType = Literal["fact", "paraphrase", "multi", "unanswerable"]
ITEM_TYPES: tuple[ItemType, ...] = ("fact", "paraphrase", "multi", "unanswerable")


class EvalItem(BaseModel):
    """One evaluation question with its reference answer and grounding."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    type: ItemType
    question: str = Field(min_length=1)
    answer: str
    gold_titles: list[str] = Field(default_factory=list)
    key_facts: list[str]
    gold_docs: list[str] = Field(default_factory=list)
    gold_pages: dict[str, list[int]] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_grounding(self) -> EvalItem:
        """Enforce the gold / key-fact rules that depend on ``type``."""
        if not self.question.strip():
            raise ValueError("question must not be blank")
        if self.type == "unanswerable":
            if self.gold_titles or self.gold_docs or self.gold_pages or self.key_facts:
                raise ValueError(
                    "unanswerable items must have empty gold_titles, gold_docs, gold_pages "
                    "and key_facts"
                )
            return self
        if not self.gold_titles and not self.gold_docs:
            raise ValueError(f"{self.type} items need at least one gold title or gold doc")
        if not self.key_facts:
            raise ValueError(f"{self.type} items need at least one key fact")
        if self.type == "multi" and max(len(set(self.gold_titles)), len(set(self.gold_docs))) < 2:
            raise ValueError("multi items need at least two distinct gold titles or gold docs")
        for doc, pages in self.gold_pages.items():
            if doc not in self.gold_docs:
                raise ValueError(f"gold_pages names {doc!r}, which is not in gold_docs")
            if any(page < 1 for page in pages):  # [] : a document without pages (HTML)
                raise ValueError(f"gold_pages of {doc!r} must be 1-based page numbers")
        return self


class DatasetError(ValueError):
    """A dataset file could not be loaded; the message names ``file:line``."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        self.path = path
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


def _parse_line(path: Path, lineno: int, text: str) -> EvalItem:
    """Parse one non-blank JSONL line into an :class:`EvalItem`."""
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(path, lineno, f"invalid JSON: {exc.msg}") from exc
    if not isinstance(raw, dict):
        raise DatasetError(path, lineno, "expected a JSON object")
    try:
        return EvalItem.model_validate(raw)
    except ValidationError as exc:
        raise DatasetError(path, lineno, f"invalid item: {_summarize(exc)}") from exc


def _summarize(exc: ValidationError) -> str:
    """Render a pydantic error compactly on one line."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "item"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def load_dataset(path: Path) -> list[EvalItem]:
    """Load and validate a JSONL dataset.

    Raises :class:`DatasetError` (naming ``file:line``) for invalid JSON, an
    invalid item, or an id already used on an earlier line.
    """
    items: list[EvalItem] = []
    first_seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            item = _parse_line(path, lineno, text)
            if item.id in first_seen:
                reason = f"duplicate id {item.id!r} (first used on line {first_seen[item.id]})"
                raise DatasetError(path, lineno, reason)
            first_seen[item.id] = lineno
            items.append(item)
    return items


# Differences between a text as extracted and as a person copies it from the page, folded
# the same way for every item: compatibility forms (ligatures "ﬁ" -> "fi", NFKC), soft hyphens,
# dashes, a word hyphenated across a line break ("estima-\ntion"), and runs of whitespace.
_SOFT_HYPHEN = "\u00ad"
_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2212"), "-")
_LINE_HYPHEN_RE = re.compile(r"(?<=[a-z])-\s*\n\s*(?=[a-z])")


def grounding_form(text: str) -> str:
    """``text`` folded for key-fact grounding (see above), lower case."""
    text = unicodedata.normalize("NFKC", text).replace(_SOFT_HYPHEN, "").translate(_DASHES)
    text = _LINE_HYPHEN_RE.sub("", text)
    return " ".join(text.split()).lower()


def source_key(source: str) -> str:
    """How gold docs and citation sources are compared: a relative POSIX path, case folded."""
    return source.replace("\\", "/").removeprefix("./").strip("/").casefold()


def same_source(cited: str, gold: str) -> bool:
    """Whether a cited ``source`` is the gold doc ``gold`` (a bare file name matches the file
    in any sub-folder)."""
    a, b = source_key(cited), source_key(gold)
    return a == b or a.endswith("/" + b)


def _item_problems(
    item: EvalItem, abstracts: Mapping[str, str], documents: Mapping[str, str]
) -> list[str]:
    """Problems for a single item: unknown titles or docs and ungrounded key facts."""
    problems = [
        f"{item.id}: gold title not in corpus: {title!r}"
        for title in item.gold_titles
        if title not in abstracts
    ]
    # A paper's title is part of its document: a key fact may be the name it gives.
    gold_texts = [f"{t}\n{abstracts[t]}" for t in item.gold_titles if t in abstracts]
    if item.gold_docs:
        for doc in item.gold_docs:
            found = [text for source, text in documents.items() if same_source(source, doc)]
            if not found:
                problems.append(f"{item.id}: gold doc not in corpus: {doc!r}")
            gold_texts.extend(found)
    folded = [grounding_form(text) for text in gold_texts]
    for fact in item.key_facts:
        if not any(grounding_form(fact) in text for text in folded):
            problems.append(f"{item.id}: key fact not found in gold documents: {fact!r}")
    return problems


def validate_against_corpus(
    items: Sequence[EvalItem],
    abstracts: Mapping[str, str],
    documents: Mapping[str, str] | None = None,
) -> list[str]:
    """Check items against the corpus: ``abstracts`` maps exact title -> text, ``documents``
    maps a document's source (its path relative to the ingested folder) -> text. Items with
    ``gold_docs`` are checked against ``documents`` too.

    Returns human-readable problems; an empty list means the dataset is valid.
    """
    problems: list[str] = []
    for item in items:
        problems.extend(_item_problems(item, abstracts, documents or {}))
    return problems


def dataset_stats(items: Sequence[EvalItem]) -> dict[str, Any]:
    """Summarize a dataset: item count, counts per type and tag, distinct gold titles/docs."""
    by_type = Counter(item.type for item in items)
    titles = {title for item in items for title in item.gold_titles}
    docs = {doc for item in items for doc in item.gold_docs}
    return {
        "total": len(items),
        "by_type": {kind: by_type.get(kind, 0) for kind in ITEM_TYPES},
        "by_tag": dict(sorted(Counter(tag for item in items for tag in item.tags).items())),
        "distinct_gold_titles": len(titles),
        "distinct_gold_docs": len(docs),
    }
