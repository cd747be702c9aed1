"""An upload that stops half-way leaves no half document visible: a store failure in the
middle of a job, a server killed (SIGKILL) while it embeds, a client that leaves mid-body."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from citeqa.catalog import Catalog, files_dir
from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.store import Index, connect, open_index
from service.answering.engine import Engine, build_engine
from service.api.app import create_app
from service.api.jobs import STALE_AFTER_S, JobStore
from tests.live_server import LiveServer
from tests.paths import REPO_ROOT
from tests.servers import child_env, free_port, stop_process, wait_until_up

pytestmark = pytest.mark.integration

PDF = REPO_ROOT / "tests" / "data" / "r-vignettes" / "sandwich-sandwich-OOP.pdf"
SMALL_PDF = PDF.with_name("survival-tiedtimes.pdf")  # 7 chunks, 32 sentences
QUERY = "object-oriented sandwich covariance estimators"
NOTE = b"# Shed\n\nThe shed key hangs behind the kitchen door.\n"


class FailingChunks:
    """A chunk collection whose ``fail_at``-th upsert fails as a vanished Chroma does."""

    def __init__(self, real: Any, fail_at: int) -> None:
        self.real = real
        self.fail_at = fail_at
        self.upserts = 0

    def upsert(self, **kwargs: Any) -> None:
        self.upserts += 1
        if self.upserts == self.fail_at:
            raise ConnectionError("Chroma went away mid-upload")
        self.real.upsert(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def poll_job(url: str, location: str, until: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(url + location).json()
        if until(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job never reached the state wanted: {job}")


def test_a_failure_mid_upload_shows_nothing_of_the_document(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ingest.pipeline.EMBED_BATCH", 2)  # its 7 chunks in 4 batches
    settings = Settings(data_dir=tmp_path, generator="extractive", upload_sync_bytes=0)

    def factory(engine_settings: Settings, fail: bool = True) -> Engine:
        engine = build_engine(engine_settings, embedder=embedder)
        if fail:
            failing = FailingChunks(engine.index.chunks, fail_at=3)
            index = engine.index
            engine.index = Index(failing, index.sentences, index.log)  # type: ignore[arg-type]
            engine.retriever.index = engine.evidence.index = engine.index
        return engine

    note = ("shed.md", NOTE)
    with LiveServer(create_app(settings, lambda s: factory(s, fail=False))) as healthy:
        first = httpx.post(f"{healthy.url}/v1/documents", files=[("files", note)])
        assert poll_job(healthy.url, first.headers["location"], lambda j: j["state"] == "done")
    with LiveServer(create_app(settings, factory)) as server:
        response = httpx.post(
            f"{server.url}/v1/documents",
            files=[("files", (SMALL_PDF.name, SMALL_PDF.read_bytes()))],
        )
        assert response.status_code == 202
        job = poll_job(
            server.url,
            response.headers["location"],
            lambda j: j["state"] != "running" and j["state"] != "queued",
        )
        assert job["state"] == "failed" and "Chroma went away" in job["error"]

        doc_id = f"upload:{SMALL_PDF.name}"
        written = (
            connect(settings).get_collection(settings.collection).get(where={"source": doc_id})
        )
        assert len(written["ids"]) == 4  # two batches of 2 of its 7 chunks: half a document
        listing = httpx.get(f"{server.url}/v1/documents").json()["data"]
        assert [d["id"] for d in listing] == ["upload:shed.md"]
        assert httpx.get(f"{server.url}/v1/documents/{doc_id}").status_code == 404
        query = {"q": "tied survival times roundoff", "k": 10}
        hits = httpx.get(f"{server.url}/v1/search", params=query).json()["hits"]
        assert doc_id not in {h["doc_id"] for h in hits}

    with LiveServer(create_app(settings, lambda s: factory(s, fail=False))) as healthy:
        again = httpx.post(
            f"{healthy.url}/v1/documents",
            files=[("files", (SMALL_PDF.name, SMALL_PDF.read_bytes()))],
        )
        done = poll_job(healthy.url, again.headers["location"], lambda j: j["state"] == "done")
        assert done["documents"] == [doc_id]  # the next upload completes it
        assert doc_id in {d["id"] for d in httpx.get(f"{healthy.url}/v1/documents").json()["data"]}


def test_a_server_killed_mid_upload_leaves_no_half_document(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "corpus.md"
    corpus.write_bytes(NOTE)
    data_dir = tmp_path / "store"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = child_env(
        CITEQA_DATA_DIR=str(data_dir),
        CITEQA_CORPUS_PATH=str(corpus),
        CITEQA_UPLOAD_SYNC_BYTES="0",
        CITEQA_GENERATOR="extractive",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(process, f"{url}/readyz", 120, log)
        response = httpx.post(
            f"{url}/v1/documents", files=[("files", (PDF.name, PDF.read_bytes()))]
        )
        assert response.status_code == 202
        job = poll_job(url, response.headers["location"], lambda j: j["texts_embedded"] > 0)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            stop_process(process)
    assert job["state"] == "running", job  # killed mid-way, not after the end

    settings = Settings(data_dir=data_dir)
    client = connect(settings)
    index = open_index(client, settings.collection, embedder, create=False)
    doc_id = f"upload:{PDF.name}"
    assert index.sentences.get(where={"source": doc_id})["ids"]  # it had written a part
    documents = [d.id for d in Catalog(index, files_dir(data_dir)).documents()]
    assert doc_id not in documents and len(documents) == 1
    hits = build_engine(settings, embedder=embedder, index=index).search(
        "object-oriented sandwich covariance estimators", 10
    )
    assert doc_id not in {h.doc_id for h in hits}
    jobs = JobStore(client, settings.collection)
    assert jobs.get(job["id"]).state == "running"  # no one saves it any more
    later = time.time() + STALE_AFTER_S + 1
    monkeypatch.setattr("service.api.jobs.time.time", lambda: later)
    stale = jobs.get(job["id"])
    assert stale.state == "failed" and stale.error is not None and "interrupted" in stale.error


def half_upload() -> bytes:
    """The head of a multipart upload of :data:`PDF` and its first 20 kB; the rest never comes."""
    boundary = "cut"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
        f'filename="{PDF.name}"\r\nContent-Type: application/pdf\r\n\r\n'
    ).encode()
    request = (
        f"POST /v1/documents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + PDF.stat().st_size + 100}\r\n\r\n"
    ).encode()
    return request + head + PDF.read_bytes()[:20_000]


def test_a_client_leaving_mid_body_writes_nothing(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path, generator="extractive")
    app = create_app(settings, lambda s: build_engine(s, embedder=embedder))
    with LiveServer(app) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(half_upload())
            time.sleep(0.5)
        time.sleep(0.5)
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        listing = httpx.get(f"{server.url}/v1/documents").json()["data"]
        assert listing == []
        kept = files_dir(tmp_path)
        assert not kept.exists() or list(kept.iterdir()) == []  # no partial copy either


def test_an_upload_that_stalls_gets_408(tmp_path: Path, embedder: Embedder) -> None:
    settings = Settings(data_dir=tmp_path, generator="extractive", upload_timeout_s=1.0)
    app = create_app(settings, lambda s: build_engine(s, embedder=embedder))
    with LiveServer(app) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(half_upload())
            answer = sock.recv(4096).decode("latin-1")
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "did not arrive within 1 s" in answer
