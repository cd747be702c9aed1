"""A name the collection never mentions, read as the one name it does mention that is one
typing slip away ("Perseption" -> "Perception", "VidChapers-7M" -> "VidChapters-7M",
"MMDocBnech" -> "MMDocBench").

A slip is one letter dropped, added, changed or swapped with its neighbour (Damerau's one
edit). Digits and capitals are never touched: "Llama-2" is not a slip of "Llama-3", nor
"EfficientDet" of "EfficientNet": each is another model, and a question about it is a near
miss the engine must refuse. A short name is never corrected either ("Mixtral" is one letter
from "Mistral": different things), and a name with two readings is left as written. What is
read as what is kept, so a response can say so.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import TYPE_CHECKING

from citeqa.text import name_keys

if TYPE_CHECKING:
    from service.answering.lexical_views import LexicalView

# The shortest squashed name a slip is looked for in: below it, names one letter apart are
# as often two different things as a slip.
MIN_LENGTH = 8
_LETTERS = string.ascii_lowercase


def slips(key: str) -> Iterator[str]:
    """The words one letter edit from the squashed ``key``, its digits kept as they are."""
    for i, ch in enumerate(key):
        if ch.isalpha():
            yield key[:i] + key[i + 1 :]  # dropped
            for other in _LETTERS:
                if other != ch:
                    yield key[:i] + other + key[i + 1 :]  # changed
        if i + 1 < len(key) and ch.isalpha() and key[i + 1].isalpha() and ch != key[i + 1]:
            yield key[:i] + key[i + 1] + ch + key[i + 2 :]  # swapped
    for i in range(len(key) + 1):
        for other in _LETTERS:
            yield key[:i] + other + key[i:]  # added


def _meant(view: LexicalView, key: str) -> str:
    """The one word of the collection ``key`` is a slip of, or ""."""
    if len(key) < MIN_LENGTH:
        return ""
    held = view.held_words(set(slips(key)) - {key})
    return next(iter(held)) if len(held) == 1 else ""


def _respelled(name: str, key: str, meant: str) -> str:
    """``name`` with its squashed part ``key`` written as ``meant``: the letters that differ
    are replaced where ``name`` writes them, its other characters ("-", ".") and case kept."""
    positions = [i for i, ch in enumerate(name) if ch.isalnum()]
    start = "".join(name[i] for i in positions).lower().find(key)
    if start < 0:
        return ""
    at = positions[start : start + len(key)]
    shortest = min(len(key), len(meant))
    head = 0  # letters both spell alike from the front ...
    while head < shortest and key[head] == meant[head]:
        head += 1
    tail = 0  # ... and from the back: key[head:end] is written as meant[head:-tail]
    while tail < shortest - head and key[-1 - tail] == meant[-1 - tail]:
        tail += 1
    end = len(key) - tail
    first = at[head] if head < len(key) else at[-1] + 1
    last = at[end - 1] + 1 if end > head else first
    # A capital is where names differ on purpose ("EfficientDet" is not "EfficientNet",
    # "LLaVA" not "LLaMA"): a slip is of small letters, inside a word written in them.
    around = [ch for ch in name[max(0, first - 1) : last + 1] if ch.isalpha()]
    if any(ch.isupper() for ch in name[first:last]) or (
        first == last and around and all(ch.isupper() for ch in around)
    ):
        return ""
    return name[:first] + meant[head : len(meant) - tail] + name[last:]


def corrections(view: LexicalView, unknown: list[str]) -> dict[str, str]:
    """Each of the ``unknown`` names (none of its spellings in ``view``) that is one slip from
    a word of the collection -> the name respelled as that word."""
    read_as: dict[str, str] = {}
    for name in unknown:
        respelled = name
        for key in name_keys(name):
            if view.has_key(key):
                continue
            meant = _meant(view, key)
            respelled = _respelled(respelled, key, meant) if meant else ""
            if not respelled:
                break
        if respelled and respelled != name:
            read_as[name] = respelled
    return read_as
