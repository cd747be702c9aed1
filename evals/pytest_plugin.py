"""A pytest plugin for tests of your own documents: ``assert_answer(question, ...)``.

Enable it in your ``conftest.py`` and name what to answer from::

    pytest_plugins = ["evals.pytest_plugin"]

    pytest --citeqa-corpus docs/handbook      # a folder, ingested once (incremental)
    pytest --citeqa-collection handbook       # or a collection ingested before

(or ``citeqa_corpus`` / ``citeqa_collection`` in the ``[tool.pytest.ini_options]`` of your
``pyproject.toml``). The store and the rest come from the usual settings (``CITEQA_DATA_DIR``,
``CITEQA_CHROMA_URL``, ``CITEQA_GENERATOR``...). The engine is built once per session
(fixture ``citeqa_engine``); the ``assert_answer`` fixture asks it a question and fails with the
question, what was wrong, the answer and its citations::

    def test_refund_window(assert_answer):
        assert_answer("How long is the refund window?", contains="30 days", cites="refunds.md")

    def test_out_of_scope(assert_answer):
        assert_answer("Who won the 1998 World Cup?", refused=True)

``contains`` (one string or several) must each appear in the answer (case, spacing, dashes,
thousands separators and "x"/"times" forms aside: :func:`evals.metrics.fact_in_text`); ``cites``
names documents (by file, relative to the ingested folder, or by title) of which each must be
cited; ``refused`` says whether the engine must refuse. The answer is returned for further checks.
An example: ``docs/examples/test_my_documents.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from citeqa.config import Settings

if TYPE_CHECKING:
    from service.answering.answer import Answer
    from service.answering.engine import Engine


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("citeqa", "citeqa answers")
    group.addoption("--citeqa-corpus", help="folder to ingest and answer from")
    group.addoption("--citeqa-collection", help="collection to answer from")
    parser.addini("citeqa_corpus", "folder to ingest and answer from (relative to rootdir)")
    parser.addini("citeqa_collection", "collection to answer from")


def _option(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(f"--citeqa-{name}") or config.getini(f"citeqa_{name}")
    return str(value) if value else None


@pytest.fixture(scope="session")
def citeqa_engine(pytestconfig: pytest.Config) -> Iterator[Engine]:
    """The answer engine over ``--citeqa-corpus`` (ingested first) or ``--citeqa-collection``,
    built once per session; the embedded store is held for the session."""
    from citeqa.embedding import build_embedder
    from citeqa.errors import CiteqaError
    from citeqa.lock import hold_store
    from citeqa.store import connect, open_index
    from evals.corpus import collection_for, ingest_corpus
    from service.answering.engine import build_engine

    settings = Settings()
    corpus = _option(pytestconfig, "corpus")
    collection = _option(pytestconfig, "collection")
    if corpus is not None:
        folder = Path(corpus)
        if not folder.is_absolute():
            folder = pytestconfig.rootpath / folder
        collection = collection or collection_for(folder)
    if collection is not None:
        settings = settings.model_copy(update={"collection": collection})
    with hold_store(settings, "pytest"):
        embedder = build_embedder(settings)
        try:
            if corpus is not None:
                ingest_corpus(settings, folder, embedder=embedder, progress=False)
            index = open_index(connect(settings), settings.collection, embedder, create=False)
        except CiteqaError as exc:
            raise pytest.UsageError(f"citeqa: {exc.message}") from exc
        yield build_engine(settings, embedder=embedder, index=index)


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def check_answer(
    engine: Engine,
    question: str,
    contains: str | Sequence[str] | None = None,
    cites: str | Sequence[str] | None = None,
    refused: bool | None = None,
    top_k: int | None = None,
) -> Answer:
    """Ask ``question``; raise AssertionError naming every expectation the answer misses."""
    from evals.dataset import same_source
    from evals.metrics import fact_in_text
    from service.answering.citations import strip_markers

    answer = engine.ask(question, top_k=top_k)
    problems = []
    if refused is not None and answer.refused != refused:
        problems.append("expected a refusal" if refused else "expected an answer, got a refusal")
    text = strip_markers(answer.answer)
    for wanted in _as_list(contains):
        if answer.refused or not fact_in_text(wanted, text):
            problems.append(f"the answer does not contain {wanted!r}")
    for doc in _as_list(cites):
        if not any(
            same_source(c.source, doc) or c.title.casefold() == doc.casefold()
            for c in answer.citations
        ):
            problems.append(f"no citation of {doc!r}")
    if problems:
        raise AssertionError(describe_failure(question, problems, answer))
    return answer


def describe_failure(question: str, problems: Sequence[str], answer: Answer) -> str:
    from citeqa.layout import describe

    lines = [f"question: {question}", *(f"  - {p}" for p in problems), "answer:"]
    lines += [f"  {line}" for line in answer.answer.splitlines()] or ["  (empty)"]
    lines.append("citations:" if answer.citations else "citations: (none)")
    for c in answer.citations:
        place = describe(c.source, c.page, c.page_end, c.section, c.page_label)
        lines.append(f"  [{c.n}] {c.title}" + (f" ({place})" if place else "") + f": {c.quote}")
    return "\n".join(lines)


@pytest.fixture
def assert_answer(citeqa_engine: Engine) -> Callable[..., Answer]:
    """``assert_answer(question, contains=..., cites=..., refused=..., top_k=...)``."""
    return partial(check_answer, citeqa_engine)
