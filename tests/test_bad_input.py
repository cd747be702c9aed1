"""Bad input on every route gets a clear 4xx in the route's error shape (real HTTP).

problem+json on the native API, the OpenAI error envelope under /v1/chat and /v1/models; the
question length limit comes from the settings alone (the API model, the search query and the
web page's text box all follow ``max_question_chars``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from citeqa.errors import InputError
from service.answering.engine import Engine
from service.answering.limits import MAX_MESSAGES
from service.api.app import create_app
from tests.live_server import LiveServer

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}
LIMIT = 300  # a max_question_chars unlike the default 2000 and the page's old 8000


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[LiveServer]:
    settings = engine.settings.model_copy(update={"max_question_chars": LIMIT})
    limited = dataclasses.replace(engine, settings=settings)
    with LiveServer(create_app(settings, engine_factory=lambda _: limited)) as live:
        yield live


UNPARSABLE = [
    pytest.param(b'{"question": "caf\xe9?"}', JSON, "not valid UTF-8", id="latin-1"),
    pytest.param(b"[" * 10_000 + b"]" * 10_000, JSON, "nested too deeply", id="nested"),
    pytest.param(b'{"question": ' + b"9" * 5000 + b"}", JSON, "digits", id="5000-digit-int"),
    pytest.param(
        b'{"question": "What is FastV?"}', {}, "Content-Type: application/json", id="no-ct"
    ),
    pytest.param(b"{not json", JSON, "JSON", id="not-json"),
]


@pytest.mark.parametrize(("body", "headers", "fragment"), UNPARSABLE)
def test_an_unparsable_body_is_a_422_problem_on_the_native_api(
    server: LiveServer, body: bytes, headers: dict[str, str], fragment: str
) -> None:
    response = httpx.post(f"{server.url}/v1/ask", content=body, headers=headers, timeout=30)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and fragment in problem["detail"]


@pytest.mark.parametrize(("body", "headers", "fragment"), UNPARSABLE)
def test_an_unparsable_body_is_a_422_openai_error_under_v1_chat(
    server: LiveServer, body: bytes, headers: dict[str, str], fragment: str
) -> None:
    url = f"{server.url}/v1/chat/completions"
    response = httpx.post(url, content=body, headers=headers, timeout=30)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and fragment in error["message"]


def test_http_errors_use_the_route_shape(server: LiveServer) -> None:
    missing = httpx.get(f"{server.url}/no/such/page", timeout=30)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong_method = httpx.delete(f"{server.url}/v1/models", timeout=30)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_head_of_the_public_page_and_assets(server: LiveServer) -> None:
    for path in ("/", "/static/app.js"):
        response = httpx.head(f"{server.url}{path}", timeout=30)
        assert response.status_code == 200, path
        assert response.content == b""


def ask(server: LiveServer, question: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/ask", json={"question": question}, timeout=60)


def test_the_question_limit_is_the_setting_on_every_route(server: LiveServer) -> None:
    over = "What is FastV? " + "x" * LIMIT
    for response in (
        ask(server, over),
        httpx.post(f"{server.url}/v1/ask", json={"question": over, "stream": True}, timeout=30),
        httpx.get(f"{server.url}/v1/search", params={"q": over}, timeout=30),
    ):
        assert response.status_code == 422
        assert f"the limit is {LIMIT}" in response.json()["detail"]
    for stream in (False, True):  # a stream is refused before it starts, not by an event
        chat = {
            "model": "citeqa",
            "stream": stream,
            "messages": [{"role": "user", "content": over}],
        }
        response = httpx.post(f"{server.url}/v1/chat/completions", json=chat, timeout=30)
        assert response.status_code == 422
        assert f"the limit is {LIMIT}" in response.json()["error"]["message"]
    assert ask(server, "What is FastV?".ljust(LIMIT, "?")).status_code == 200


def test_a_question_longer_than_2000_passes_when_the_setting_allows(engine: Engine) -> None:
    settings = engine.settings.model_copy(update={"max_question_chars": 3000})
    roomy = dataclasses.replace(engine, settings=settings)
    with LiveServer(create_app(settings, engine_factory=lambda _: roomy)) as live:
        long = "What is FastV? " + "fast " * 500  # 2515 characters
        response = httpx.get(f"{live.url}/v1/search", params={"q": long, "k": 1}, timeout=60)
    assert response.status_code == 200, response.text


def test_the_page_text_box_takes_what_the_server_takes(server: LiveServer) -> None:
    page = httpx.get(server.url, timeout=30).text
    box: Any = re.search(r'<textarea id="question"[^>]*maxlength="(\d+)"', page)
    assert box is not None and int(box.group(1)) == LIMIT
    form: Any = re.search(r'<form id="ask-form"[^>]*data-max-messages="(\d+)"', page)
    assert form is not None and int(form.group(1)) == MAX_MESSAGES  # the conversation's limit


# --------------------------------------------------------------------------- lone surrogates
# JSON's "\ud800" escape decodes to a Python str the tokenizer cannot take (it raised TypeError:
# a 500, or a 200 stream ending in server_error). Every route refuses it as bad input.

LONE = "What is \\ud800 GLM-130B?"  # the JSON escape, as a client sends it


def chat_raw(*contents: str, stream: bool = False) -> bytes:
    roles = ["user", "assistant"] * len(contents)
    messages = ",".join(
        f'{{"role":"{role}","content":"{text}"}}'
        for role, text in zip(roles, contents, strict=False)
    )
    return f'{{"model":"citeqa","stream":{str(stream).lower()},"messages":[{messages}]}}'.encode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(chat_raw(LONE), id="question"),
        pytest.param(chat_raw(LONE, stream=True), id="question-streamed"),
        pytest.param(chat_raw(LONE, "GLM-130B is a model [1].", "How big is it?"), id="history"),
        pytest.param(
            chat_raw("What is GLM-130B?", "It is [1] \\udfff.", "How big?", stream=True),
            id="assistant-turn-streamed",
        ),
        pytest.param(
            b'{"model":"citeqa","messages":[{"role":"user","content":'
            b'[{"type":"text","text":"What is \\ud800?"}]}]}',
            id="content-part",
        ),
    ],
)
def test_a_lone_surrogate_in_any_chat_message_is_a_422(server: LiveServer, body: bytes) -> None:
    url = f"{server.url}/v1/chat/completions"
    response = httpx.post(url, content=body, headers=JSON, timeout=30)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "lone surrogate" in error["message"]


def test_a_lone_surrogate_in_a_question_is_a_422_on_the_native_api(server: LiveServer) -> None:
    body = f'{{"question":"{LONE}"}}'.encode()
    response = httpx.post(f"{server.url}/v1/ask", content=body, headers=JSON, timeout=30)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_the_engine_refuses_a_lone_surrogate_from_any_caller(engine: Engine) -> None:
    """The CLI passes argv to the engine: undecodable bytes arrive as surrogate escapes."""
    for call in (engine.ask, engine.search, engine.check_question):
        with pytest.raises(InputError, match="lone surrogate"):
            call("What is \udcff GLM-130B?")
