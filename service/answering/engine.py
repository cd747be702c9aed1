"""The query engine: retrieval, evidence, generation, citation validation, refusal.

The API, the CLI, the chat endpoint and the eval harness all call :class:`Engine`; nothing else
answers questions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from citeqa.config import Settings
from citeqa.embedding import Embedder, build_embedder
from citeqa.errors import InputError
from citeqa.store import Index, connect, open_index
from service.answering.answer import Answer, Draft, refusal_text
from service.answering.citations import Validated, validate
from service.answering.evidence import Evidence, EvidenceBuilder
from service.answering.extractive import ExtractiveGenerator
from service.answering.question import Question
from service.answering.retrieval import MAX_TOP_K, Hit, HybridRetriever

log = logging.getLogger(__name__)


class Generator(Protocol):
    """Writes a draft answer from the evidence; citations are validated afterwards.

    A generator whose ``judges_answerability`` is true (an LLM with the prompt's cannot-answer
    rule) decides by itself whether the sources answer the question: then only
    retrieval-level signals refuse before it is called
    (:func:`service.answering.refusal.answerable`).
    """

    name: str

    def generate(self, evidence: Evidence) -> Draft: ...

    def stream(self, evidence: Evidence) -> Iterator[str]:
        """The draft as text deltas; the caller validates the joined text with ``finish``."""
        ...


def check_text(text: str, what: str) -> str:
    """``text`` when the tokenizer can take it, else :class:`InputError`: the one check of every
    text a client sends (question, search query, each chat message). JSON's ``\\ud800`` escape
    and Python strings allow a lone surrogate; UTF-8 and the tokenizer do not."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{what} is not valid Unicode text: a lone surrogate at character {exc.start}"
        ) from None
    return text


@dataclass
class Engine:
    settings: Settings
    index: Index
    embedder: Embedder
    retriever: HybridRetriever
    evidence: EvidenceBuilder
    generator: Generator

    def check_top_k(self, top_k: int | None) -> int:
        k = self.settings.top_k if top_k is None else top_k
        if not 1 <= k <= MAX_TOP_K:
            raise InputError(f"top_k must be between 1 and {MAX_TOP_K}, got {k}")
        return k

    def check_question(self, question: str) -> str:
        question = check_text(question, "the question").strip()
        if not question:
            raise InputError("the question is empty")
        if len(question) > self.settings.max_question_chars:
            raise InputError(
                f"the question has {len(question)} characters; the limit is "
                f"{self.settings.max_question_chars}"
            )
        return question

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        asked = Question.parse(self.check_question(query))
        return self.retriever.retrieve_hits(asked, self.check_top_k(k)).hits

    def prepare(self, question: str, top_k: int | None = None) -> Evidence:
        """Retrieve and score evidence for ``question`` (validated, then analysed once into the
        :class:`Question` every later step reads); no generation."""
        asked = Question.parse(self.check_question(question))
        retrieval = self.retriever.retrieve_hits(asked, self.check_top_k(top_k))
        return self.evidence.build(retrieval)

    def ask(self, question: str, top_k: int | None = None) -> Answer:
        started = time.perf_counter()
        evidence = self.prepare(question, top_k)
        retrieved = time.perf_counter()
        answer = self.answer(evidence.question.text, evidence)
        done = time.perf_counter()
        answer.timings_ms = {
            "retrieve": (retrieved - started) * 1000,
            "generate": (done - retrieved) * 1000,
            "total": (done - started) * 1000,
        }
        return answer

    def answer(self, question: str, evidence: Evidence) -> Answer:
        """The answer from prepared evidence: generated and validated, or a refusal."""
        if not evidence.answerable:
            return self.refusal(question, evidence)
        return self.finish(question, evidence, self.generator.generate(evidence))

    def finish(self, question: str, evidence: Evidence, draft: Draft) -> Answer:
        """Validate a generator's draft into the final answer (or a refusal)."""
        hits = evidence.hits
        if draft.refused:
            refused = self.refusal(question, evidence)
            refused.usage = draft.usage  # the LLM was paid for its refusal too
            return refused
        return self.finish_validated(question, evidence, validate(draft.text, hits), draft.usage)

    def finish_validated(
        self,
        question: str,
        evidence: Evidence,
        checked: Validated,
        usage: dict[str, int] | None = None,
    ) -> Answer:
        """The final answer from validated text: a refusal when no sentence kept a citation."""
        if not checked.citations:
            refusal = self.refusal(question, evidence)
            refusal.dropped = checked.dropped
            refusal.usage = usage or {}
            return refusal
        return Answer(
            question=question,
            answer=checked.text,
            refused=False,
            citations=checked.citations,
            sources=evidence.hits,
            timings_ms={},
            generator=self.generator.name,
            answerability=evidence.answerability,
            dropped=checked.dropped,
            usage=usage or {},
        )

    def refusal(self, question: str, evidence: Evidence) -> Answer:
        return Answer(
            question=question,
            answer=refusal_text(evidence.hits, unknown=evidence.unknown_names),
            refused=True,
            citations=[],
            sources=evidence.hits,
            timings_ms={},
            generator=self.generator.name,
            answerability=evidence.answerability,
        )


def build_generator(settings: Settings) -> Generator:
    if settings.use_llm:
        from service.answering.llm import LLMGenerator

        return LLMGenerator.from_settings(settings)
    return ExtractiveGenerator()


def build_engine(
    settings: Settings,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
    index: Index | None = None,
) -> Engine:
    """Open the store and wire the engine; callers may inject the embedder or generator."""
    embedder = embedder or build_embedder(settings)
    if index is None:
        index = open_index(connect(settings), settings.collection, embedder, create=True)
    retriever = HybridRetriever(index, embedder, settings.candidate_k, settings.rrf_k)
    generator = generator or build_generator(settings)
    return Engine(
        settings=settings,
        index=index,
        embedder=embedder,
        retriever=retriever,
        evidence=EvidenceBuilder(
            index, retriever, getattr(generator, "judges_answerability", False)
        ),
        generator=generator,
    )
