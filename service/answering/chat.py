"""The chat service: a stateless conversation in, a cited answer out, whole or streamed.

The OpenAI-compatible endpoint (:mod:`service.api.chat`), the web page (through that endpoint)
and ``citeqa chat`` all answer through :class:`ChatService`. A turn:

1. the last user message becomes a standalone question: the generator's ``condense`` (the LLM
   and ``prompts/condense.md``) when it has one, else the offline rewrite of
   :mod:`service.answering.followup`; a first question is used as it is;
2. the engine retrieves evidence for the standalone question;
3. the generator writes (or streams) a draft and the engine validates its citations.

:meth:`ChatService.stream` yields, in order: :class:`Started` (the standalone question and the
retrieved sources, known before generation starts), :class:`Delta` (validated answer text, each
sentence once it is complete and checked against its sources, with the citations it added),
:class:`Finished` (the validated :class:`~service.answering.answer.Answer`). The draft goes through
:class:`~service.answering.citations.Validator` as it is written, so the deltas joined are exactly
the
finished answer's text. When the answer ends refused, nothing was validated and one delta carries
the refusal text before :class:`Finished`, so a client that reads only the text still learns
that the corpus has no answer. An empty delta (:data:`PROGRESS`) says that the draft went on
without completing a sentence: a consumer sends nothing for it but can stop there. A stream cut
by the LLM deadline or max tokens after it started ends cleanly with the sentences validated so
far (an unfinished last sentence is dropped).

Nothing here keeps state between turns: the caller sends the whole conversation each time.
"""

from __future__ import annotations

import logging
import textwrap
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TypedDict

from citeqa.errors import (
    CiteqaError,
    ClientGoneError,
    InputError,
    LLMCutOffError,
    LLMError,
    LLMTimeoutError,
)
from service.answering.answer import Answer, Citation
from service.answering.citations import Validator
from service.answering.engine import Engine, check_text
from service.answering.evidence import Evidence
from service.answering.followup import standalone_question
from service.answering.retrieval import Hit

log = logging.getLogger(__name__)

MAX_MESSAGES = 50
MAX_MESSAGE_CHARS = 8000


class Message(TypedDict):
    role: str
    content: str


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


ChatEvent = Started | Delta | Finished


def check_conversation(messages: Sequence[Message]) -> None:
    """The limits of a conversation (the API's request model enforces the same ones)."""
    if not messages:
        raise InputError("messages: at least one message is needed")
    if len(messages) > MAX_MESSAGES:
        raise InputError(f"messages: at most {MAX_MESSAGES} messages, got {len(messages)}")
    for i, message in enumerate(messages):
        check_text(message["content"], f"messages.{i}.content")
        if len(message["content"]) > MAX_MESSAGE_CHARS:
            raise InputError(f"messages.{i}.content: at most {MAX_MESSAGE_CHARS} characters")
    if messages[-1]["role"] != "user":
        raise InputError("messages: the last message must have the role 'user'")


@dataclass
class ChatService:
    engine: Engine

    def standalone_question(self, messages: Sequence[Message]) -> str:
        """The last user message, rewritten with the conversation's subject when needed."""
        check_conversation(messages)
        question = self.engine.check_question(messages[-1]["content"])
        history = list(messages[:-1])
        if not any(m["role"] == "user" for m in history):
            return question
        rewritten = self._condense(history, question) or standalone_question(messages)
        if len(rewritten) > self.engine.settings.max_question_chars:
            return question
        return rewritten.strip() or question

    def _condense(self, history: list[Message], question: str) -> str | None:
        condense: Callable[[list[Message], str], str] | None = getattr(
            self.engine.generator, "condense", None
        )
        if condense is None:
            return None
        try:
            return condense(history, question)
        except LLMError as exc:  # the offline rewrite still gives retrieval the subject
            log.warning("condensing the follow-up failed (%s); using the offline rewrite", exc)
            return None

    def complete(
        self,
        messages: Sequence[Message],
        top_k: int | None = None,
        gone: Callable[[], bool] = lambda: False,
    ) -> Answer:
        """The whole answer to the conversation's last question. ``gone`` says whether the
        client has disconnected: checked before retrieval and before generation (the LLM call
        that costs most), it raises :class:`ClientGoneError` so abandoned work stops there."""
        started = time.perf_counter()
        question = self.standalone_question(messages)
        _stop_if(gone)
        condensed = time.perf_counter()
        evidence = self.engine.prepare(question, top_k)
        _stop_if(gone)
        retrieved = time.perf_counter()
        answer = self.engine.answer(question, evidence)
        done = time.perf_counter()
        answer.standalone_question = question
        answer.timings_ms = _timings(started, condensed, retrieved, done)
        return answer

    def stream(
        self, messages: Sequence[Message], top_k: int | None = None
    ) -> Generator[ChatEvent, None, None]:
        """The answer as events (see the module docstring). Closing the iterator early closes
        the generator's stream too (an LLM stream stops reading from the endpoint)."""
        started = time.perf_counter()
        question = self.standalone_question(messages)
        condensed = time.perf_counter()
        evidence = self.engine.prepare(question, top_k)
        retrieved = time.perf_counter()
        yield Started(question, evidence.hits)
        if evidence.answerable:
            validator = Validator(evidence.hits)
            yield from self._validated(evidence, validator)
            answer = self.engine.finish_validated(question, evidence, validator.result())
        else:
            answer = self.engine.refusal(question, evidence)
        if answer.refused:
            yield Delta(answer.answer)
        done = time.perf_counter()
        answer.standalone_question = question
        answer.timings_ms = _timings(started, condensed, retrieved, done)
        yield Finished(answer)

    def _validated(self, evidence: Evidence, validator: Validator) -> Iterator[Delta]:
        """The generator's stream through ``validator``: only validated sentences come out.
        A stream cut by the LLM deadline after it started ends with what was validated."""
        pieces = self.engine.generator.stream(evidence)
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


