"""Replicas agree (issue 19): two ``citeqa serve`` processes on one ``chroma run`` server
answer from the new state within a bounded time after a change made through either of them or
through the CLI: an upload, a folder ingest, a re-ingest that replaces a document, deletes.

The bound is the setting ``CITEQA_LEXICAL_POLL_S`` (how long a replica may answer from what it
already holds before it looks for changes others made) plus :data:`APPLY_S`, the time to apply
a change and answer on a loaded 2-core machine. The test talks HTTP only, and runs on each
design of the lexical index (``CITEQA_LEXICAL_INDEX``): the tantivy index following the change
log, and the bm25s snapshot rebuilt when the collection changed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from bench.load import ApiProcess
from citeqa.config import Settings
from citeqa.embedding import Embedder
from tests.paths import REPO_ROOT
from tests.servers import (
    TOPICS,
    ChromaServer,
    api_env,
    ingested_corpus,
    paper,
    paper_name,
    running_chroma,
    write_paper,
)

pytestmark = pytest.mark.integration

POLL_S = 1.0
APPLY_S = 8.0
BOUND_S = POLL_S + APPLY_S
GIVE_UP_S = 60.0  # polling stops here, so that a failure says how late the replicas were
PAPERS = 12


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    with running_chroma(tmp_path_factory.mktemp("chroma") / "db") as server:
        yield server


@pytest.fixture(scope="module", params=["tantivy", "snapshot"])
def store(
    request: pytest.FixtureRequest,
    chroma: ChromaServer,
    tmp_path_factory: pytest.TempPathFactory,
    embedder: Embedder,
) -> Settings:
    """A collection of its own per lexical index design (``lexical_index``)."""
    design = str(request.param)
    settings, summary = ingested_corpus(
        chroma, f"replicas-{design}", tmp_path_factory.mktemp(design), PAPERS, embedder
    )
    assert summary.added == PAPERS
    return settings.model_copy(update={"lexical_index": design})


def env(settings: Settings, data_dir: Path) -> dict[str, str]:
    return api_env(
        settings,
        data_dir,
        CITEQA_LEXICAL_INDEX=settings.lexical_index,
        CITEQA_LEXICAL_POLL_S=str(POLL_S),
    )


@pytest.fixture(scope="module")
def replicas(store: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """The URLs of two ``citeqa serve`` processes over the collection, each with a data dir
    of its own (no shared files folder: a replica knows of another's writes only through
    Chroma)."""
    folder = tmp_path_factory.mktemp("servers")
    pair = [ApiProcess(env(store, folder / f"d{i}"), folder / f"{i}.log") for i in (0, 1)]
    try:
        for api in pair:
            api.launch()
        for api in pair:
            api.wait_ready(180)
        yield [api.url for api in pair]
    finally:
        for api in pair:
            api.stop()


def cli(settings: Settings, data_dir: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env(settings, data_dir),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def query(i: int) -> str:
    return f"{paper_name(i)} {TOPICS[i % len(TOPICS)][0]}"


def question(i: int) -> str:
    return f"How many days was {paper_name(i)} trained for?"


def searched(url: str, i: int) -> dict[str, str]:
    """Doc id -> text of the hits of a search for paper ``i``."""
    response = httpx.get(f"{url}/v1/search", params={"q": query(i), "k": 10}, timeout=60)
    assert response.status_code == 200, response.text
    return {hit["doc_id"]: hit["text"] for hit in response.json()["hits"]}


def listed(url: str) -> dict[str, dict[str, object]]:
    response = httpx.get(f"{url}/v1/documents", params={"limit": 200}, timeout=60)
    assert response.status_code == 200, response.text
    return {d["id"]: d for d in response.json()["data"]}


def cited(url: str, i: int) -> set[str]:
    response = httpx.post(f"{url}/v1/ask", json={"question": question(i)}, timeout=60)
    assert response.status_code == 200, response.text
    return {c["doc_id"] for c in response.json()["citations"]}


def converge(urls: list[str], holds: Callable[[str], bool], since: float) -> dict[str, float]:
    """Seconds from ``since`` until ``holds(url)`` first held, per replica (polled in turn,
    never slept on blindly); inf for a replica where it still did not after GIVE_UP_S."""
    took = dict.fromkeys(urls, float("inf"))
    pending = list(urls)
    while pending and time.monotonic() - since < GIVE_UP_S:
        for url in list(pending):
            if holds(url):
                took[url] = time.monotonic() - since
                pending.remove(url)
        time.sleep(0.1)
    return took


def assert_within_bound(took: dict[str, float], what: str) -> None:
    late = {url: round(s, 2) for url, s in took.items() if s > BOUND_S}
    assert not late, f"{what}: replicas answered from the old state after {late} s (> {BOUND_S})"


def test_ingests_and_deletes_through_any_replica_or_the_cli_reach_both(
    store: Settings, replicas: list[str], tmp_path: Path
) -> None:
    first, second = replicas
    uploaded, ingested = "upload:paper-050.md", "file:paper-051.md"

    def shows(doc_id: str, i: int) -> Callable[[str], bool]:
        return lambda url: doc_id in searched(url, i) and doc_id in listed(url)

    def forgot(doc_id: str, i: int) -> Callable[[str], bool]:
        return lambda url: (
            doc_id not in searched(url, i)
            and doc_id not in listed(url)
            and doc_id not in cited(url, i)
        )

    title, text = paper(50)
    response = httpx.post(
        f"{first}/v1/documents",
        files=[("files", ("paper-050.md", f"# {title}\n\n{text}\n".encode()))],
        timeout=120,
    )
    assert response.status_code == 201, response.text
    assert_within_bound(converge(replicas, shows(uploaded, 50), time.monotonic()), "upload")

    folder = write_paper(tmp_path / "cli", 51).parent
    cli(store, tmp_path / "cli-data", "ingest", str(folder))
    assert_within_bound(converge(replicas, shows(ingested, 51), time.monotonic()), "CLI ingest")
    assert all(cited(url, 51) == {ingested} for url in replicas)

    response = httpx.delete(f"{second}/v1/documents/{quote(uploaded, safe='')}", timeout=60)
    assert response.status_code == 204, response.text
    assert_within_bound(converge(replicas, forgot(uploaded, 50), time.monotonic()), "delete")

    cli(store, tmp_path / "cli-data", "documents", "delete", ingested)
    assert_within_bound(converge(replicas, forgot(ingested, 51), time.monotonic()), "CLI delete")
    for url in replicas:  # and the rest of the collection is still there
        assert f"file:paper-{PAPERS - 1:03d}.md" in listed(url)


def test_a_reingest_that_replaces_a_document_reaches_both(
    store: Settings, replicas: list[str], tmp_path: Path
) -> None:
    """A changed document re-ingested through the CLI: its new version is written, then the
    old one deleted, so the collection ends with as many chunks as before. Each replica's
    document list must show the new version, and its search the new text only."""
    doc_id, folder, data = "file:paper-060.md", tmp_path / "cli", tmp_path / "cli-data"
    write_paper(folder, 60, words=12, marker="alpha")
    cli(store, data, "ingest", str(folder))
    took = converge(replicas, lambda url: doc_id in listed(url), time.monotonic())
    assert_within_bound(took, "first version")
    before = {url: listed(url)[doc_id]["ingested_at"] for url in replicas}

    write_paper(folder, 60, words=12, marker="beta")
    cli(store, data, "ingest", str(folder))
    changed = time.monotonic()
    # The listing alone first: no search that might stumble on the new chunks helps a replica.
    took = converge(
        replicas, lambda url: listed(url)[doc_id]["ingested_at"] != before[url], changed
    )
    assert_within_bound(took, "document list after the replacement")
    for url in replicas:
        assert listed(url)[doc_id]["chunks"] == 1
        text = searched(url, 60)[doc_id]
        assert "beta" in text and "alpha" not in text, text
