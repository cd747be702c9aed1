"""Documents that disagree with the corpus: the answer shows both statements, each cited, and
every citation says where its document came from.

A folder of notes is ingested next to the bundled corpus (a real ingest into a copy of the
session store); the notes state other values than the papers for facts the papers state.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from citeqa.config import Settings
from citeqa.embedding import Embedder
from service.answering.answer import Answer
from service.answering.engine import Engine, build_engine
from service.answering.extractive import SOURCES_DIFFER
from service.api.app import create_app
from tests.live_server import LiveServer

pytestmark = pytest.mark.integration

NOTES = {
    "appliances/kettle.md": "# Zephyr kettle manual\n\n"
    "DeepSeek-V3 has 5 parameters according to the Zephyr kettle manual.\n",
    "misc/notes.md": "# Assorted notes\n\nGLM-130B has 3 parameters according to the notes.\n",
    "misc/agree.md": "# Agreeing notes\n\nDeepNet scales Transformers up to 1,000 layers.\n",
}
DEEPSEEK_PAPER = "DeepSeek-V3 Technical Report"


@pytest.fixture(scope="module")
def planted(
    corpus_settings: Settings, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory
) -> Engine:
    from ingest.run import ingest_paths

    root = tmp_path_factory.mktemp("planted")
    store = shutil.copytree(corpus_settings.data_dir, root / "store")
    notes = root / "notes"
    for relative, text in NOTES.items():
        (notes / relative).parent.mkdir(parents=True, exist_ok=True)
        (notes / relative).write_text(text)
    settings = Settings(data_dir=store, generator="extractive")
    ingest_paths(settings, [notes], embedder=embedder)
    return build_engine(settings, embedder=embedder)


@pytest.fixture(scope="module")
def server(planted: Engine) -> Iterator[LiveServer]:
    app = create_app(planted.settings, engine_factory=lambda _: planted)
    with LiveServer(app) as live:
        yield live


def _cited_sources(answer: Answer) -> dict[str, str]:
    return {c.source: c.quote for c in answer.citations}


@pytest.mark.parametrize(
    ("question", "planted_source", "planted_value", "paper_value"),
    [
        (
            "How many parameters does DeepSeek-V3 have?",
            "appliances/kettle.md",
            "5 parameters",
            "671B total parameters",
        ),
        (
            "How many parameters does GLM-130B have?",
            "misc/notes.md",
            "3 parameters",
            "130 billion parameters",
        ),
    ],
)
def test_sources_that_disagree_are_both_shown_and_cited(
    planted: Engine, question: str, planted_source: str, planted_value: str, paper_value: str
) -> None:
    answer = planted.ask(question)
    assert not answer.refused
    assert planted_value in answer.answer and paper_value in answer.answer
    assert SOURCES_DIFFER.strip() in answer.answer
    cited = _cited_sources(answer)
    assert planted_value in cited[planted_source]
    assert paper_value in cited["ml_papers.txt"]


def test_a_document_that_agrees_is_no_disagreement(planted: Engine) -> None:
    answer = planted.ask("How many layers does DeepNet scale Transformers to?")
    assert "1,000 layers" in answer.answer
    assert SOURCES_DIFFER.strip() not in answer.answer


def test_the_corpus_alone_shows_no_disagreement(engine: Engine) -> None:
    answer = engine.ask("How many parameters does DeepSeek-V3 have?")
    assert "671B" in answer.answer
    assert SOURCES_DIFFER.strip() not in answer.answer


def test_every_citation_of_v1_ask_carries_its_provenance(
    server: LiveServer, planted: Engine
) -> None:
    body = {"question": "How many parameters does DeepSeek-V3 have?"}
    reply = httpx.post(f"{server.url}/v1/ask", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    citations = reply.json()["citations"]
    assert {c["source"] for c in citations} == {"appliances/kettle.md", "ml_papers.txt"}
    assert {c["collection"] for c in citations} == {planted.settings.collection}
    titles = {c["source"]: c["title"] for c in citations}
    assert titles["ml_papers.txt"] == DEEPSEEK_PAPER