def _timings(started: float, condensed: float, retrieved: float, done: float) -> dict[str, float]:
    return {
        "condense": (condensed - started) * 1000,
        "retrieve": (retrieved - condensed) * 1000,
        "generate": (done - retrieved) * 1000,
        "total": (done - started) * 1000,
    }


def _stop_if(gone: Callable[[], bool]) -> None:
    if gone():
        raise ClientGoneError("the client disconnected; the answer was abandoned")


def assistant_turn(answer: Answer) -> str:
    """The text a client keeps as the assistant's turn: the answer and, when it cites any, the
    numbered list of the cited titles, which lets a later "the second paper" be resolved."""
    titles = {c.n: c.title for c in answer.citations}
    if not titles:
        return answer.answer
    listed = "\n".join(f"[{n}] {title}" for n, title in sorted(titles.items()))
    return f"{answer.answer}\n\nSources:\n{listed}"


# --------------------------------------------------------------------------- terminal chat

PROMPT = "> "
QUIT = frozenset({"/quit", "/exit", ":q"})


def run_terminal_chat(
    chat: ChatService,
    lines: Iterable[str],
    out: IO[str],
    err: IO[str],
    prompt: bool = True,
) -> int:
    """``citeqa chat``: read questions from ``lines``, stream each answer to ``out`` with its
    numbered sources under it; ``/quit`` or the end of input stops. Errors are one line on
    ``err`` and the conversation goes on."""
    messages: list[Message] = []
    _show_prompt(out, prompt)
    for line in lines:
        question = line.strip()
        if question in QUIT:
            break
        if question:
            turn = [*messages, Message(role="user", content=question)]
            answer = _answer_in_terminal(chat, turn, out, err)
            if answer is not None:
                reply = Message(role="assistant", content=assistant_turn(answer))
                messages = [*turn, reply][-(MAX_MESSAGES - 1) :]
        _show_prompt(out, prompt)
    return 0


def _answer_in_terminal(
    chat: ChatService, messages: list[Message], out: IO[str], err: IO[str]
) -> Answer | None:
    try:
        for event in chat.stream(messages):
            if isinstance(event, Started) and event.standalone_question != messages[-1]["content"]:
                out.write(f"(searching for: {event.standalone_question})\n")
            elif isinstance(event, Delta):
                out.write(event.text)
                out.flush()
            elif isinstance(event, Finished):
                _print_sources(event.answer, out)
                return event.answer
    except CiteqaError as exc:
        out.write("\n")
        err.write(f"citeqa: error: {exc.message}\n")
        err.flush()
    return None


def _print_sources(answer: Answer, out: IO[str]) -> None:
    out.write("\n\n")
    if answer.refused:
        return
    for citation in answer.citations:
        link = f" <{citation.url}>" if citation.url else ""
        out.write(f"[{citation.n}] {citation.title}{link}\n")
        out.write(textwrap.indent(textwrap.fill(f"\u201c{citation.quote}\u201d", 92), "    "))
        out.write("\n")
    out.write("\n")
    out.flush()


def _show_prompt(out: IO[str], prompt: bool) -> None:
    if prompt:
        out.write(PROMPT)
        out.flush()
