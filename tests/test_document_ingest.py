"""A folder of real documents through the real ingest into a real embedded Chroma: chunks know
their pages and sections, sentence offsets are exact, citations and search hits say where.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import docx
import pytest

from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.layout import describe
from citeqa.store import get_all
from cli.main import main
from ingest.readers import read_folder
from ingest.run import ingest_paths
from service.answering.citations import validate
from service.answering.engine import Engine, build_engine
from service.api.ask import SearchResponse

DATA = Path(__file__).parent / "data" / "r-vignettes"
OOP = "sandwich-sandwich-OOP.pdf"
# Page 7 of the PDF, in section 4.2; the second sentence runs from page 1 onto page 2.
ON_PAGE_7 = "As for 1, the model matrix X can easily be accessed via the model.matrix() method."
ACROSS_PAGES = (
    "The most important of these is a method for extracting the empirical estimating "
    "functions—based on this a wide variety of meat fillings for sandwiches is provided."
)


def _write_docx(path: Path) -> None:
    document = docx.Document()
    document.add_heading("Pond survey", level=1)
    document.add_paragraph("Forty ponds were sampled in spring.")
    document.add_heading("Priors", level=2)
    document.add_paragraph("The salamander prior is a half-normal with scale two.")
    buffer = io.BytesIO()
    document.save(buffer)
    path.write_bytes(buffer.getvalue())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("documents")
    for name in (OOP, "rstan-stanfit-objects.html"):
        shutil.copy(DATA / name, root / name)
    (root / "field").mkdir()
    _write_docx(root / "field" / "survey.docx")
    return root


@pytest.fixture(scope="module")
def store(folder: Path, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Settings:
    settings = Settings(data_dir=tmp_path_factory.mktemp("store"), generator="extractive")
    [summary] = ingest_paths(settings, [folder], embedder=embedder)
    assert summary.added == 3 and not summary.skipped
    return settings


@pytest.fixture(scope="module")
def documents(store: Settings, embedder: Embedder) -> Engine:
    return build_engine(store, embedder=embedder)


def _cite(engine: Engine, sentence: str) -> dict[str, object]:
    """The citation of ``sentence`` (verbatim, as the extractive generator quotes) among the
    hits retrieved for it."""
    hits = engine.search(sentence, 5)
    validated = validate(sentence, hits)
    assert validated.citations, validated.dropped
    citation = validated.citations[0]
    assert citation.quote == sentence
    return vars(citation)


def test_a_sentence_of_page_7_is_cited_with_page_7_its_section_and_file(
    documents: Engine,
) -> None:
    citation = _cite(documents, ON_PAGE_7)
    assert citation["page"] == 7 and citation["page_end"] is None
    assert citation["section"] == "4. Covariance matrix estimators > 4.2. The meat"
    assert citation["source"] == OOP
    place = describe(*(citation[k] for k in ("source", "page", "page_end", "section")))  # type: ignore[arg-type]
    assert place == f"{OOP}, p. 7 · 4. Covariance matrix estimators > 4.2. The meat"


def test_cli_search_shows_file_page_and_section(
    store: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CITEQA_DATA_DIR", str(store.data_dir))
    assert main(["search", ON_PAGE_7, "-k", "1"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert f"({OOP}, p. " in first and "4.2. The meat)" in first


def test_a_quote_across_a_page_break_has_page_and_page_end(
    documents: Engine,
) -> None:
    citation = _cite(documents, ACROSS_PAGES)
    assert (citation["page"], citation["page_end"]) == (1, 2)
    assert citation["section"] == "1. Introduction"


def test_chunks_record_pages_and_sections_and_sentence_offsets_are_exact(
    documents: Engine, folder: Path
) -> None:
    engine = documents
    texts = {d.doc_id: d.get_content() for d in read_folder(folder).documents}
    index = engine.retriever.index
    chunks = get_all(index.chunks, ["metadatas"])
    pdf_chunks = [m for m in chunks.metadatas if m and m["doc_id"] == f"file:{OOP}"]
    assert pdf_chunks and all(1 <= m["page_start"] <= m["page_end"] <= 16 for m in pdf_chunks)
    assert len({m["page_start"] for m in pdf_chunks}) >= 12  # chunks all through the paper
    sections = {m.get("section") for m in pdf_chunks}
    assert "5. Illustrations > 5.1. Count data regression" in sections
    sentences = get_all(index.sentences, ["documents", "metadatas"])
    for text, meta in zip(sentences.documents, sentences.metadatas, strict=True):
        assert meta is not None
        assert texts[str(meta["doc_id"])][int(meta["start"]) : int(meta["end"])] == text
    html = [m for m in chunks.metadatas if m and m["doc_id"] == "file:rstan-stanfit-objects.html"]
    assert all("page_start" not in m for m in html)  # HTML has no pages
    assert any(m.get("section") == "Posterior draws > extract()" for m in html)
    for meta in pdf_chunks:  # a chunk's page map starts at its own first page
        assert json.loads(str(meta["page_map"]))[0][1] == meta["page_start"]


def test_search_hits_carry_page_section_and_source(documents: Engine) -> None:
    engine = documents
    hits = engine.search("salamander prior half-normal scale", 3)
    docx_hit = next(h for h in hits if h.doc_id == "file:field/survey.docx")
    public = SearchResponse.model_validate(
        {"query": "q", "hits": [dict(docx_hit.public(), n=1)]}
    ).model_dump()["hits"][0]
    assert public["section"] == "Pond survey > Priors"
    assert public["source"] == "field/survey.docx" and public["page"] is None
    code = engine.search("list_of_draws extract(fit) print names", 5)
    html_hit = next(h for h in code if h.doc_id == "file:rstan-stanfit-objects.html")
    assert "list_of_draws <- extract(fit)" in html_hit.body
    pdf_hit = engine.search(ON_PAGE_7, 1)[0].public()
    assert pdf_hit["source"] == OOP
    assert pdf_hit["page"] <= 7 <= (pdf_hit["page_end"] or pdf_hit["page"])
