"""Prompt templates: every prompt is a Jinja2 file under the repository's ``prompts/`` folder.

Templates are rendered strictly (``StrictUndefined``): a variable the caller forgot to pass is an
error, never an empty string silently sent to the model. Nothing is HTML-escaped (the output is
a prompt, not a page); callers escape what must not break the prompt's own delimiters.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(PROMPTS_DIR),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


@lru_cache(maxsize=32)
def template(name: str) -> Template:
    """The template ``prompts/<name>`` (``.md`` added when ``name`` has no suffix), cached."""
    filename = name if Path(name).suffix else f"{name}.md"
    return _environment().get_template(filename)


def render(name: str, **variables: Any) -> str:
    """Render ``prompts/<name>`` with ``variables``; a missing variable raises."""
    return template(name).render(**variables)
