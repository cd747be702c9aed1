"""The OpenAI-compatible chat API over real HTTP: the official openai client, raw SSE, follow-ups,
disconnects, keep-alives, errors; offline (extractive) and with an LLM (the fake OpenAI server).
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from citeqa.config import Settings
from citeqa.embedding import Embedder
from service.answering.answer import REFUSAL_TEXT, Draft
from service.answering.engine import Engine, build_engine
from service.answering.evidence import Evidence
from service.answering.extractive import ExtractiveGenerator
from service.api.app import create_app
from tests.fakes.fixtures import fake_llm  # noqa: F401 - pytest fixture
from tests.fakes.openai_server import CutStream, Error, FakeOpenAIServer, Reply
from tests.live_server import LiveServer

pytestmark = pytest.mark.integration

GOLD = "DeepSeek-V3 Technical Report"
FIRST = "How many parameters does DeepSeek-V3 have?"
FOLLOW_UP = "and how long did its training take?"
STANDALONE = "How long did DeepSeek-V3's training take?"
OFF_TOPIC = "How do I prepare a pizza margherita?"
KEEPALIVE_S = 0.2


# --------------------------------------------------------------------------- helpers


class Recording:
    """Wraps a generator: counts the pieces it streamed and notes when its stream was closed.

    ``first_delay`` and ``delay`` slow the stream down; ``repeat`` makes it long."""

    def __init__(
        self, inner: Any, first_delay: float = 0.0, delay: float = 0.0, repeat: int = 1
    ) -> None:
        self.inner, self.name, self.reads_further = inner, inner.name, inner.reads_further
        self.first_delay, self.delay, self.repeat = first_delay, delay, repeat
        self.pieces = 0
        self.closed = threading.Event()

    def generate(self, evidence: Evidence) -> Draft:
        draft: Draft = self.inner.generate(evidence)
        return draft

    def stream(self, evidence: Evidence) -> Iterator[str]:
        try:
            time.sleep(self.first_delay)
            for _ in range(self.repeat):
                for piece in self.inner.stream(evidence):
                    time.sleep(self.delay)
                    self.pieces += 1
                    yield piece
        finally:
            self.closed.set()

    def __getattr__(self, name: str) -> Any:  # condense, when the inner generator has it
        return getattr(self.inner, name)


def serve(engine: Engine) -> LiveServer:
    fast = engine.settings.model_copy(update={"sse_keepalive_s": KEEPALIVE_S})
    engine = dataclasses.replace(engine, settings=fast)
    return LiveServer(create_app(fast, engine_factory=lambda _: engine))


def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=60)


def sse_frames(response: httpx.Response) -> list[str]:
    """The raw frames of an event stream (split on the blank line that ends each)."""
    text = "".join(response.iter_text())
    assert text.endswith("\n\n"), text[-200:]
    return text[:-2].split("\n\n")


def data_of(frames: list[str]) -> list[Any]:
    """The data of each frame that has some, parsed ("[DONE]" kept as a string)."""
    out: list[Any] = []
    for frame in frames:
        lines = frame.split("\n")
        assert all(re.match(r"(data|event): |: ", line) for line in lines), frame
        data = [line[6:] for line in lines if line.startswith("data: ")]
        if data:
            out.append(data[0] if data[0] == "[DONE]" else json.loads(data[0]))
    return out


def chat_body(*contents: str, stream: bool = True, model: str = "citeqa") -> dict[str, Any]:
    roles = ("user", "assistant")
    messages = [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]
    return {"model": model, "messages": messages, "stream": stream}


def titles(citations: list[dict[str, Any]]) -> set[str]:
    return {c["title"] for c in citations}


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[LiveServer]:
    with serve(engine) as live:
        yield live


@pytest.fixture
def llm_engine(
    fake_llm: FakeOpenAIServer,  # noqa: F811
    corpus_settings: Settings,
    embedder: Embedder,
    engine: Engine,
) -> Engine:
    settings = corpus_settings.model_copy(
        update={"generator": "llm", "llm_base_url": fake_llm.base_url, "llm_max_attempts": 2}
    )
    return build_engine(settings, embedder=embedder, index=engine.index)


def cite(engine: Engine, question: str, needle: str) -> int:
    """The source number, for ``question``, of the first hit that contains ``needle``."""
    hits = engine.prepare(question).hits
    return next(n for n, hit in enumerate(hits, start=1) if needle in hit.text)


# --------------------------------------------------------------------------- offline


def test_models_are_listed(server: LiveServer) -> None:
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["citeqa"]
    assert client(server).models.retrieve("citeqa").id == "citeqa"


def test_non_stream_answer_with_citations(server: LiveServer) -> None:
    completion = client(server).chat.completions.create(
        model="citeqa", messages=[{"role": "user", "content": FIRST}]
    )
    message = completion.choices[0].message
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "stop"
    assert re.search(r"671B.*\[\d+\]", message.content or "")
    extra = completion.model_extra or {}
    assert GOLD in titles(extra["citations"])
    assert extra["refused"] is False
    assert extra["standalone_question"] == FIRST
    assert {"n", "doc_id", "title", "chunk_id", "quote", "start", "end", "url"} <= set(
        extra["citations"][0]
    )
    assert [s["n"] for s in extra["sources"]] == list(range(1, len(extra["sources"]) + 1))


def test_a_slip_in_a_name_is_searched_as_the_corpus_writes_it(server: LiveServer) -> None:
    """The stream's first chunk says what was searched for (the web page shows it)."""
    slipped = FIRST.replace("DeepSeek", "DeepSeeek")
    chunks = list(
        client(server).chat.completions.create(
            model="citeqa", messages=[{"role": "user", "content": slipped}], stream=True
        )
    )
    assert (chunks[0].model_extra or {})["standalone_question"] == FIRST
    assert GOLD in titles((chunks[-1].model_extra or {})["citations"])


