"""citeqa for llama-index users: a retriever and a query engine to plug into their pipelines.

* :class:`CiteqaRetriever` is a llama-index ``BaseRetriever`` over a citeqa collection: the
  hybrid search (dense chunks and sentences, BM25, names; :mod:`service.answering.retrieval`)
  as ``NodeWithScore`` s, each node a chunk with citeqa's provenance in its metadata (document
  id, title, source, page, section). It composes with stock llama-index parts: node
  postprocessors, ``RetrieverQueryEngine`` with the user's own LLM, fusion retrievers.
* :class:`CiteqaQueryEngine` is a llama-index query engine that answers with citeqa's own
  engine: the ``Response`` text is the validated answer (every sentence supported by the
  source its ``[n]`` marker cites, or a refusal), its ``source_nodes`` are the cited sources
  only, each with the quote it supports and that quote's page.

The retriever is built from a citeqa :class:`~service.answering.engine.Engine`
(:func:`~service.answering.engine.build_engine` opens one over a data dir), the query engine
from the retriever, as llama-index's ``RetrieverQueryEngine`` is; nothing here changes how
citeqa answers::

    engine = build_engine(Settings(data_dir="...", collection="..."))
    query_engine = CiteqaQueryEngine(CiteqaRetriever(engine, top_k=5))
    response = query_engine.query("How many activated parameters does DeepSeek-V3 have?")
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import Response
from llama_index.core.callbacks import CallbackManager
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from service.answering.answer import Answer
from service.answering.engine import Engine
from service.answering.question import Question
from service.answering.retrieval import Hit

# What an LLM reading the node sees besides its text (llama-index prints metadata above it);
# ids, offsets and the collection are for programs, and nothing of it is embedded again.
LLM_METADATA = ("title", "source", "page", "section")


def hit_node(hit: Hit, **extra: Any) -> NodeWithScore:
    """A retrieved chunk as a llama-index node: its text without the title line (the title is
    metadata), its chunk id as node id, citeqa's fused score, and its provenance
    (:meth:`Hit.where`) plus ``extra``."""
    metadata = {
        "doc_id": hit.doc_id,
        "title": hit.title,
        "url": hit.url or None,
        "collection": hit.collection,
        **hit.where(),
        **extra,
    }
    node = TextNode(
        id_=hit.chunk_id,
        text=hit.body,
        metadata=metadata,
        excluded_llm_metadata_keys=[k for k in metadata if k not in LLM_METADATA],
        excluded_embed_metadata_keys=list(metadata),
    )
    return NodeWithScore(node=node, score=hit.score)


class CiteqaRetriever(BaseRetriever):
    """The hybrid retriever of a citeqa engine, as a llama-index retriever: the ``top_k``
    best chunks of the engine's collection for a query (the engine's default when None)."""

    def __init__(
        self,
        engine: Engine,
        top_k: int | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        super().__init__(callback_manager=callback_manager)
        self.engine = engine
        self.top_k = engine.check_top_k(top_k)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [hit_node(hit) for hit in self.engine.search(query_bundle.query_str, self.top_k)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


class CiteqaQueryEngine(BaseQueryEngine):
    """citeqa's answering as a llama-index query engine, over the engine of ``retriever`` and
    its number of sources.

    ``query`` returns a ``Response`` whose text is citeqa's validated answer (the refusal text
    when the collection does not answer), whose ``source_nodes`` are the cited sources, one
    per citation, in the order of the answer (metadata: ``n`` the marker number, ``quote``
    the cited sentence and its ``page``/``section``, besides the chunk's provenance), and whose
    ``metadata`` holds ``refused``, ``generator``, ``answerability`` and ``citations`` (the
    JSON shape of ``/v1/ask``). ``retrieve`` returns the sources the answer was chosen from.
    """

    def __init__(self, retriever: CiteqaRetriever) -> None:
        super().__init__(callback_manager=retriever.callback_manager)
        self.retriever = retriever
        self.engine = retriever.engine

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}  # citeqa's prompts live in its own generator (prompts/)

    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """What the answer reads (:meth:`Engine.retrieve`): the retriever's ``top_k`` chunks,
        and for the extractive generator further passages of their documents."""
        asked = Question.parse(self.engine.check_question(query_bundle.query_str))
        return [hit_node(h) for h in self.engine.retrieve(asked, self.retriever.top_k).hits]

    def _query(self, query_bundle: QueryBundle) -> Response:
        return response_of(self.engine.ask(query_bundle.query_str, self.retriever.top_k))

    async def _aquery(self, query_bundle: QueryBundle) -> Response:
        return await asyncio.to_thread(self._query, query_bundle)


def response_of(answer: Answer) -> Response:
    """A citeqa answer as a llama-index ``Response`` (see :class:`CiteqaQueryEngine`)."""
    cited = []
    for citation in answer.citations:
        where = {
            key: getattr(citation, key) for key in ("page", "page_end", "page_label", "section")
        }
        cited.append(
            hit_node(
                answer.sources[citation.n - 1],
                n=citation.n,
                quote=citation.quote,
                start=citation.start,
                end=citation.end,
                **where,
            )
        )
    return Response(
        response=answer.answer,
        source_nodes=cited,
        metadata={
            "refused": answer.refused,
            "generator": answer.generator,
            "answerability": answer.answerability,
            "citations": [asdict(c) for c in answer.citations],
        },
    )
