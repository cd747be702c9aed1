"""The query engine: the one answer path.

:meth:`Engine.run` is the only place that answers a question: it checks the input, condenses a
follow-up into a standalone question (a conversation's last turn), retrieves evidence, decides
whether to refuse, generates, validates the citations and times each stage. It yields events:

* :class:`Started`: the standalone question and the retrieved sources, known before
  generation starts;
* :class:`Delta`: validated answer text with the citations it added. Streamed
  (``stream=True``), each sentence once it is complete and checked against its sources
  (:class:`~service.answering.citations.Validator`), so the deltas joined are exactly the
  finished answer's text; an empty delta (:data:`PROGRESS`) says the draft went on without
  completing a sentence (a consumer sends nothing for it but can stop there). Not streamed, one
  delta with the whole validated text. A refusal is one delta with the refusal text, so a
  client that reads only the text still learns that the corpus has no answer;
* :class:`Finished`: the validated :class:`~service.answering.answer.Answer`, with its timings.

The plain callers (``/v1/ask``, non-streamed chat completions, ``citeqa ask``, the eval
harness) collect the events with :meth:`Engine.ask`; the streaming ones (streamed ``/v1/ask``
and chat completions, the web page through them, ``citeqa chat``) send them as they come.
Closing the iterator early closes the generator's stream too (an LLM stream stops reading from
the endpoint). A stream cut by the LLM deadline or max tokens after it started ends cleanly with
the sentences validated so far (an unfinished last sentence is dropped).
"""

from __future__ import annotations

import logging
import time
from collections import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from citeqa.config import Settings
from citeqa.embedding import Embedder, build_embedder
from citeqa.errors import ClientGoneError, LLMCutOffError, LLMTimeoutError
from citeqa.store import Index, connect, open_index
from service.answering.answer import Answer, Citation, Draft, refusal_text
from service.answering.citations import Validated, Validator, validate
from service.answering.conversation import Message, standalone_question
from service.answering.evidence import Evidence, EvidenceBuilder
from service.answering.extractive import ExtractiveGenerator
from service.answering.lexical import build_lexical
from service.answering.limits import check_conversation, check_question, check_top_k
from service.answering.overview import MAX_LISTED
from service.answering.question import Question
from service.answering.retrieval import Hit, HybridRetriever, Retrieval

log = logging.getLogger(__name__)

# An answer reads the passages of its top documents that rank among the next FURTHER_RANKS
# times top_k too (service.answering.retrieval.with_further_passages; BENCHMARKS/README).
FURTHER_RANKS = 2


class Generator(Protocol):
    """Writes a draft answer from the evidence; citations are validated afterwards.

    A generator whose ``judges_answerability`` is true (an LLM with the prompt's cannot-answer
    rule) decides by itself whether the sources answer the question: then only
    retrieval-level signals refuse before it is called
    (:func:`service.answering.refusal.answerable`).
    """

    name: str
    # Whether it reads passages beyond the caller's ``top_k`` (:data:`FURTHER_RANKS`): a
    # generator that quotes the sentences it chooses (extractive) pays nothing for more of
    # them; an LLM reads every source of its prompt (tokens, time, its context's size).
    reads_further: bool

    def generate(self, evidence: Evidence) -> Draft: ...

    def stream(self, evidence: Evidence) -> Iterator[str]:
        """The draft as text deltas; the engine validates them as they come."""
        ...


@dataclass(frozen=True)
class Started:
    """Retrieval is done: what will be answered, from which sources."""

    standalone_question: str
    sources: list[Hit]


@dataclass(frozen=True)
class Delta:
    """Validated answer text (and the citations it added), or the refusal text."""

    text: str
    citations: tuple[Citation, ...] = ()


PROGRESS = Delta("")  # the draft went on without completing a sentence: nothing to show yet


@dataclass(frozen=True)
class Finished:
    """The validated answer; ``answer.standalone_question`` is set."""

    answer: Answer


Event = Started | Delta | Finished


def _never() -> bool:
    return False