def test_stream_with_the_openai_client(server: LiveServer) -> None:
    chunks = list(
        client(server).chat.completions.create(
            model="citeqa", messages=[{"role": "user", "content": FIRST}], stream=True
        )
    )
    first, last = chunks[0], chunks[-1]
    assert first.choices[0].delta.role == "assistant"
    assert (first.model_extra or {})["standalone_question"] == FIRST
    assert GOLD in {s["title"] for s in (first.model_extra or {})["sources"]}
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert re.search(r"671B.*\[\d+\]", content)
    assert last.choices[0].finish_reason == "stop"
    final = last.model_extra or {}
    assert GOLD in titles(final["citations"])
    assert final["refused"] is False
    assert final["answer"].split() == content.split()  # nothing dropped: same text


def test_follow_up_retrieves_the_paper_of_the_previous_turn(server: LiveServer) -> None:
    openai_client = client(server)
    first = openai_client.chat.completions.create(
        model="citeqa", messages=[{"role": "user", "content": FIRST}]
    )
    answer = first.choices[0].message.content or ""
    follow_up = openai_client.chat.completions.create(
        model="citeqa",
        messages=[
            {"role": "user", "content": FIRST},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": FOLLOW_UP},
        ],
    )
    extra = follow_up.model_extra or {}
    assert extra["standalone_question"] == STANDALONE
    assert GOLD in titles(extra["citations"])
    assert titles(extra["citations"]) == {GOLD}
    # the raw follow-up alone says nothing of which model: it answers from other papers too
    # (every training duration it finds); the rewrite is what keeps the answer to one paper
    alone = openai_client.chat.completions.create(
        model="citeqa", messages=[{"role": "user", "content": FOLLOW_UP}]
    )
    assert titles((alone.model_extra or {})["citations"]) - {GOLD}


