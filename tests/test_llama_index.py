"""citeqa from llama-index (service.answering.llama_index), through llama-index's public API,
on the real ingested bundled corpus: a retriever and a query engine others plug in."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from llama_index.core.base.response.schema import Response
from llama_index.core.llms import MockLLM
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import MetadataMode, QueryBundle
from llama_index.core.tools import QueryEngineTool

from service.answering.engine import Engine
from service.answering.llama_index import CiteqaQueryEngine, CiteqaRetriever

FACT = "How many activated parameters per token does DeepSeek-V3 have?"
OFF_TOPIC = "What is the capital of Australia?"
PROVENANCE = {"doc_id", "title", "source", "url", "page", "page_end", "page_label", "section"}


def test_the_retriever_returns_citeqa_chunks_with_their_provenance(engine: Engine) -> None:
    retriever = CiteqaRetriever(engine, top_k=5)
    assert isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve(FACT)
    hits = engine.search(FACT, 5)
    assert [n.node.node_id for n in nodes] == [h.chunk_id for h in hits]
    assert [n.score for n in nodes] == [h.score for h in hits]
    for node, hit in zip(nodes, hits, strict=True):
        assert set(node.node.metadata) >= PROVENANCE
        assert node.node.metadata["doc_id"] == hit.doc_id
        assert node.node.metadata["source"] == hit.source
        assert node.node.get_content() == hit.body
    assert nodes[0].node.metadata["title"] == "DeepSeek-V3 Technical Report"
    again = asyncio.run(retriever.aretrieve(QueryBundle(FACT)))
    assert [n.node.node_id for n in again] == [n.node.node_id for n in nodes]


def test_the_retriever_plugs_into_a_stock_query_engine_with_a_postprocessor(
    engine: Engine,
) -> None:
    """RetrieverQueryEngine with a node postprocessor and llama-index's MockLLM (it answers
    with the prompt it is given, so the response shows what the LLM would have read)."""
    retriever = CiteqaRetriever(engine, top_k=5)
    scores = [n.score for n in retriever.retrieve(FACT)]
    cutoff = sorted(scores, reverse=True)[2]  # keeps the three best (and any tie)
    query_engine = RetrieverQueryEngine.from_args(
        retriever,
        llm=MockLLM(),
        node_postprocessors=[SimilarityPostprocessor(similarity_cutoff=cutoff)],
        response_mode="simple_summarize",
    )
    response = query_engine.query(FACT)
    kept = response.source_nodes
    assert 3 <= len(kept) < 5 and all(n.score is not None and n.score >= cutoff for n in kept)
    prompt = str(response)
    top = kept[0].node
    assert top.get_content() in prompt
    # the LLM reads each chunk's title, source and page, not the program-facing ids
    assert f"title: {top.metadata['title']}" in top.get_content(MetadataMode.LLM)
    assert f"title: {top.metadata['title']}" in prompt
    assert top.metadata["doc_id"] not in prompt


def test_the_query_engine_returns_the_validated_answer_with_its_cited_sources(
    engine: Engine,
) -> None:
    query_engine = CiteqaQueryEngine(CiteqaRetriever(engine))
    response = query_engine.query(FACT)
    answer = engine.ask(FACT)
    assert isinstance(response, Response)
    assert response.response == answer.answer and "37B" in str(response)
    assert response.metadata is not None and response.metadata["refused"] is False
    assert [n.node.node_id for n in response.source_nodes] == [c.chunk_id for c in answer.citations]
    for node, citation in zip(response.source_nodes, answer.citations, strict=True):
        meta = node.node.metadata
        assert meta["n"] == citation.n and meta["quote"] == citation.quote
        assert citation.quote in node.node.get_content()
        assert (meta["title"], meta["source"], meta["page"]) == (
            citation.title,
            citation.source,
            citation.page,
        )
    assert response.metadata["citations"][0]["title"] == "DeepSeek-V3 Technical Report"
    # the query engine's retrieve is what the answer read (its sources)
    retrieved = query_engine.retrieve(QueryBundle(FACT))
    assert [n.node.node_id for n in retrieved] == [h.chunk_id for h in answer.sources]


def test_the_query_engine_refuses_what_the_collection_does_not_answer(engine: Engine) -> None:
    response = asyncio.run(CiteqaQueryEngine(CiteqaRetriever(engine)).aquery(OFF_TOPIC))
    assert response.metadata is not None and response.metadata["refused"] is True
    assert response.source_nodes == [] and response.metadata["citations"] == []
    assert str(response).startswith("The corpus does not contain an answer")


def test_the_query_engine_serves_as_an_agent_tool(engine: Engine) -> None:
    tool = QueryEngineTool.from_defaults(
        query_engine=CiteqaQueryEngine(CiteqaRetriever(engine, top_k=3)),
        name="papers",
        description="Answers questions about the ingested papers, with citations.",
    )
    output = tool.call(input=FACT)
    assert isinstance(output.raw_output, Response)
    assert output.content == output.raw_output.response and "37B" in output.content
    assert output.raw_output.source_nodes


def test_nothing_of_citeqa_imports_the_chroma_vector_store_integration() -> None:
    """llama-index-vector-stores-chroma is in the bench extra only (bench/baseline.py): the
    service, the CLI, ingest, evals and the llama-index adapter run without it."""
    modules = [
        "cli.main",
        "service.api.app",
        "service.answering.engine",
        "service.answering.llama_index",
        "ingest.run",
        "evals.cli",
    ]
    code = (
        f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.startswith('llama_index.vector_stores')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"
