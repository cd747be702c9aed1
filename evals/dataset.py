"""Evaluation dataset schema, JSONL loader and corpus-grounded validator.

A dataset is a JSONL file with one :class:`EvalItem` per line. Blank lines are
ignored. Answerable items name their gold papers by exact corpus title and list
short ``key_facts`` that must appear verbatim (case-insensitive) in at least one
gold abstract; unanswerable items have neither.
"""

from __future__ import annotations

import json
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
    gold_titles: list[str]
    key_facts: list[str]

    @model_validator(mode="after")
    def _check_grounding(self) -> EvalItem:
        """Enforce the gold-title / key-fact rules that depend on ``type``."""
        if not self.question.strip():
            raise ValueError("question must not be blank")
        if self.type == "unanswerable":
            if self.gold_titles or self.key_facts:
                raise ValueError("unanswerable items must have empty gold_titles and key_facts")
            return self
        if not self.gold_titles:
            raise ValueError(f"{self.type} items need at least one gold title")
        if not self.key_facts:
            raise ValueError(f"{self.type} items need at least one key fact")
        if self.type == "multi" and len(set(self.gold_titles)) < 2:
            raise ValueError("multi items need at least two distinct gold titles")
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


def _item_problems(item: EvalItem, abstracts: Mapping[str, str]) -> list[str]:
    """Problems for a single item: unknown titles and ungrounded key facts."""
    problems = [
        f"{item.id}: gold title not in corpus: {title!r}"
        for title in item.gold_titles
        if title not in abstracts
    ]
    gold_texts = [abstracts[t].lower() for t in item.gold_titles if t in abstracts]
    for fact in item.key_facts:
        if not any(fact.lower() in text for text in gold_texts):
            problems.append(f"{item.id}: key fact not found in gold abstracts: {fact!r}")
    return problems


def validate_against_corpus(items: Sequence[EvalItem], abstracts: Mapping[str, str]) -> list[str]:
    """Check items against the corpus (``abstracts`` maps exact title -> abstract).

    Returns human-readable problems; an empty list means the dataset is valid.
    """
    problems: list[str] = []
    for item in items:
        problems.extend(_item_problems(item, abstracts))
    return problems


def dataset_stats(items: Sequence[EvalItem]) -> dict[str, Any]:
    """Summarize a dataset: item count, counts per type, distinct gold titles."""
    by_type = Counter(item.type for item in items)
    titles = {title for item in items for title in item.gold_titles}
    return {
        "total": len(items),
        "by_type": {kind: by_type.get(kind, 0) for kind in ITEM_TYPES},
        "distinct_gold_titles": len(titles),
    }