def test_sse_framing_and_done(server: LiveServer) -> None:
    with httpx.stream(
        "POST", f"{server.url}/v1/chat/completions", json=chat_body(FIRST), timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        frames = sse_frames(response)
    events = data_of(frames)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "sources" in chunks[0] and "citations" not in chunks[0]
    assert [c["choices"][0]["finish_reason"] for c in chunks].count("stop") == 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert GOLD in titles(chunks[-1]["citations"])


def test_off_topic_question_is_refused(server: LiveServer) -> None:
    completion = client(server).chat.completions.create(
        model="citeqa", messages=[{"role": "user", "content": OFF_TOPIC}]
    )
    extra = completion.model_extra or {}
    assert extra["refused"] is True
    assert extra["citations"] == []
    assert (completion.choices[0].message.content or "").startswith(REFUSAL_TEXT)
    chunks = list(
        client(server).chat.completions.create(
            model="citeqa", messages=[{"role": "user", "content": OFF_TOPIC}], stream=True
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed.startswith(REFUSAL_TEXT)  # clients that read only the text see it too
    assert (chunks[-1].model_extra or {})["refused"] is True


def test_ask_stream_uses_the_same_event_design(server: LiveServer) -> None:
    body = {"question": FIRST, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/ask", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = [f for f in sse_frames(response) if not f.startswith(":")]
    names = [f.split("\n")[0] for f in frames]
    assert names[0] == "event: sources"
    assert names[-2] == "event: answer"
    assert frames[-1] == "data: [DONE]"
    assert set(names[1:-2]) == {"event: delta"}
    final = data_of([frames[-2]])[0]
    assert GOLD in titles(final["citations"])
    assert final["refused"] is False


@pytest.mark.parametrize("question", [FIRST, OFF_TOPIC])
def test_streamed_and_plain_ask_give_the_same_answer(server: LiveServer, question: str) -> None:
    """One answer path: the stream's ``answer`` event is the plain ``/v1/ask`` answer, with the
    same timings (by name), and its deltas joined are that answer's text."""
    url = f"{server.url}/v1/ask"
    plain = httpx.post(url, json={"question": question}, timeout=60).json()
    with httpx.stream("POST", url, json={"question": question, "stream": True}, timeout=60) as r:
        frames = [f for f in sse_frames(r) if not f.startswith(":")]
    deltas = [d["text"] for f, d in zip(frames, data_of(frames), strict=False) if "delta" in f]
    streamed = data_of([frames[-2]])[0]
    assert (
        set(streamed["timings_ms"]) == set(plain["timings_ms"]) == {"retrieve", "generate", "total"}
    )
    assert "".join(deltas) == streamed["answer"]
    del streamed["timings_ms"], plain["timings_ms"]
    assert streamed == plain


def test_errors_use_the_openai_envelope(server: LiveServer) -> None:
    openai_client = client(server)
    with pytest.raises(openai.NotFoundError) as not_found:
        openai_client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": FIRST}]
        )
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError) as last_role:
        openai_client.chat.completions.create(
            model="citeqa", messages=[{"role": "assistant", "content": "hi"}]
        )
    assert "last message" in last_role.value.message

    url = f"{server.url}/v1/chat/completions"
    too_many = chat_body(*["What is FastV?"] * 51, stream=False)
    too_long = chat_body("x" * 8001, stream=False)
    blank = chat_body("   ", stream=True)
    for body in (too_many, too_long, blank, {"model": "citeqa"}):
        response = httpx.post(url, json=body, timeout=30)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
    missing = httpx.get(f"{server.url}/v1/models/nope", timeout=30)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    native = httpx.post(f"{server.url}/v1/ask", json={"question": ""}, timeout=30)
    assert native.headers["content-type"] == "application/problem+json"  # unchanged elsewhere


def test_bearer_token_is_accepted_while_auth_is_off(server: LiveServer) -> None:
    headers = {"Authorization": "Bearer anything-at-all"}
    response = httpx.get(f"{server.url}/v1/models", headers=headers, timeout=30)
    assert response.status_code == 200


def test_keep_alive_comments_while_waiting(engine: Engine) -> None:
    slow = dataclasses.replace(engine, generator=Recording(ExtractiveGenerator(), first_delay=1.0))
    with (
        serve(slow) as live,
        httpx.stream(
            "POST", f"{live.url}/v1/chat/completions", json=chat_body(FIRST), timeout=60
        ) as response,
    ):
        frames = sse_frames(response)
    role = next(i for i, f in enumerate(frames) if '"role": "assistant"' in f)
    content = next(i for i, f in enumerate(frames) if re.search(r'"content": "[^"]', f))
    waiting = frames[role + 1 : content]  # the generator sleeps 1 s before its first piece
    assert waiting.count(": keep-alive") >= 3, frames[:content]
    assert data_of(frames)[-1] == "[DONE]"


def test_client_disconnect_stops_generation(engine: Engine) -> None:
    recording = Recording(ExtractiveGenerator(), delay=0.05, repeat=40)
    slow = dataclasses.replace(engine, generator=recording)
    with serve(slow) as live:
        with httpx.stream(
            "POST", f"{live.url}/v1/chat/completions", json=chat_body(FIRST), timeout=60
        ) as response:
            for line in response.iter_lines():
                if '"content": "' in line and '"role"' not in line:
                    break  # one content delta, then hang up
        assert recording.closed.wait(5), "the generator was not closed after the disconnect"
        stopped_at = recording.pieces
        time.sleep(0.5)
        assert recording.pieces == stopped_at  # nothing is generated any more
        assert stopped_at < 40 * 5  # far from the whole (40 repeats of the draft)


# --------------------------------------------------------------------------- with an LLM


def test_llm_stream_and_non_stream(llm_engine: Engine, fake_llm: FakeOpenAIServer) -> None:  # noqa: F811
    n = cite(llm_engine, FIRST, "671B")
    text = f"DeepSeek-V3 has 671B total parameters, with 37B activated for each token [{n}]."
    fake_llm.enqueue(Reply(text, chunk_delay=0.01), Reply(text))
    with serve(llm_engine) as live:
        chunks = list(
            client(live).chat.completions.create(
                model="citeqa", messages=[{"role": "user", "content": FIRST}], stream=True
            )
        )
        completion = client(live).chat.completions.create(
            model="citeqa", messages=[{"role": "user", "content": FIRST}]
        )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == text
    (sentence,) = [c for c in chunks if c.choices[0].delta.content]  # one validated sentence
    assert GOLD in titles((sentence.model_extra or {})["citations"])  # with its citations
    final = chunks[-1].model_extra or {}
    assert GOLD in titles(final["citations"]) and final["refused"] is False
    assert completion.choices[0].message.content == text
    assert GOLD in titles((completion.model_extra or {})["citations"])
    prompt = json.dumps(fake_llm.history[0].body)
    assert "671B" in prompt  # the sources went to the LLM


def test_llm_condenses_the_follow_up(llm_engine: Engine, fake_llm: FakeOpenAIServer) -> None:  # noqa: F811
    question = STANDALONE
    n = cite(llm_engine, question, "2.788M")
    text = f"DeepSeek-V3 requires only 2.788M H800 GPU hours for its full training [{n}]."
    fake_llm.enqueue(Reply(question), Reply(text))
    with serve(llm_engine) as live:
        chunks = list(
            client(live).chat.completions.create(
                model="citeqa",
                messages=[
                    {"role": "user", "content": FIRST},
                    {"role": "assistant", "content": "It has 671B parameters [1]."},
                    {"role": "user", "content": FOLLOW_UP},
                ],
                stream=True,
            )
        )
    assert (chunks[0].model_extra or {})["standalone_question"] == question
    assert GOLD in titles((chunks[-1].model_extra or {})["citations"])
    condense_prompt = json.dumps(fake_llm.history[0].body)
    assert FIRST in condense_prompt and FOLLOW_UP in condense_prompt


def test_llm_condense_failure_falls_back_to_the_offline_rewrite(
    llm_engine: Engine,
    fake_llm: FakeOpenAIServer,  # noqa: F811
) -> None:
    n = cite(llm_engine, STANDALONE, "2.788M")
    text = f"DeepSeek-V3 requires only 2.788M H800 GPU hours for its full training [{n}]."
    # the second 400 refuses the request sent again without stop/frequency_penalty
    fake_llm.enqueue(Error(400, "bad request"), Error(400, "bad request"), Reply(text))
    with serve(llm_engine) as live:
        completion = client(live).chat.completions.create(
            model="citeqa",
            messages=[
                {"role": "user", "content": FIRST},
                {"role": "assistant", "content": "It has 671B parameters [1]."},
                {"role": "user", "content": FOLLOW_UP},
            ],
        )
    assert (completion.model_extra or {})["standalone_question"] == STANDALONE
    assert completion.choices[0].message.content == text
    usage = completion.usage  # the answer's LLM call, as OpenAI reports it
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_llm_error_mid_stream_is_an_error_event(
    llm_engine: Engine,
    fake_llm: FakeOpenAIServer,  # noqa: F811
) -> None:
    fake_llm.enqueue(CutStream("DeepSeek-V3 has 671B total parameters [1] and", after_chunks=3))
    with (
        serve(llm_engine) as live,
        httpx.stream(
            "POST", f"{live.url}/v1/chat/completions", json=chat_body(FIRST), timeout=60
        ) as response,
    ):
        events = data_of(sse_frames(response))
    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert error["type"] == "server_error" and "interrupted" in error["message"]
    deltas = [e["choices"][0]["delta"].get("content") for e in events[1:-2]]
    assert "".join(d or "" for d in deltas) == ""  # the unfinished sentence was never shown
    assert fake_llm.requests_count == 1  # never retried once tokens were sent

    fake_llm.enqueue(CutStream("DeepSeek-V3 has 671B total parameters [1] and", after_chunks=3))
    with serve(llm_engine) as live:
        stream = client(live).chat.completions.create(
            model="citeqa", messages=[{"role": "user", "content": FIRST}], stream=True
        )
        with pytest.raises(openai.APIError, match="interrupted"):
            list(stream)


def test_llm_stream_is_abandoned_on_disconnect(
    llm_engine: Engine,
    fake_llm: FakeOpenAIServer,  # noqa: F811
) -> None:
    words = " ".join(f"word{i}" for i in range(200))
    fake_llm.enqueue(Reply(words, chunk_delay=0.05))  # 10 s if read to the end
    recording = Recording(llm_engine.generator)
    with serve(dataclasses.replace(llm_engine, generator=recording)) as live:
        with httpx.stream(
            "POST", f"{live.url}/v1/chat/completions", json=chat_body(FIRST), timeout=60
        ) as response:
            for line in response.iter_lines():
                if '"role"' in line:  # words without a sentence end: no content is ever sent
                    break
        assert recording.closed.wait(5), "the LLM stream was not closed after the disconnect"
        stopped_at = recording.pieces
        time.sleep(0.5)
        assert recording.pieces == stopped_at < 100


def test_a_stream_cut_by_the_deadline_ends_with_what_was_validated(
    llm_engine: Engine,
    fake_llm: FakeOpenAIServer,  # noqa: F811
) -> None:
    """A slow model cut by llm_deadline_s: the answer is the sentences validated before the
    cut, streamed and final alike, with a 200 and a stop chunk, not an error."""
    n = cite(llm_engine, FIRST, "671B")
    first = f"DeepSeek-V3 has 671B total parameters [{n}]."
    rambling = " ".join(["and it goes on"] * 60)
    fake_llm.enqueue(Reply(f"{first} It has {rambling}", chunk_delay=0.1))  # ~25 s in all
    settings = llm_engine.settings.model_copy(update={"llm_deadline_s": 3.0})
    slow = build_engine(settings, embedder=llm_engine.embedder, index=llm_engine.index)
    started = time.monotonic()
    with (
        serve(slow) as live,
        httpx.stream(
            "POST", f"{live.url}/v1/chat/completions", json=chat_body(FIRST), timeout=60
        ) as response,
    ):
        assert response.status_code == 200
        events = data_of(sse_frames(response))
    assert time.monotonic() - started < 15
    assert events[-1] == "[DONE]" and "error" not in events[-2]
    final = events[-2]
    assert final["choices"][0]["finish_reason"] == "stop" and final["refused"] is False
    streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[1:-1])
    assert streamed == final["answer"] == first
    assert final["dropped"][-1]["reason"] == "cut off by the time limit"


def test_a_stream_cut_by_max_tokens_drops_its_unfinished_sentence(
    llm_engine: Engine,
    fake_llm: FakeOpenAIServer,  # noqa: F811
) -> None:
    """finish_reason "length": the half sentence at the end (its words and number are in the
    source, so it would pass) is not shown; the sentences before it are the answer."""
    n = cite(llm_engine, FIRST, "671B")
    first = f"DeepSeek-V3 has 671B total parameters [{n}]."
    fake_llm.enqueue(Reply(f"{first} DeepSeek-V3 has 671B", finish_reason="length"))
    with serve(llm_engine) as live:
        chunks = list(
            client(live).chat.completions.create(
                model="citeqa", messages=[{"role": "user", "content": FIRST}], stream=True
            )
        )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    final = chunks[-1].model_extra or {}
    assert streamed == final["answer"] == first
    assert final["dropped"] == [
        {"sentence": "DeepSeek-V3 has 671B", "reason": "cut off by the token limit"}
    ]
