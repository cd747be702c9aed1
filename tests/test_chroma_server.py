"""Server mode for real: ``chroma run`` on 127.0.0.1, citeqa through ``chromadb.HttpClient``.

One Chroma server serves the module; each test uses collections of its own.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import httpx
import numpy as np
import pytest
from chromadb.errors import InternalError

from bench.load import ApiProcess
from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.store import get_with_vectors
from ingest.run import ingest_paths
from service.answering.engine import build_engine
from tests.servers import (
    TOPICS,
    ChromaServer,
    api_env,
    expected_ids,
    ingested_corpus,
    paper,
    paper_name,
    running_chroma,
    store_state,
    write_paper,
)

pytestmark = pytest.mark.integration

SMALL = 20
FLIP_PAPER, FLIP_WORDS = 99, 300
FLIP_DOC = f"file:paper-{FLIP_PAPER:03d}.md"


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    with running_chroma(tmp_path_factory.mktemp("chroma") / "db") as server:
        yield server


@pytest.fixture(scope="module")
def small_store(
    chroma: ChromaServer, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Settings:
    """The collection ``small``: 20 made-up papers ingested over HTTP."""
    root = tmp_path_factory.mktemp("small")
    settings, summary = ingested_corpus(chroma, "small", root, SMALL, embedder)
    assert summary.added == SMALL and not summary.skipped
    return settings


@pytest.fixture(scope="module")
def apis(
    small_store: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ApiProcess]]:
    """Two ``citeqa serve`` processes on two ports over the ``small`` collection, each with a
    data dir of its own."""
    folder = tmp_path_factory.mktemp("apis")
    pair = [ApiProcess(api_env(small_store, folder / f"d{i}"), folder / f"{i}.log") for i in (0, 1)]
    try:
        for api in pair:  # launch both before waiting on either: they boot in parallel
            api.launch()
        for api in pair:
            api.wait_ready(180)
        yield pair
    finally:
        for api in pair:
            api.stop()


def test_ingest_search_and_ask_through_http_client(
    small_store: Settings, embedder: Embedder
) -> None:
    engine = build_engine(small_store, embedder=embedder)
    title, text = paper(7)
    hits = engine.search(f"How many days was {paper_name(7)} trained?", 5)
    assert hits[0].title == title
    answer = engine.ask(f"How many days was {paper_name(7)} trained for?")
    assert not answer.refused, answer.answer
    assert {c.doc_id for c in answer.citations} == {"file:paper-007.md"}
    assert any(c.quote in text for c in answer.citations)
    # A second ingest over HTTP writes nothing, and the store is exactly what the chunker says.
    (again,) = ingest_paths(small_store, [small_store.corpus_path], embedder=embedder)
    assert (again.unchanged, again.embedded, again.chunks_deleted) == (SMALL, 0, 0)
    state = store_state(engine.index)
    expected = expected_ids(small_store.corpus_path, embedder)
    assert not state.problems
    assert set(state.chunk_ids) == expected.chunks
    assert set(state.sentence_ids) == expected.sentences


def test_two_api_processes_share_one_chroma(
    small_store: Settings, apis: list[ApiProcess], embedder: Embedder
) -> None:
    question = f"How many GPUs trained {paper_name(1)}?"
    answers = [ask_and_search(api.url, question) for api in apis]
    assert answers[0] == answers[1]
    assert answers[0][0][0] == "file:paper-001.md"
    # A paper ingested by a third party reaches both replicas without a restart.
    folder = small_store.corpus_path
    write_paper(folder, 42)
    try:
        ingest_paths(small_store, [folder], embedder=embedder)
        query = f"{paper_name(42)} {TOPICS[42 % len(TOPICS)][0]}"
        for api in apis:
            assert wait_for_doc(api.url, query, "file:paper-042.md")
    finally:
        (folder / "paper-042.md").unlink()
        ingest_paths(small_store, [folder], embedder=embedder)


def ask_and_search(url: str, question: str) -> tuple[list[str], list[str]]:
    with httpx.Client(base_url=url, timeout=30) as client:
        search = client.get("/v1/search", params={"q": question, "k": 5})
        ask = client.post("/v1/ask", json={"question": question})
    assert search.status_code == 200, search.text
    assert ask.status_code == 200, ask.text
    return [h["doc_id"] for h in search.json()["hits"]], [
        c["chunk_id"] for c in ask.json()["citations"]
    ]


def wait_for_doc(url: str, query: str, doc_id: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = httpx.get(f"{url}/v1/search", params={"q": query, "k": 5}, timeout=30).json()
        if any(h["doc_id"] == doc_id for h in hits["hits"]):
            return True
        time.sleep(0.5)
    return False


def test_reingest_while_serving_never_mixes_versions(
    small_store: Settings, apis: list[ApiProcess], tmp_path: Path, embedder: Embedder
) -> None:
    """A paper of 3 chunks flips between versions 'alpha' and 'beta' (tests/ingest_flipper.py,
    a subprocess with slow chunk writes) while /v1/search and /v1/ask are answered. The corpus
    is small enough that k=50 returns every chunk, so each search shows the whole visible state
    of that paper: it must be exactly one version - never both, never a half-written or
    half-deleted one - and no request may fail."""
    versions = {}
    for marker in ("alpha", "beta"):
        write_paper(tmp_path / marker, FLIP_PAPER, FLIP_WORDS, marker)
        versions[marker] = expected_ids(tmp_path / marker, embedder).by_doc[FLIP_DOC]
    assert len(versions["alpha"]) >= 3 and not versions["alpha"] & versions["beta"]
    folder = small_store.corpus_path
    write_paper(folder, FLIP_PAPER, FLIP_WORDS, "alpha")
    try:
        ingest_paths(small_store, [folder], embedder=embedder)
        assert wait_for_doc(apis[0].url, f"{paper_name(FLIP_PAPER)} ablation", FLIP_DOC)
        env = api_env(small_store, tmp_path / "flipper")
        command = [sys.executable, "-m", "tests.ingest_flipper", str(folder), "--rounds", "2"]
        command += ["--paper", str(FLIP_PAPER), "--words", str(FLIP_WORDS)]
        flipper = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            seen, problems = observe_flips(apis[0].url, versions, flipper)
        finally:
            if flipper.poll() is None:
                flipper.kill()
            output = flipper.communicate(timeout=30)[0].decode(errors="replace")
    finally:
        (folder / f"paper-{FLIP_PAPER:03d}.md").unlink()
        ingest_paths(small_store, [folder], embedder=embedder)
    assert not problems, (problems[:5], output)
    assert flipper.returncode == 0, output
    assert seen["alpha"] and seen["beta"], (seen, output)


def observe_flips(
    url: str, versions: dict[str, set[str]], flipper: subprocess.Popen[bytes]
) -> tuple[Counter[str], list[str]]:
    seen: Counter[str] = Counter()
    problems: list[str] = []
    deadline = time.monotonic() + 240
    question = f"What does the ablation variant of {paper_name(FLIP_PAPER)} change?"
    with httpx.Client(base_url=url, timeout=30) as client:
        while flipper.poll() is None and time.monotonic() < deadline:
            search = client.get("/v1/search", params={"q": question, "k": 50})
            ask = client.post("/v1/ask", json={"question": question, "top_k": 5})
            for response in (search, ask):
                if response.status_code != 200:
                    problems.append(
                        f"{response.request.url}: {response.status_code} {response.text[:500]}"
                    )
            if problems:
                continue
            shown = {h["chunk_id"] for h in search.json()["hits"] if h["doc_id"] == FLIP_DOC}
            version = next((m for m, ids in versions.items() if shown == ids), None)
            if version is None:
                problems.append(f"search shows {sorted(shown)}")
            seen[version or "mixed"] += 1
            cited = {c["chunk_id"] for c in ask.json()["citations"] if c["doc_id"] == FLIP_DOC}
            if not any(cited <= ids for ids in versions.values()):
                problems.append(f"ask cites {sorted(cited)}")
            time.sleep(0.05)  # leave the writer some CPU: 2 cores serve both sides here
    return seen, problems


def test_a_get_with_vectors_outlasts_a_delete_racing_it(chroma: ChromaServer) -> None:
    """A Chroma server answers a get with embeddings that races a delete of a matching record
    with "Error finding id" (about 1 in 100 beside this delete loop); ``get_with_vectors``
    asks again, by when the record is gone, so an answer during a re-ingest never fails."""
    client = chromadb.HttpClient(host="127.0.0.1", port=chroma.port)
    collection = client.create_collection("vector-race", metadata={"hnsw:space": "cosine"})
    rng = np.random.default_rng(7)

    def records(generation: int, chunks: range) -> dict[str, Any]:
        ids = [f"c{c}-v{generation}/s{s}" for c in chunks for s in range(4)]
        return {
            "ids": ids,
            "metadatas": [{"chunk_id": i.split("/")[0]} for i in ids],
            "embeddings": rng.standard_normal((len(ids), 8)).tolist(),
            "documents": [f"sentence {i}" for i in ids],
        }

    collection.add(**records(0, range(40)))
    stop = time.monotonic() + 8
    failures: list[str] = []

    def flip() -> None:  # a re-ingest: the new version of five chunks, then the old one gone
        generation = 0
        while time.monotonic() < stop:
            collection.add(**records(generation + 1, range(5)))
            collection.delete(ids=records(generation, range(5))["ids"])
            generation += 1

    writer = threading.Thread(target=flip)
    writer.start()
    reads = 0
    asked = [f"c{c}-v{g}" for c in range(5) for g in range(40)] + [f"c{c}-v0" for c in range(40)]
    try:
        while time.monotonic() < stop:
            try:
                got = get_with_vectors(
                    collection, {"chunk_id": {"$in": asked}}, ["metadatas", "embeddings"]
                )
            except InternalError as exc:
                failures.append(str(exc))
            else:
                assert len(got["ids"]) == len(got["embeddings"])  # type: ignore[arg-type]
            reads += 1
    finally:
        writer.join()
    assert reads > 100 and not failures, (reads, failures[:3])
