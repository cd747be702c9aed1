"""`citeqa ingest` while `citeqa serve` runs on the same embedded store (issue 11, item 3).

Chroma's embedded ``PersistentClient`` is not safe across processes: an ingest from a second
process left the server answering 503 ``Error finding id`` and stale searches until a restart.
The server now holds the data folder's lock, so the ingest refuses with a message saying what
to do; the documented way (stop the server, ingest, start it again) then answers about the new
document. All real processes: ``citeqa serve`` and ``citeqa ingest`` as subprocesses.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from bench.load import ApiProcess
from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.store import connect, open_index
from ingest.run import ingest_paths
from service.answering.engine import build_engine
from service.api.app import create_app
from tests.servers import child_env, paper, paper_name, write_corpus, write_paper

pytestmark = pytest.mark.integration

NEW_PAPER = 7
NEW_DOC = f"file:paper-{NEW_PAPER:03d}.md"
NEW_QUESTION = f"How many days was {paper_name(NEW_PAPER)} trained for?"
CORPUS_QUESTION = "How many activated parameters does DeepSeek-V3 have?"


def citeqa_ingest(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cli", "ingest", str(folder)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def ask(url: str, question: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/ask", json={"question": question}, timeout=60)


def assert_answers_new_paper(url: str) -> None:
    response = ask(url, NEW_QUESTION)
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body["refused"], body["answer"]
    assert {c["doc_id"] for c in body["citations"]} == {NEW_DOC}
    assert any(c["quote"] in paper(NEW_PAPER)[1] for c in body["citations"])


def test_ingest_while_serving_is_refused_and_the_documented_way_works(
    corpus_settings: Settings, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(corpus_settings.data_dir, store)
    env = child_env(CITEQA_DATA_DIR=str(store), CITEQA_GENERATOR="extractive")
    folder = tmp_path / "mydocs"
    write_paper(folder, NEW_PAPER)
    with ApiProcess(env, tmp_path / "api.log").start(180) as api:
        refused = citeqa_ingest(folder, env)
        # The server is unharmed: it answers from the corpus it serves, and about the new
        # paper it answers without an error (it has not seen it: a refusal is fine, a 503 not).
        corpus = ask(api.url, CORPUS_QUESTION)
        assert corpus.status_code == 200, (corpus.text, api.tail())
        assert not corpus.json()["refused"] and "37B" in corpus.json()["answer"]
        unseen = ask(api.url, NEW_QUESTION)
        assert unseen.status_code == 200, (unseen.text, api.tail())
        search = httpx.get(f"{api.url}/v1/search", params={"q": CORPUS_QUESTION}, timeout=60)
        assert search.status_code == 200, search.text
        assert search.json()["hits"][0]["title"].startswith("DeepSeek-V3")
        assert httpx.get(f"{api.url}/readyz", timeout=30).status_code == 200
        pid = api.process.pid if api.process else None
    # ... and the ingest was refused, in one line that says what to do.
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "Traceback" not in refused.stderr
    message = refused.stderr.strip()
    assert message.startswith("citeqa: error: ") and len(message.splitlines()) == 1, message
    assert f"pid {pid}" in message and api.url in message and str(store) in message
    assert "stop the server" in message and "CITEQA_CHROMA_URL" in message
    # The documented way: with the server stopped, the ingest runs; restarted, it answers.
    done = citeqa_ingest(folder, env)
    assert done.returncode == 0, done.stderr
    assert "added 1" in done.stdout
    with ApiProcess(env, tmp_path / "api2.log").start(180) as api:
        assert_answers_new_paper(api.url)


def test_a_store_failure_503_is_logged_with_its_cause(
    fresh_settings: Settings,
    embedder: Embedder,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The 503 of the issue left nothing in the log. A real Chroma error: the collection an
    engine holds is deleted under it."""
    ingest_paths(fresh_settings, [write_corpus(tmp_path / "papers", 3)], embedder=embedder)
    app = create_app(fresh_settings, lambda s: build_engine(s, embedder=embedder))
    with TestClient(app) as client:
        assert client.get("/v1/search", params={"q": paper_name(1)}).status_code == 200
        connect(fresh_settings).delete_collection(fresh_settings.collection)
        caplog.clear()
        response = client.post("/v1/ask", json={"question": f"What is {paper_name(1)}?"})
        ready = client.get("/readyz")
    assert response.status_code == 503, response.text
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged, [r.getMessage() for r in caplog.records]
    message = logged[0].getMessage()
    assert "NotFoundError" in message and "does not exist" in message, message
    assert "/v1/ask" in message, message
    assert ready.status_code == 503, ready.text
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("not ready: ") and "NotFoundError" in m for m in warned), warned


def test_readiness_says_empty_until_an_ingest_then_what_the_replica_indexes(
    fresh_settings: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    """/readyz reads one id from Chroma, not a count (a pass over the whole collection), and
    is ready once the replica's lexical index holds documents (it follows the ingest)."""
    open_index(connect(fresh_settings), fresh_settings.collection, embedder, create=True)
    app = create_app(fresh_settings, lambda s: build_engine(s, embedder=embedder))
    with TestClient(app) as client:
        empty = client.get("/readyz")
        ingest_paths(fresh_settings, [write_corpus(tmp_path / "papers", 3)], embedder=embedder)
        deadline = time.monotonic() + fresh_settings.lexical_poll_s + 15
        while (ready := client.get("/readyz")).status_code != 200 or "3 doc" not in ready.text:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.1)
    assert empty.status_code == 503 and "no document" in empty.json()["detail"], empty.text
    assert ready.json()["detail"].startswith("lexical index: 3 documents;"), ready.text
