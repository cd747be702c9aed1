"""The REST API through real HTTP (uvicorn on 127.0.0.1), over the ingested corpus."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.errors import StoreUnavailableError
from service.answering.engine import Engine, build_engine
from service.api.app import create_app

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(app: object) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def base_url(corpus_settings: Settings, engine: Engine) -> Iterator[str]:
    with running(create_app(corpus_settings, engine_factory=lambda _: engine)) as url:
        yield url


def test_ask_answers_with_a_cited_fact(base_url: str) -> None:
    question = "How many activated parameters per token does DeepSeek-V3 have?"
    response = httpx.post(f"{base_url}/v1/ask", json={"question": question}, timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["refused"] is False and "37B" in body["answer"]
    citation = body["citations"][0]
    assert citation["title"] == "DeepSeek-V3 Technical Report"
    assert citation["url"] == "https://github.com/deepseek-ai/DeepSeek-V3"
    assert "37B" in citation["quote"] and citation["end"] > citation["start"]
    assert set(body["timings_ms"]) == {"retrieve", "generate", "total"}
    assert [s["n"] for s in body["sources"]] == list(range(1, len(body["sources"]) + 1))
    assert body["usage"] == {}  # no LLM, no tokens
    assert body["read_as"] == {}  # every name as the corpus writes it


def test_ask_reads_a_slip_in_a_name_as_the_name_the_corpus_writes(base_url: str) -> None:
    question = "How many activated parameters per token does DeepSeek-V3 have?"
    slipped = question.replace("DeepSeek", "DeepSeeek")
    body = httpx.post(f"{base_url}/v1/ask", json={"question": slipped}, timeout=30).json()
    assert body["read_as"] == {"DeepSeeek-V3": "DeepSeek-V3"}
    assert body["refused"] is False and "37B" in body["answer"]


def test_ask_refuses_off_topic(base_url: str) -> None:
    body = httpx.post(
        f"{base_url}/v1/ask", json={"question": "What is the capital of Australia?"}, timeout=30
    ).json()
    assert body["refused"] is True and body["citations"] == []


def test_search_returns_ranked_hits(base_url: str) -> None:
    body = httpx.get(f"{base_url}/v1/search", params={"q": "GLM-130B", "k": 3}, timeout=30).json()
    assert len(body["hits"]) == 3
    assert body["hits"][0]["title"].startswith("GLM-130B")
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_search_says_how_long_each_step_took(base_url: str) -> None:
    """Server-Timing: the lexical search and the embedding from the start, the two dense
    queries after the embedding, none longer than the whole; no "vectors" step (the cosines
    of hits outside the dense results, which only an answer reads)."""
    response = httpx.get(f"{base_url}/v1/search", params={"q": "GLM-130B"}, timeout=30)
    steps = {}
    for part in response.headers["server-timing"].split(", "):
        step, ms = part.split(";dur=")
        steps[step] = float(ms)
    assert set(steps) == {
        "lexical",
        "embed",
        "dense",
        "sentence",
        "hits",
        "names",
        "total",
    }
    assert all(0 <= ms <= steps["total"] for ms in steps.values())
    assert steps["embed"] + max(steps["dense"], steps["sentence"]) <= steps["total"] + 0.2


def test_search_returns_k_hits_for_a_list_question(base_url: str) -> None:
    """A query that asks for documents ("which papers ...") is ranked by document, and still
    returns the ``k`` hits asked for, not the longer list an answer would name."""
    params = {"q": "Which papers are about DeepSeek models?", "k": 2}
    body = httpx.get(f"{base_url}/v1/search", params=params, timeout=30).json()
    assert len(body["hits"]) == 2


def test_health_and_readiness(base_url: str) -> None:
    assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{base_url}/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


@pytest.mark.parametrize(
    ("request_kwargs", "fragment"),
    [
        ({"json": {"question": ""}}, "question"),
        ({"json": {"question": "x" * 2001}}, "the limit is 2000"),
        ({"json": {"question": "hi", "top_k": 0}}, "top_k"),
        ({"json": {"question": "hi", "top_k": 51}}, "top_k"),
        ({"json": {}}, "question: Field required"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "JSON"),
    ],
)
def test_bad_input_is_a_422_with_a_message(
    base_url: str, request_kwargs: dict, fragment: str
) -> None:  # type: ignore[type-arg]
    response = httpx.post(f"{base_url}/v1/ask", timeout=30, **request_kwargs)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert fragment in response.json()["detail"]


def test_search_needs_a_query(base_url: str) -> None:
    response = httpx.get(f"{base_url}/v1/search", params={"k": 3})
    assert response.status_code == 422 and "q" in response.json()["detail"]


def test_store_down_is_a_503_with_retry_after(corpus_settings: Settings) -> None:
    def unavailable(_: Settings) -> Engine:
        raise StoreUnavailableError("Chroma server at http://127.0.0.1:9 is unreachable")

    with running(create_app(corpus_settings, engine_factory=unavailable)) as url:
        response = httpx.post(f"{url}/v1/ask", json={"question": "What is FastV?"}, timeout=30)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert "unreachable" in response.json()["detail"]
        assert httpx.get(f"{url}/readyz").status_code == 503
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_readiness_recovers_without_restart(corpus_settings: Settings, embedder: Embedder) -> None:
    state = {"up": False}

    def flaky(settings: Settings) -> Engine:
        if not state["up"]:
            raise StoreUnavailableError("not yet")
        return build_engine(settings, embedder=embedder)

    factory: Callable[[Settings], Engine] = flaky
    with running(create_app(corpus_settings, engine_factory=factory)) as url:
        assert httpx.get(f"{url}/readyz").status_code == 503
        state["up"] = True
        assert httpx.get(f"{url}/readyz", timeout=30).status_code == 200
        assert (
            httpx.post(f"{url}/v1/ask", json={"question": "What is FastV?"}, timeout=30).status_code
            == 200
        )
