"""Faults, for real: the Chroma server stops, freezes or crashes; ``citeqa ingest`` is killed.

* Chroma stopped under a running API: /readyz 503, /v1/search and /v1/ask 503 with Retry-After
  (never a 500, never a hang), and everything answers again once Chroma is back on the same
  port and path, without restarting the API.
* Chroma frozen (SIGSTOP): requests fail with 503 after the client timeout instead of hanging.
* ``citeqa ingest`` killed with SIGKILL at seeded random points (and once the Chroma server
  itself): the next run converges to exactly the chunk and sentence ids the chunker gives. There
  is no manifest file: the collection is the manifest (every record carries its source and a
  content-derived id), so there is nothing else that a crash could leave out of step.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import citeqa.store
from bench.load import ApiProcess
from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.store import Index, connect, open_index, visible_chunks
from ingest.run import ingest_paths
from service.answering.engine import build_engine
from service.api.app import create_app
from tests.servers import (
    ChromaServer,
    child_env,
    expected_ids,
    ingested_corpus,
    paper_name,
    running_chroma,
    store_state,
    write_corpus,
    write_paper,
)

pytestmark = pytest.mark.integration

QUESTION = f"How many GPUs was {paper_name(3)} trained on?"
REQUEST_BOUND_S = 15.0  # what "never hangs" means here: an answer, whatever it is, within this


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    with running_chroma(tmp_path_factory.mktemp("chroma") / "db") as server:
        yield server


@pytest.fixture(scope="module")
def store(
    chroma: ChromaServer, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Settings:
    settings, _ = ingested_corpus(chroma, "faults", tmp_path_factory.mktemp("faults"), 12, embedder)
    return settings


def bounded(client: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    started = time.monotonic()
    response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert time.monotonic() - started < REQUEST_BOUND_S
    return response


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["status"] == 503


def test_api_survives_chroma_stopping_and_recovers_when_it_returns(
    chroma: ChromaServer, store: Settings, tmp_path: Path
) -> None:
    env = child_env(
        CITEQA_CHROMA_URL=chroma.url,
        CITEQA_COLLECTION=store.collection,
        CITEQA_DATA_DIR=str(tmp_path / "api"),
        CITEQA_GENERATOR="extractive",
    )
    with (
        ApiProcess(env, tmp_path / "api.log").start(180) as api,
        httpx.Client(base_url=api.url, timeout=REQUEST_BOUND_S + 5) as client,
    ):
        before = bounded(client, "GET", "/v1/search", params={"q": QUESTION})
        assert before.status_code == 200
        chroma.stop()
        try:
            ready = bounded(client, "GET", "/readyz")
            assert ready.status_code == 503 and ready.json()["ready"] is False
            for _ in range(3):  # repeatedly: no request may leave the API in a bad state
                assert_unavailable(bounded(client, "GET", "/v1/search", params={"q": QUESTION}))
                assert_unavailable(bounded(client, "POST", "/v1/ask", json={"question": QUESTION}))
            assert bounded(client, "GET", "/healthz").status_code == 200  # liveness: no store
        finally:
            chroma.start()
        started = time.monotonic()
        assert wait_until_ready(client, 30)
        print(f"ready again {time.monotonic() - started:.1f} s after Chroma was back")
        after = bounded(client, "GET", "/v1/search", params={"q": QUESTION})
        assert after.status_code == 200 and after.json()["hits"] == before.json()["hits"]
        assert bounded(client, "POST", "/v1/ask", json={"question": QUESTION}).status_code == 200
    assert "Traceback" not in api.tail(200_000)


def wait_until_ready(client: httpx.Client, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bounded(client, "GET", "/readyz").status_code == 200:
            return True
        time.sleep(0.5)
    return False


def test_http_client_requests_are_bounded(store: Settings) -> None:
    """chromadb builds its HTTP session with timeout=None; citeqa.store must bound it (this
    fails if chromadb's internals move and the bound silently stops applying)."""
    client = connect(store)
    assert client._server._session.timeout == citeqa.store.CHROMA_TIMEOUT  # type: ignore[attr-defined]


def test_a_frozen_chroma_gives_503_after_the_timeout_not_a_hang(
    chroma: ChromaServer,
    store: Settings,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(citeqa.store, "CHROMA_TIMEOUT", httpx.Timeout(2.0, connect=1.0))
    engine = build_engine(store, embedder=embedder)
    app = create_app(store, engine_factory=lambda _: engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/search", params={"q": QUESTION}).status_code == 200
        chroma.freeze()
        try:
            started = time.monotonic()
            frozen = client.get("/v1/search", params={"q": QUESTION})
            elapsed = time.monotonic() - started
        finally:
            chroma.thaw()
        assert_unavailable(frozen)  # type: ignore[arg-type]
        assert elapsed < 10
        assert client.get("/v1/search", params={"q": QUESTION}).status_code == 200


# --------------------------------------------------------------------------- ingest killed

KILL_TRIALS = 6  # trial 4 kills the Chroma server instead of the ingest
SEED = 20261128


def changes(index: Index) -> tuple[int, int]:
    return index.chunks.count(), index.sentences.count()


def run_and_kill(
    command: list[str], env: dict[str, str], index: Index, after_changes: int
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``command`` and SIGKILL it once the store has changed ``after_changes`` times
    (one change per written batch, seen by polling the counts)."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen, last = 0, changes(index)
    deadline = time.monotonic() + 180
    while process.poll() is None and time.monotonic() < deadline:
        now = changes(index)
        if now != last:
            seen, last = seen + 1, now
        if seen >= after_changes:
            process.kill()
            process.wait(timeout=30)
            return f"killed after {seen} changes", process
        time.sleep(0.02)
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)
    return "ran to the end", process


def test_ingest_killed_at_random_points_converges(
    chroma: ChromaServer, tmp_path: Path, embedder: Embedder
) -> None:
    rng = random.Random(SEED)
    folder = write_corpus(tmp_path / "papers", 40)
    settings = Settings(chroma_url=chroma.url, collection="killed", data_dir=tmp_path / "d")
    index = open_index(connect(settings), settings.collection, embedder, create=True)
    env = child_env(CITEQA_CHROMA_URL=chroma.url, CITEQA_COLLECTION=settings.collection)
    command = [sys.executable, "-m", "cli", "ingest", str(folder)]
    log = []
    for trial in range(KILL_TRIALS):
        if trial == 3:  # the corpus changes: 8 papers rewritten, 4 removed, 2 added
            for i in range(8):
                write_paper(folder, i, words=60, marker="revised")
            for i in range(36, 40):
                (folder / f"paper-{i:03d}.md").unlink()
            for i in (50, 51):
                write_paper(folder, i)
        if trial == 4:
            outcome = kill_chroma_mid_ingest(chroma, command, env, index, rng)
        else:
            outcome, _ = run_and_kill(command, env, index, rng.randint(1, 2))
        log.append(f"trial {trial}: {outcome}")
        # Killed anywhere, the store keeps its promise: every chunk has all its sentences.
        state = store_state(index)
        assert not [p for p in state.problems if "orphan" not in p], (log, state.problems)
    print("\n".join(log))  # shown by pytest -rA / -s: where the kills landed
    ingest_paths(settings, [folder], embedder=embedder)
    state = store_state(index)
    expected = expected_ids(folder, embedder)
    assert not state.problems, log
    assert len(state.chunk_ids) == len(set(state.chunk_ids)) == len(expected.chunks)
    assert set(state.chunk_ids) == expected.chunks
    assert set(state.sentence_ids) == expected.sentences
    metadatas = index.chunks.get(include=["metadatas"])["metadatas"] or []
    assert len(visible_chunks(metadatas)) == len(expected.chunks), "a stale version is left"
    assert any("killed" in line for line in log), log


def kill_chroma_mid_ingest(
    chroma: ChromaServer, command: list[str], env: dict[str, str], index: Index, rng: random.Random
) -> str:
    """SIGKILL the Chroma server during an ingest: the ingest fails with a one-line error (no
    traceback), Chroma restarts on its data, and the next run repairs what is missing."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    target, seen, last = rng.randint(1, 2), 0, changes(index)
    deadline = time.monotonic() + 180
    while process.poll() is None and seen < target and time.monotonic() < deadline:
        now = changes(index)
        seen, last = seen + (now != last), now
        time.sleep(0.02)
    assert chroma.process is not None
    chroma.process.kill()
    chroma.process.wait(timeout=30)
    chroma.process = None
    output = process.communicate(timeout=120)[0].decode(errors="replace")
    chroma.start()
    if process.returncode == 0:
        return "Chroma killed after the ingest finished"
    assert "citeqa: error:" in output and "Traceback" not in output, output
    return f"Chroma killed after {seen} changes; ingest said {output.strip().splitlines()[-1]!r}"
