"""The README's /v1/ask example is what the code prints: the same question, asked of the engine
over the bundled corpus, gives the answer and the citation fields the README shows (``…`` marks
where the README shortens a value; timings vary and are not compared)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from service.answering.engine import Engine

README = Path(__file__).resolve().parent.parent / "README.md"
ASK_EXAMPLE = re.compile(
    r"curl -s localhost:8000/v1/ask .*?-d '(?P<request>\{.*?\})'\n```\n"
    r"```json\n(?P<shown>.*?)\n```",
    re.S,
)

pytestmark = pytest.mark.integration


def shown_field(shown: str, name: str) -> Any:
    """A field of the README's (abridged, so not parseable) JSON: its first ``"name": value``."""
    found = re.search(rf'"{name}": ("(?:[^"\\]|\\.)*"|-?\d+|true|false)', shown)
    assert found is not None, f"the README's example has no {name}"
    return json.loads(found.group(1))


def test_the_readme_ask_example_is_what_the_engine_answers(engine: Engine) -> None:
    example = ASK_EXAMPLE.search(README.read_text(encoding="utf-8"))
    assert example is not None, "the README's /v1/ask example was not found"
    question = json.loads(example.group("request"))["question"]
    shown = example.group("shown")
    answer = engine.ask(question).public()
    citation = answer["citations"][0]

    assert shown_field(shown, "answer") == answer["answer"]
    assert shown_field(shown, "refused") is answer["refused"]
    for name in ("n", "doc_id", "title", "start", "end", "url"):
        assert shown_field(shown, name) == citation[name], name
    for name in ("chunk_id", "quote"):  # shortened in the README: the part shown must match
        assert citation[name].startswith(shown_field(shown, name).removesuffix("…")), name
