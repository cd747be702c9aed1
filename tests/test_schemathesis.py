"""Property-based API tests: schemathesis against the app's own OpenAPI schema.

Every operation of the schema is exercised on a live uvicorn over the session's corpus store
(extractive generator, no LLM), with valid and invalid inputs, checking that no response is a
server error and that responses conform to the documented schemas. Bounded to
``MAX_EXAMPLES`` cases per operation so the module stays under two minutes on an idle machine.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from starlette.routing import Route

from citeqa.config import Settings
from service.answering.engine import Engine
from service.api.app import create_app
from tests.live_server import LiveServer

MAX_EXAMPLES = 25
# Pages for browsers, not API operations: FastAPI's docs and the web page with its assets.
PAGES = {
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/",
    "/static/{name}",
    "/static/docs/{name}",
}
CASES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def live_api(
    engine: Engine, corpus_settings: Settings, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    with LiveServer(create_app(corpus_settings, engine_factory=lambda _: engine)) as server:
        yield server
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # how much was tried, for the record
        cases = ", ".join(f"{op}: {n}" for op, n in sorted(CASES.items()))
        print(f"\nschemathesis: {sum(CASES.values())} cases ({cases})")


# The schema of the app itself (create_app builds no engine: that happens in the lifespan);
# the live server (live_api) answers the cases. (schemathesis.pytest.from_fixture would load it from
# the server, but it breaks on pytest 9.2: it reads the private Node._nodeid.)
schema = schemathesis.openapi.from_dict(create_app(Settings(generator="extractive")).openapi())


@schema.hook("map_body")
def reach_the_chat_core(context: schemathesis.HookContext, body: Any) -> Any:
    """Most generated chat bodies name an unknown model or end with a non-user turn (404, 422);
    fix those two fields, when they have the right type, so that cases reach the answering."""
    if context.operation is None or context.operation.path != "/v1/chat/completions":
        return body
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        body["model"] = "citeqa"
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            messages[-1]["role"] = "user"
    return body


@pytest.mark.integration
@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every run: a failure in CI reproduces locally
    database=None,  # no .hypothesis/ folder in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, live_api: LiveServer) -> None:
    CASES[f"{case.method} {case.path}"] += 1
    case.call_and_validate(
        base_url=live_api.url,
        checks=[not_a_server_error, response_schema_conformance],
        timeout=60,
    )


QUESTION = "What is DeepNorm?"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/ask", {"question": QUESTION}),
        ("/v1/ask", {"question": QUESTION, "stream": True}),
        (
            "/v1/chat/completions",
            {"model": "citeqa", "messages": [{"role": "user", "content": QUESTION}]},
        ),
        (
            "/v1/chat/completions",
            {
                "model": "citeqa",
                "messages": [{"role": "user", "content": QUESTION}],
                "stream": True,
            },
        ),
    ],
    ids=["ask", "ask-stream", "chat", "chat-stream"],
)
def test_answers_conform_to_the_schema(live_api: LiveServer, path: str, body: Any) -> None:
    """Answers proper, JSON and streamed, which random cases reach only by luck."""
    case = schema[path]["POST"].Case(body=body, media_type="application/json")
    response = case.call_and_validate(
        base_url=live_api.url,
        checks=[not_a_server_error, response_schema_conformance],
        timeout=60,
    )
    assert response.status_code == 200


@pytest.mark.integration
def test_every_route_is_in_the_schema(engine: Engine, corpus_settings: Settings) -> None:
    """So that 'every operation of the schema' above means every endpoint of the app."""
    app = create_app(corpus_settings, engine_factory=lambda _: engine)
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    served = {
        (method, re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))  # {id:path} is {id} there
        for route in _routes(app.routes)
        if isinstance(route, Route) and route.path not in PAGES
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert served <= documented
    routers = {("POST", "/v1/ask"), ("POST", "/v1/chat/completions"), ("GET", "/v1/documents")}
    assert {*routers, ("GET", "/metrics")} <= served


def _routes(routes: list[Any]) -> Iterator[Any]:
    """Every route, those of included routers too (FastAPI keeps an included router as one
    entry of ``app.routes``, holding its ``original_router``)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        yield from _routes(included.routes) if included is not None else [route]