@dataclass
class Engine:
    settings: Settings
    index: Index
    embedder: Embedder
    retriever: HybridRetriever
    evidence: EvidenceBuilder
    generator: Generator

    def check_top_k(self, top_k: int | None) -> int:
        return check_top_k(top_k, self.settings)

    def check_question(self, question: str) -> str:
        return check_question(question, self.settings)

    def check(
        self, question: str, top_k: int | None = None, history: Sequence[Message] | None = None
    ) -> tuple[str, int | None]:
        """The input of :meth:`run` checked against :mod:`service.answering.limits`: the
        question (stripped) and ``top_k`` (None stays None: the default, see :meth:`prepare`),
        or :class:`InputError`.
        :meth:`run` checks for every caller; a route also checks before its stream starts, so
        that bad input is a 4xx, not an error event."""
        if history is not None:
            check_conversation([*history, Message(role="user", content=question)])
        self.check_top_k(top_k)
        return self.check_question(question), top_k

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        return self.searched(query, k).hits

    def searched(self, query: str, k: int | None = None) -> Retrieval:
        """The retrieval of a search: its hits and its steps' timings. A search ranks and
        answers nothing: its hits' cosines, which only an answer reads, are not completed."""
        asked = Question.parse(self.check_question(query))
        return self._retrieve(asked, k, cosines=False)

    def prepare(self, question: str, top_k: int | None = None) -> Evidence:
        """Retrieve and score evidence for ``question`` (validated, then analysed once into the
        :class:`Question` every later step reads); no generation.

        ``top_k``: the most sources; by default the settings' ``top_k`` for a fact question,
        and for a list question ("which papers discuss X?") as many documents as match, up to
        :data:`~service.answering.overview.MAX_LISTED`. A caller's own ``top_k`` bounds
        both."""
        asked = Question.parse(self.check_question(question))
        return self.evidence.build(self.retrieve(asked, top_k))

    def retrieve(self, asked: Question, top_k: int | None = None) -> Retrieval:
        """What an answer to ``asked`` reads: the retrieval :meth:`prepare` scores (the
        calibration and the eval tools read the same)."""
        further = FURTHER_RANKS * self.check_top_k(top_k) if self.generator.reads_further else 0
        return self._retrieve(asked, top_k, further)

    def _retrieve(
        self, asked: Question, top_k: int | None, further: int = 0, cosines: bool = True
    ) -> Retrieval:
        k = self.check_top_k(top_k)
        listed = MAX_LISTED if top_k is None else k
        return self.retriever.retrieve_hits(
            asked, k, listed=listed, further=further, cosines=cosines
        )

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        history: Sequence[Message] | None = None,
        gone: Callable[[], bool] = _never,
    ) -> Answer:
        """The whole answer: the events of :meth:`run`, collected."""
        for event in self.run(question, top_k, history, gone=gone):
            if isinstance(event, Finished):
                return event.answer
        raise AssertionError("unreachable: run always ends with Finished")

    def run(
        self,
        question: str,
        top_k: int | None = None,
        history: Sequence[Message] | None = None,
        stream: bool = False,
        gone: Callable[[], bool] = _never,
    ) -> abc.Generator[Event, None, None]:
        """The answer to ``question`` as events (see the module docstring).

        ``history``: the conversation before ``question`` (a chat), whose subject a follow-up
        borrows; its timings then include ``condense``. ``stream``: generate sentence by sentence
        (the generator's ``stream``) instead of in one call (its ``generate``). ``gone`` says
        whether the client has disconnected: checked before retrieval and before generation
        (the LLM call that costs most), it raises :class:`ClientGoneError` so abandoned work
        stops there.
        """
        started = time.perf_counter()
        asked, top_k = self.check(question, top_k, history)
        if history is not None:
            asked = standalone_question(
                self.generator, asked, history, self.settings.max_question_chars
            )
        condensed = time.perf_counter()
        _stop_if(gone)
        evidence = self.prepare(asked, top_k)
        retrieved = time.perf_counter()
        asked = evidence.question.text  # a slip in a name read as the collection writes it
        yield Started(asked, evidence.hits)
        _stop_if(gone)
        if not evidence.answerable:
            answer = self.refusal(asked, evidence)
        elif stream:
            answer = yield from self._streamed(asked, evidence)
        else:
            answer = self.finish(asked, evidence, self.generator.generate(evidence))
        if answer.refused or not stream:
            yield Delta(answer.answer, tuple(answer.citations))
        done = time.perf_counter()
        answer.standalone_question = asked
        answer.timings_ms = {
            "retrieve": (retrieved - condensed) * 1000,
            "generate": (done - retrieved) * 1000,
            "total": (done - started) * 1000,
        }
        if history is not None:
            answer.timings_ms = {"condense": (condensed - started) * 1000, **answer.timings_ms}
        yield Finished(answer)

    def _streamed(self, question: str, evidence: Evidence) -> abc.Generator[Delta, None, Answer]:
        """The generator's stream through a validator: only validated sentences come out. A
        stream cut by the LLM deadline or max tokens after it started ends with what was
        validated."""
        validator = Validator(evidence.hits)
        pieces = self.generator.stream(evidence)
        received = False
        cut: str | None = None
        try:
            for text in pieces:
                received = received or bool(text)
                validated = validator.feed(text)
                for piece in validated:
                    yield Delta(piece.text, tuple(piece.citations))
                if not validated:
                    yield PROGRESS  # lets the consumer notice a client that left
        except (LLMTimeoutError, LLMCutOffError) as exc:
            if not received:
                raise
            log.warning("%s; answering with the sentences validated so far", exc)
            limit = "time" if isinstance(exc, LLMTimeoutError) else "token"
            cut = f"cut off by the {limit} limit"
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()
        for piece in validator.close(cut):
            yield Delta(piece.text, tuple(piece.citations))
        return self.finish_validated(question, evidence, validator.result())

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
            read_as=evidence.read_as,
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
            read_as=evidence.read_as,
        )


def _stop_if(gone: Callable[[], bool]) -> None:
    if gone():
        raise ClientGoneError("the client disconnected; the answer was abandoned")


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
    retriever = HybridRetriever(
        index,
        embedder,
        settings.candidate_k,
        settings.rrf_k,
        lexical=build_lexical(settings, index),
    )
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
