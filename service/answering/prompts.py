"""Prompt templates: every prompt is a Jinja2 file, shipped in the package (``citeqa.prompts``,
the repository's ``prompts/`` folder) and overridable one by one from ``prompts_dir``.

Templates are rendered strictly (``StrictUndefined``): a variable the caller forgot to pass is an
error, never an empty string silently sent to the model. Nothing is HTML-escaped (the output is
a prompt, not a page); callers escape what must not break the prompt's own delimiters.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, Template

from citeqa.resources import PROMPTS_DIR


@lru_cache(maxsize=4)
def _environment(prompts_dir: Path | None) -> Environment:
    """Templates from ``prompts_dir`` first (the user's), then the packaged ones."""
    folders = [prompts_dir, PROMPTS_DIR] if prompts_dir is not None else [PROMPTS_DIR]
    return Environment(
        loader=ChoiceLoader([FileSystemLoader(folder) for folder in folders]),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )


def template(name: str, prompts_dir: Path | None = None) -> Template:
    """The template ``<name>`` (``.md`` added when ``name`` has no suffix).

    jinja2 caches compiled templates and recompiles one whose file changed.
    """
    filename = name if Path(name).suffix else f"{name}.md"
    return _environment(prompts_dir).get_template(filename)


def render(name: str, prompts_dir: Path | None = None, **variables: Any) -> str:
    """Render the template ``name`` with ``variables``; a missing variable raises."""
    return template(name, prompts_dir).render(**variables)
