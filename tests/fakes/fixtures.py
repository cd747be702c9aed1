"""Pytest fixtures for the fake OpenAI server.

Import ``fake_llm`` into a test module or ``conftest.py`` to use it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .openai_server import FakeOpenAIServer


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAIServer]:
    """A started :class:`FakeOpenAIServer`, closed after the test."""
    server = FakeOpenAIServer()
    try:
        yield server
    finally:
        server.close()
