"""Integration tests: the official ``openai`` client against FakeOpenAIServer.

These start a real HTTP server on 127.0.0.1 (no client mocking).
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes.fixtures import fake_llm  # noqa: F401 - pytest fixture
from tests.fakes.openai_server import (
    CutStream,
    Drop,
    Error,
    FakeOpenAIServer,
    Hang,
    Malformed,
    Reply,
)

pytestmark = pytest.mark.integration

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}
]


def make_client(srv: FakeOpenAIServer, timeout: float = 2.0) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=srv.base_url, api_key="sk-test-secret", max_retries=0, timeout=timeout
    )


def test_normal_reply(fake_llm: FakeOpenAIServer) -> None:  # noqa: F811
    fake_llm.enqueue(Reply("Paris is the capital."))
    completion = make_client(fake_llm).chat.completions.create(model="gpt-test", messages=MESSAGES)

    assert completion.choices[0].message.content == "Paris is the capital."
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-test"
    assert completion.usage is not None
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_default_reply_when_queue_empty(fake_llm: FakeOpenAIServer) -> None:  # noqa: F811
    client = make_client(fake_llm)
    assert (
        client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
        == "OK"
    )
    fake_llm.default_reply = "fallback"
    assert (
        client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
        == "fallback"
    )


def test_streamed_reply_reassembles(fake_llm: FakeOpenAIServer) -> None:  # noqa: F811
    content = "Paris is the capital of France, see [1]."
    fake_llm.enqueue(Reply(content, chunk_delay=0.01))
    stream = make_client(fake_llm).chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 3
    assert "".join(pieces) == content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_rate_limit_error_exposes_retry_after(fake_llm: FakeOpenAIServer) -> None:  # noqa: F811
    fake_llm.enqueue(Error(429, "Slow down", headers={"Retry-After": "1"}))
    with pytest.raises(openai.RateLimitError) as exc_info:
        make_client(fake_llm).chat.completions.create(model="m", messages=MESSAGES)

    err = exc_info.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "1"
    assert err.body == {
        "message": "Slow down",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert fake_llm.requests_count == 1


def test_hang_triggers_client_timeout(fake_llm: FakeOpenAIServer) -> None:  # noqa: F811
    fake_llm.enqueue(Hang(5))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        make_client(fake_llm, timeout=0.3).chat.completions.create(model="m", messages=MESSAGES)
    assert time.monotonic() - started < 2


def test_malformed_json_raises_json_decode_error(fake_llm: FakeOpenAIServer) -> None:  # noqa: F811
    # openai 2.x calls response.json() on application/json bodies without wrapping:
    # the raw json.JSONDecodeError escapes (it is NOT an openai.APIError).
    fake_llm.enqueue(Malformed())
    with pytest.raises(json.JSONDecodeError):
        make_client(fake_llm).chat.completions.create(model="m", messages=MESSAGES)


def test_cut_stream_yields_first_chunks_then_raises(fake_llm: FakeOpenAIServer) -> None:  # noqa: F811
    # The truncated chunked body surfaces as httpx.RemoteProtocolError during
    # iteration: openai's Stream does not wrap mid-stream transport errors.
    fake_llm.enqueue(CutStream("one two three four five", after_chunks=2))
    stream = make_client(fake_llm).chat.completions.create(
        model="m", messages=MESSAGES, stream=True
    )

    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "one two"


def test_drop_raises_connection_error(fake_llm: FakeOpenAIServer) -> None:  # noqa: F811
    fake_llm.enqueue(Drop())
    with pytest.raises(openai.APIConnectionError) as exc_info:
        make_client(fake_llm).chat.completions.create(model="m", messages=MESSAGES)
    assert not isinstance(exc_info.value, openai.APITimeoutError)


def test_models_endpoint(fake_llm: FakeOpenAIServer) -> None:  # noqa: F811
    models = make_client(fake_llm).models.list()
    assert [m.id for m in models.data] == ["fake-model"]


def test_history_records_messages_and_redacts_auth(fake_llm: FakeOpenAIServer) -> None:  # noqa: F811
    fake_llm.enqueue(Error(500), Reply("fine"))
    client = make_client(fake_llm)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    client.chat.completions.create(model="m2", messages=MESSAGES, temperature=0)

    assert fake_llm.requests_count == 2
    first, second = fake_llm.history
    assert first.method == "POST" and first.path == "/v1/chat/completions"
    assert first.messages == MESSAGES
    assert second.body["model"] == "m2" and second.body["temperature"] == 0
    for request in fake_llm.history:
        assert request.headers["authorization"] == "Bearer <redacted>"
        assert "sk-test-secret" not in json.dumps(request.headers)


def test_context_manager_closes_quickly() -> None:
    with FakeOpenAIServer() as srv:
        srv.enqueue(Hang(10))
        with pytest.raises(openai.APITimeoutError):
            make_client(srv, timeout=0.2).chat.completions.create(model="m", messages=MESSAGES)
        started = time.monotonic()
    assert time.monotonic() - started < 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.base_url + "/models", timeout=0.5)
