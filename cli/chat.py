"""``citeqa chat``: a conversation in the terminal, each answer streamed from the engine's one
answer path (:meth:`service.answering.engine.Engine.run`) with its numbered sources under it."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import IO

from citeqa.errors import CiteqaError
from service.answering.answer import Answer
from service.answering.conversation import Message
from service.answering.engine import Delta, Engine, Finished, Started
from service.answering.limits import MAX_MESSAGES

PROMPT = "> "
QUIT = frozenset({"/quit", "/exit", ":q"})


def assistant_turn(answer: Answer) -> str:
    """The text kept as the assistant's turn: the answer and, when it cites any, the numbered
    list of the cited titles, which lets a later "the second paper" be resolved."""
    titles = {c.n: c.title for c in answer.citations}
    if not titles:
        return answer.answer
    listed = "\n".join(f"[{n}] {title}" for n, title in sorted(titles.items()))
    return f"{answer.answer}\n\nSources:\n{listed}"


def run_terminal_chat(
    engine: Engine,
    lines: Iterable[str],
    out: IO[str],
    err: IO[str],
    prompt: bool = True,
) -> int:
    """Read questions from ``lines``, stream each answer to ``out`` with its numbered sources
    under it; ``/quit`` or the end of input stops. Errors are one line on ``err`` and the
    conversation goes on."""
    messages: list[Message] = []
    _show_prompt(out, prompt)
    for line in lines:
        question = line.strip()
        if question in QUIT:
            break
        if question:
            turn = [*messages, Message(role="user", content=question)]
            answer = _answer_in_terminal(engine, turn, out, err)
            if answer is not None:
                reply = Message(role="assistant", content=assistant_turn(answer))
                messages = [*turn, reply][-(MAX_MESSAGES - 1) :]
        _show_prompt(out, prompt)
    return 0


def _answer_in_terminal(
    engine: Engine, messages: list[Message], out: IO[str], err: IO[str]
) -> Answer | None:
    question = messages[-1]["content"]
    try:
        for event in engine.run(question, history=messages[:-1], stream=True):
            if isinstance(event, Started) and event.standalone_question != question:
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
