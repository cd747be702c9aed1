"""What a client may send, defined once: the API's request models, the engine and the CLI all
read these (the API models for their schema and early 422s, the engine for every caller).

* the question: at most ``Settings.max_question_chars`` characters (a setting, so the API
  checks it through the engine, not in a static schema), not empty, valid Unicode;
* ``top_k``: 1 to :data:`MAX_TOP_K` (defined beside the settings, whose default it bounds);
* a chat conversation: at most :data:`MAX_MESSAGES` messages of at most
  :data:`MAX_MESSAGE_CHARS` characters each, the last one from the user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from citeqa.config import MAX_TOP_K, Settings
from citeqa.errors import InputError

__all__ = [  # MAX_TOP_K re-exported: the API models read every limit here
    "MAX_MESSAGES",
    "MAX_MESSAGE_CHARS",
    "MAX_TOP_K",
    "check_conversation",
    "check_question",
    "check_text",
    "check_top_k",
]

MAX_MESSAGES = 50
MAX_MESSAGE_CHARS = 8000


def check_text(text: str, what: str) -> str:
    """``text`` when the tokenizer can take it, else :class:`InputError`: the one check of every
    text a client sends (question, search query, each chat message). JSON's ``\\ud800`` escape
    and Python strings allow a lone surrogate; UTF-8 and the tokenizer do not."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{what} is not valid Unicode text: a lone surrogate at character {exc.start}"
        ) from None
    return text


def check_question(question: str, settings: Settings) -> str:
    """The question, stripped; :class:`InputError` when empty or too long."""
    question = check_text(question, "the question").strip()
    if not question:
        raise InputError("the question is empty")
    if len(question) > settings.max_question_chars:
        raise InputError(
            f"the question has {len(question)} characters; the limit is "
            f"{settings.max_question_chars}"
        )
    return question


def check_top_k(top_k: int | None, settings: Settings) -> int:
    """``top_k``, or the settings' default when None; :class:`InputError` out of range."""
    k = settings.top_k if top_k is None else top_k
    if not 1 <= k <= MAX_TOP_K:
        raise InputError(f"top_k must be between 1 and {MAX_TOP_K}, got {k}")
    return k


def check_conversation(messages: Sequence[Mapping[str, Any]]) -> None:
    """The limits of a conversation (the chat API's request model enforces the same ones)."""
    if not messages:
        raise InputError("messages: at least one message is needed")
    if len(messages) > MAX_MESSAGES:
        raise InputError(f"messages: at most {MAX_MESSAGES} messages, got {len(messages)}")
    for i, message in enumerate(messages):
        check_text(message["content"], f"messages.{i}.content")
        if len(message["content"]) > MAX_MESSAGE_CHARS:
            raise InputError(f"messages.{i}.content: at most {MAX_MESSAGE_CHARS} characters")
    if messages[-1]["role"] != "user":
        raise InputError("messages: the last message must have the role 'user'")
