"""Metrics, request ids, JSON logs and secret redaction."""

from __future__ import annotations

import functools
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from citeqa.config import Settings
from citeqa.embedding import Embedder
from service.answering.engine import Engine, build_engine
from service.api.app import create_app
from service.api.observability import (
    ACCESS_LOGGER,
    EngineCollector,
    JsonFormatter,
    Metrics,
    RedactingFilter,
    configure_logging,
    install_observability,
    request_id_var,
)
from service.api.security import install_security
from tests.fakes.openai_server import Error, FakeOpenAIServer, Reply
from tests.live_server import LiveServer

KEY = "obs-key-0123456789abcdef"
METRICS_TOKEN = "obs-scraper-0123456789abcdef"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}
LLM_KEY = "sk-llm-secret-9876543210fedcba"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, keyed by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """configure_logging changes the root logger; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


# --------------------------------------------------------------------------- request ids


def routed_app(tmp_path: Any, **fields: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    install_security(app, Settings(data_dir=tmp_path, **fields))
    install_observability(app)
    return app


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123", True),
        ("0f8fad5b-d9cb-469f-a165-70867728950e", True),
        ("trace:span.1_2", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("bad id", False),
        ("-leading-dash", False),
        ("evil\u2028line", False),
        ('x"}{"level":"ERROR', False),
    ],
)
def test_request_id_is_echoed_only_when_safe(tmp_path: Any, sent: str, kept: bool) -> None:
    client = TestClient(routed_app(tmp_path))
    response = client.get("/items/1", headers={b"X-Request-ID": sent.encode()})
    returned = response.headers["x-request-id"]
    assert (returned == sent) is kept
    if not kept:
        assert len(returned) == 32 and returned.isalnum()


def test_each_request_gets_its_own_id(tmp_path: Any) -> None:
    client = TestClient(routed_app(tmp_path))
    ids = {client.get("/items/1").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


# --------------------------------------------------------------------------- metrics


def test_requests_are_labelled_by_route_template_never_raw_path(tmp_path: Any) -> None:
    app = routed_app(tmp_path, api_keys=SecretStr(KEY), metrics_token=SecretStr(METRICS_TOKEN))
    client = TestClient(app)
    auth = {"Authorization": f"Bearer {KEY}"}
    for item in ("a", "b", "c"):
        assert client.get(f"/items/{item}", headers=auth).status_code == 200
    assert client.get("/items/zzz").status_code == 401  # refused before routing
    assert client.get("/no/such/path/12345", headers=auth).status_code == 404
    text = client.get("/metrics", headers=SCRAPER).text
    total = "citeqa_http_requests_total"
    assert value(text, total, method="GET", route="/items/{item_id}", status="200") == 3
    assert value(text, total, method="GET", route="/items/{item_id}", status="401") == 1
    assert value(text, total, method="GET", route="<unmatched>", status="404") == 1
    assert "zzz" not in text and "12345" not in text
    count = "citeqa_http_request_duration_seconds_count"
    assert value(text, count, method="GET", route="/items/{item_id}", status="200") == 3


class _Chunks:
    def __init__(self, count: int | Exception) -> None:
        self._count = count

    def count(self) -> int:
        if isinstance(self._count, Exception):
            raise self._count
        return self._count


class _Client:
    """Counters the way service.answering.llm.ChatClient exposes them."""

    requests, retries, failures, prompt_tokens, completion_tokens = 5, 2, 1, 300, 40


class _Engine:
    def __init__(self, count: int | Exception, client: object | None) -> None:
        self.index = type("Index", (), {"chunks": _Chunks(count)})()
        self.generator = type("Generator", (), {"client": client})()


def test_engine_collector_reads_index_size_and_llm_counters() -> None:
    metrics = Metrics()
    metrics.registry.register(EngineCollector(lambda: _Engine(42, _Client())))
    text = metrics.render().decode()
    assert value(text, "citeqa_index_chunks") == 42
    assert value(text, "citeqa_llm_requests_total") == 5
    assert value(text, "citeqa_llm_retries_total") == 2
    assert value(text, "citeqa_llm_failures_total") == 1
    assert value(text, "citeqa_llm_tokens_total", kind="prompt") == 300
    assert value(text, "citeqa_llm_tokens_total", kind="completion") == 40


def test_engine_collector_tolerates_no_engine_no_client_and_a_dead_store() -> None:
    cases = [
        (None, None),
        (_Engine(ConnectionError("chroma down"), None), None),
        (_Engine(7, object()), 7),
    ]
    for engine, chunks in cases:
        metrics = Metrics()
        metrics.registry.register(EngineCollector(functools.partial(lambda e: e, engine)))
        text = metrics.render().decode()
        assert "citeqa_llm" not in text
        assert value(text, "citeqa_index_chunks") == chunks


# --------------------------------------------------------------------------- logs


def test_json_formatter_writes_one_object_per_line_with_the_request_id() -> None:
    record = logging.LogRecord("citeqa.x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    token = request_id_var.set("req-7")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)
    payload = json.loads(line)
    assert payload["msg"] == "hello you" and payload["request_id"] == "req-7"
    assert payload["level"] == "WARNING" and payload["logger"] == "citeqa.x"
    assert payload["ts"].endswith("+00:00") and "\n" not in line


def test_redacting_filter_hides_tokens_keys_and_configured_secrets() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter([KEY, "plain-configured-secret"]))
    log = logging.getLogger("citeqa.test.redact")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("header Authorization: Bearer %s", "abc.def-ghi")
        log.warning("openai key %s and api_key=%s", "sk-proj-ABCDEFGH12345678", "hunter2hunter2")
        log.warning("configured %s / %s", KEY, "plain-configured-secret")
        try:
            raise RuntimeError(f"failed with {KEY}")
        except RuntimeError:
            log.exception("boom")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    for secret in ("abc.def-ghi", "sk-proj-ABCDEFGH12345678", "hunter2hunter2", KEY, "plain-conf"):
        assert secret not in out
    assert out.count("[REDACTED]") >= 6
    assert all(json.loads(line) for line in out.splitlines())


def test_configure_logging_installs_one_handler_and_can_write_text() -> None:
    settings = Settings(log_format="text")
    configure_logging(settings)
    stream = io.StringIO()
    handler = configure_logging(settings, stream)
    assert [h for h in logging.getLogger().handlers if h.get_name() == "citeqa"] == [handler]
    logging.getLogger("citeqa.test").warning("plain words")
    assert stream.getvalue().rstrip().endswith("WARNING citeqa.test [-] plain words")


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def live(
    engine: Engine, corpus_settings: Settings
) -> Iterator[Callable[..., tuple[LiveServer, Settings]]]:
    servers: list[LiveServer] = []

    def start(engine_: Engine | None = None, **overrides: Any) -> tuple[LiveServer, Settings]:
        settings = corpus_settings.model_copy(update=overrides)
        chosen = engine_ or engine
        server = LiveServer(create_app(settings, engine_factory=lambda _: chosen)).start()
        servers.append(server)
        return server, settings

    yield start
    for server in servers:
        server.stop()


@pytest.mark.integration
def test_metrics_and_request_id_after_an_ask(
    live: Callable[..., tuple[LiveServer, Settings]], capsys: pytest.CaptureFixture[str]
) -> None:
    server, _ = live()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        asked = client.post(
            "/v1/ask", json={"question": "What is DeepNorm?"}, headers={"X-Request-ID": "ask-42"}
        )
        assert asked.status_code == 200 and asked.headers["x-request-id"] == "ask-42"
        refused = client.post("/v1/ask", json={"question": "How do I bake sourdough pizza?"})
        assert refused.json()["refused"]
        client.get("/v1/search", params={"q": "layer normalisation", "k": 3})
        text = client.get("/metrics").text
    assert value(text, "citeqa_http_requests_total", method="POST", route="/v1/ask", status="200")
    assert value(text, "citeqa_http_requests_total", method="GET", route="/v1/search", status="200")
    assert value(text, "citeqa_retrieval_seconds_count") == 2
    assert value(text, "citeqa_generation_seconds_count", generator="extractive") == 2
    assert value(text, "citeqa_answers_total", generator="extractive") == 2
    assert value(text, "citeqa_refusals_total", generator="extractive") == 1
    assert (value(text, "citeqa_index_chunks") or 0) > 100

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    access = [x for x in lines if x["logger"] == ACCESS_LOGGER and x["request_id"] == "ask-42"]
    assert len(access) == 1
    assert access[0]["method"] == "POST" and access[0]["path"] == "/v1/ask"
    assert access[0]["status"] == 200 and access[0]["ms"] > 0
    assert {"ts", "level", "msg"} <= set(access[0])


@pytest.mark.integration
def test_llm_counters_and_no_secret_in_logs(
    live: Callable[..., tuple[LiveServer, Settings]],
    corpus_settings: Settings,
    embedder: Embedder,
    fake_llm: FakeOpenAIServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    llm_settings = corpus_settings.model_copy(
        update={
            "generator": "llm",
            "llm_base_url": fake_llm.base_url,
            "llm_api_key": SecretStr(LLM_KEY),
            "llm_max_attempts": 2,
        }
    )
    engine = build_engine(llm_settings, embedder=embedder)
    server, _ = live(
        engine,
        api_keys=SecretStr(KEY),
        llm_api_key=SecretStr(LLM_KEY),
        metrics_token=SecretStr(METRICS_TOKEN),
    )
    fake_llm.enqueue(
        Error(503, headers={"Retry-After": "0"}),
        Reply("DeepNorm modifies the residual connection in Transformer [1]."),
    )
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        answer = client.post("/v1/ask", json={"question": "What is DeepNorm?"}, headers=auth)
        assert answer.status_code == 200, answer.text
        for wrong in (f"Bearer {KEY[::-1]}", f"Bearer {LLM_KEY}", KEY):
            assert client.get("/v1/models", headers={"Authorization": wrong}).status_code == 401
        assert client.get("/metrics", headers=auth).status_code == 401  # a client key: no
        text = client.get("/metrics", headers=SCRAPER).text
        # Something does log a secret by mistake: the server's log shows it redacted.
        logging.getLogger("citeqa.test").warning("auth was Bearer %s, llm %s", KEY, LLM_KEY)

    assert value(text, "citeqa_llm_retries_total") == 1
    assert value(text, "citeqa_llm_failures_total") == 0
    assert (value(text, "citeqa_llm_tokens_total", kind="prompt") or 0) > 0
    assert value(text, "citeqa_generation_seconds_count", generator="llm") == 1
    assert fake_llm.history[-1].headers["authorization"] == "Bearer <redacted>"

    captured = capsys.readouterr()
    server_log = captured.err + captured.out
    assert "LLM attempt 1 of 2 failed" in server_log  # the retry was logged ...
    assert "auth was Bearer [REDACTED], llm [REDACTED]" in server_log
    natural = "\n".join(r.getMessage() for r in caplog.records if r.name != "citeqa.test")
    for secret in (KEY, LLM_KEY, KEY[::-1], METRICS_TOKEN):
        assert secret not in server_log  # ... and no secret reached the log
        assert secret not in natural


def test_refusals_on_included_routers_are_labelled_by_their_route(tmp_path: Any) -> None:
    """401/429/413 come before routing; the chat and models routes live in an included router."""
    settings = Settings(
        data_dir=tmp_path,
        api_keys=SecretStr(KEY),
        max_body_bytes=1024,
        metrics_token=SecretStr(METRICS_TOKEN),
    )
    client = TestClient(create_app(settings))
    assert client.post("/v1/chat/completions", json={}).status_code == 401
    assert client.get("/v1/models/citeqa").status_code == 401
    auth = {"Authorization": f"Bearer {KEY}"}
    big = {"model": "citeqa", "messages": [{"role": "user", "content": "x" * 2000}]}
    assert client.post("/v1/chat/completions", json=big, headers=auth).status_code == 413
    text = client.get("/metrics", headers=SCRAPER).text
    total = "citeqa_http_requests_total"
    chat = "/v1/chat/completions"
    assert value(text, total, method="POST", route=chat, status="401") == 1
    assert value(text, total, method="POST", route=chat, status="413") == 1
    assert value(text, total, method="GET", route="/v1/models/{model_id}", status="401") == 1
    assert 'route="<unmatched>"' not in text


def test_a_secret_in_the_path_or_the_request_id_is_never_logged_nor_echoed(
    tmp_path: Any,
) -> None:
    """A client pastes its key where it does not belong: the URL path, X-Request-ID."""
    settings = Settings(data_dir=tmp_path, api_keys=SecretStr(KEY), log_format="json")
    stream = io.StringIO()
    configure_logging(settings, stream)
    client = TestClient(create_app(settings))
    for request_id in (KEY, "sk-proj-abcdefghijklmnop1234", f"req-{KEY}"):
        response = client.get(f"/static/{KEY}", headers={"X-Request-ID": request_id})
        assert response.status_code == 404
        echoed = response.headers["x-request-id"]
        assert KEY not in echoed and not echoed.startswith("sk-")
        assert len(echoed) == 32 and echoed.isalnum()  # a fresh one
    kept = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert kept.headers["x-request-id"] == "trace-42"  # an ordinary id still goes through

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [x for x in lines if x["logger"] == ACCESS_LOGGER]
    assert len(access) == 4
    assert access[0]["path"] == "/static/[REDACTED]"
    assert KEY not in stream.getvalue() and "sk-proj" not in stream.getvalue()


def test_the_filter_redacts_every_field_of_a_record() -> None:
    record = logging.LogRecord("citeqa.access", logging.INFO, __file__, 1, "GET", None, None)
    record.path = f"/static/{KEY}"
    record.request_id = "sk-abcdefghijklmnop1234"
    RedactingFilter([KEY]).filter(record)
    payload = json.loads(JsonFormatter().format(record))
    assert payload["path"] == "/static/[REDACTED]"
    assert payload["request_id"] == "[REDACTED]"
