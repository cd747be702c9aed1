"""The OpenAI-compatible embedder against the scripted fake over real HTTP: concurrent requests
(bounded), rows in input order, retries on 429/5xx, clear errors on other 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from pydantic import SecretStr

from citeqa.config import Settings
from citeqa.embedding import OpenAIEmbedder, build_embedder
from citeqa.errors import EmbeddingError
from tests.fakes.openai_server import Error, FakeOpenAIServer, Reply, fake_embedding

KEY = "sk-test-embedder-key-0123456789"
TEXTS = [f"text number {i} about topic {i % 3}" for i in range(20)]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(embedding_dim=12) as srv:
        yield srv


def embedder(server: FakeOpenAIServer, **options: object) -> OpenAIEmbedder:
    options = {"batch_size": 3, "concurrency": 4, "max_wait_s": 0.05, **options}
    return OpenAIEmbedder("fake-embedder", server.base_url, KEY, **options)  # type: ignore[arg-type]


def embedding_requests(server: FakeOpenAIServer) -> list[list[str]]:
    return [r.body["input"] for r in server.history if r.path.endswith("/embeddings")]


def expected(texts: list[str], dim: int) -> np.ndarray:
    rows = np.array([fake_embedding(text, dim) for text in texts])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_concurrent_batches_come_back_in_input_order(server: FakeOpenAIServer) -> None:
    client = embedder(server)
    assert client.dim == 12
    # the earlier a batch is sent, the later it is answered: completion order is reversed
    server.enqueue_embeddings(*(Reply("", delay=0.05 * (7 - i)) for i in range(7)))
    vectors = client.embed(TEXTS)
    assert vectors.shape == (20, 12) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected(TEXTS, 12), atol=1e-6)
    sent = embedding_requests(server)[1:]  # after the dimension probe
    assert sorted(text for batch in sent for text in batch) == sorted(TEXTS)
    assert sorted(len(batch) for batch in sent) == [2] + [3] * 6


@pytest.mark.parametrize("concurrency", [1, 3])
def test_requests_in_flight_are_bounded_by_the_setting(
    server: FakeOpenAIServer, concurrency: int
) -> None:
    server.embedding_latency = 0.15
    client = embedder(server, batch_size=1, concurrency=concurrency)
    client.embed(TEXTS[:9])
    assert server.max_embeddings_in_flight == concurrency


def test_a_query_is_one_request(server: FakeOpenAIServer) -> None:
    client = embedder(server)
    vector = client.embed(["What is FastV?"])
    np.testing.assert_allclose(vector, expected(["What is FastV?"], 12), atol=1e-6)
    assert embedding_requests(server)[1:] == [["What is FastV?"]]


def test_429_and_5xx_are_retried(server: FakeOpenAIServer) -> None:
    client = embedder(server, concurrency=1)
    server.enqueue_embeddings(Error(429, headers={"Retry-After": "0"}), Error(503), Error(500))
    vectors = client.embed(TEXTS[:3])
    np.testing.assert_allclose(vectors, expected(TEXTS[:3], 12), atol=1e-6)
    assert len(embedding_requests(server)) == 1 + 4


def test_gives_up_after_max_attempts(server: FakeOpenAIServer) -> None:
    client = embedder(server, max_attempts=3)
    server.enqueue_embeddings(*[Error(502)] * 3)
    with pytest.raises(EmbeddingError, match="failed after 3 attempts: 502 Bad Gateway"):
        client.embed(TEXTS[:2])
    assert len(embedding_requests(server)) == 1 + 3


def test_401_is_not_retried_and_says_which_key(server: FakeOpenAIServer) -> None:
    client = embedder(server, max_attempts=4)
    server.enqueue_embeddings(Error(401, message=f"Incorrect API key provided: {KEY}"))
    with pytest.raises(EmbeddingError) as caught:
        client.embed(TEXTS[:2])
    message = caught.value.message
    assert "failed after 1 attempt: 401" in message and "not retried" in message
    assert "CITEQA_LLM_API_KEY or OPENAI_API_KEY" in message
    assert KEY not in message  # an auth error's body may echo the key: never repeated
    assert caught.value.status == 502
    assert len(embedding_requests(server)) == 1 + 1


def test_a_refused_batch_names_the_batch_size_and_the_reason(server: FakeOpenAIServer) -> None:
    client = embedder(server, batch_size=5)
    server.enqueue_embeddings(Error(413, message="batch size 5 > maximum allowed batch size 4"))
    with pytest.raises(EmbeddingError) as caught:
        client.embed(TEXTS[:5])
    message = caught.value.message
    assert "413" in message and "CITEQA_EMBED_BATCH_SIZE" in message
    assert "maximum allowed batch size 4" in message


def test_a_failed_batch_stops_the_batches_not_yet_sent(server: FakeOpenAIServer) -> None:
    server.embedding_latency = 0.05
    client = embedder(server, batch_size=1, concurrency=2)
    server.enqueue_embeddings(Error(400, message="input too long"))
    with pytest.raises(EmbeddingError, match="input too long"):
        client.embed(TEXTS)
    # the probe, the refused request, the one in flight beside it, perhaps one more started
    # before the failure was seen; never the 20 of the whole call
    assert len(embedding_requests(server)) <= 1 + 4


def test_unreachable_endpoint_is_a_clear_error() -> None:
    with FakeOpenAIServer() as srv:
        url = srv.base_url
    with pytest.raises(EmbeddingError, match="connection error"):
        OpenAIEmbedder("m", url, None, max_attempts=2, max_wait_s=0.01)


def test_settings_build_the_embedder(server: FakeOpenAIServer) -> None:
    settings = Settings(
        embed_backend="openai",
        embed_base_url=server.base_url,
        llm_api_key=SecretStr(KEY),
        embed_model="fake-embedder",
        embed_batch_size=7,
        embed_concurrency=2,
        embed_max_attempts=2,
    )
    client = build_embedder(settings)
    assert isinstance(client, OpenAIEmbedder)
    assert (client.batch_size, client.concurrency, client.max_attempts) == (7, 2, 2)
    assert client.name == "openai:fake-embedder" and client.dim == 12
    assert server.history[0].headers["authorization"] == "Bearer <redacted>"
    assert Settings().embed_concurrency == 4
