"""A chat conversation: its messages and the standalone question its last turn asks.

The last user message becomes a standalone question through the generator's ``condense`` (the
LLM and ``prompts/condense.md``) when it has one, else through the offline rewrite of
:mod:`service.answering.followup`; a first question is used as it is. Nothing here keeps state
between turns: the caller sends the whole conversation each time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from citeqa.errors import LLMError
from service.answering.followup import standalone_question as offline_rewrite

log = logging.getLogger(__name__)


class Message(TypedDict):
    role: str
    content: str


def standalone_question(
    generator: Any, question: str, history: Sequence[Message], max_chars: int
) -> str:
    """``question`` (checked) rewritten with the subject of ``history`` when it has a user
    turn; the question itself when the rewrite is empty or longer than ``max_chars``."""
    if not any(m["role"] == "user" for m in history):
        return question
    rewritten = _condense(generator, list(history), question) or offline_rewrite(
        [*history, Message(role="user", content=question)]
    )
    if len(rewritten) > max_chars:
        return question
    return rewritten.strip() or question


def _condense(generator: Any, history: list[Message], question: str) -> str | None:
    condense: Callable[[list[Message], str], str] | None = getattr(generator, "condense", None)
    if condense is None:
        return None
    try:
        return condense(history, question)
    except LLMError as exc:  # the offline rewrite still gives retrieval the subject
        log.warning("condensing the follow-up failed (%s); using the offline rewrite", exc)
        return None
