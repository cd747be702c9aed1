"""What a conversation costs: a maximal chat request must not cost much more than a short one.

A client may send :data:`~service.chat.MAX_MESSAGES` messages of
:data:`~service.chat.MAX_MESSAGE_CHARS` characters each (about 400 KB, under the body cap);
the answer needs only the last few turns, so the work must not grow with the rest.
"""

from __future__ import annotations

import time

from service.answer import Answer
from service.chat import MAX_MESSAGE_CHARS, MAX_MESSAGES, ChatService, Message
from service.engine import Engine

MAX_RATIO = 3.0
REPEATS = 5
QUESTION = "Does DeepSeek-V3 beat GLM-130B and Mixtral on MMLU?"
FOLLOW_UP = "and how fast is it?"


def _cpu_seconds(chat: ChatService, messages: list[Message]) -> tuple[float, Answer]:
    """The fastest of a few runs, in CPU time of this process: other processes sharing the
    machine do not count, and the fastest run is the one least disturbed."""
    best, answer = float("inf"), None
    for _ in range(REPEATS):
        started = time.process_time()
        answer = chat.complete(messages)
        best = min(best, time.process_time() - started)
    assert answer is not None
    return best, answer


def test_a_maximal_conversation_costs_a_small_multiple_of_a_short_one(engine: Engine) -> None:
    chat = ChatService(engine)
    # Names and sentence ends in every message: the most work for the follow-up rewrite.
    long = ((QUESTION + " ") * (MAX_MESSAGE_CHARS // len(QUESTION) + 1))[:MAX_MESSAGE_CHARS]
    roles = ("user", "assistant")
    maximal = [Message(role=roles[i % 2], content=long) for i in range(MAX_MESSAGES - 1)]
    maximal.append(Message(role="user", content=FOLLOW_UP))
    short = [
        Message(role="user", content=QUESTION),
        Message(role="assistant", content="..."),
        Message(role="user", content=FOLLOW_UP),
    ]
    chat.complete(short)  # warm caches (stemmer, punkt) before measuring
    short_s, short_answer = _cpu_seconds(chat, short)
    maximal_s, maximal_answer = _cpu_seconds(chat, maximal)
    # The same question is answered, so the difference is the conversation's own cost.
    assert maximal_answer.standalone_question == short_answer.standalone_question
    assert "DeepSeek-V3" in (maximal_answer.standalone_question or "")
    ratio = maximal_s / short_s
    assert ratio <= MAX_RATIO, (
        f"{maximal_s * 1000:.0f} ms for {MAX_MESSAGES} messages vs {short_s * 1000:.0f} ms "
        f"for 3 ({ratio:.1f}x)"
    )
