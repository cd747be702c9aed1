"""The documents API through real HTTP over a real Chroma store: upload (multipart and JSON),
list, show, the original file, delete, jobs, collections, limits and write keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import SecretStr

from citeqa.config import Settings
from citeqa.embedding import Embedder
from service.answering import answerability
from service.answering.engine import Engine, build_engine
from service.api.app import create_app
from tests.live_server import LiveServer
from tests.paths import REPO_ROOT
from tests.servers import running_chroma
from tests.topics import write_topic_documents

pytestmark = pytest.mark.integration

VIGNETTES = REPO_ROOT / "tests" / "data" / "r-vignettes"
SMALL_PDF = VIGNETTES / "survival-tiedtimes.pdf"
READ_KEY = "read-key-0123456789abcdef"
WRITE_KEY = "write-key-0123456789abcdef"


def app_for(settings: Settings, embedder: Embedder, **overrides: Any) -> Any:
    """An app whose engines (one per collection) share the session's embedder."""

    def factory(engine_settings: Settings) -> Engine:
        return build_engine(engine_settings, embedder=embedder)

    return create_app(settings.model_copy(update=overrides), engine_factory=factory)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("docs-store"), generator="extractive")


@pytest.fixture(scope="module")
def url(store: Settings, embedder: Embedder) -> Iterator[str]:
    with LiveServer(app_for(store, embedder)) as server:
        yield server.url


def upload(url: str, *files: tuple[str, bytes], **params: str) -> httpx.Response:
    parts = [("files", (name, data)) for name, data in files]
    return httpx.post(f"{url}/v1/documents", files=parts, params=params, timeout=120)


def doc_url(url: str, doc_id: str, suffix: str = "") -> str:
    return f"{url}/v1/documents/{quote(doc_id, safe='')}{suffix}"


def listed(url: str, **params: str) -> dict[str, dict[str, Any]]:
    body = httpx.get(f"{url}/v1/documents", params={"limit": "200", **params}).json()
    return {d["id"]: d for d in body["data"]}


def search_ids(url: str, query: str, **params: str) -> list[str]:
    response = httpx.get(f"{url}/v1/search", params={"q": query, "k": 10, **params}, timeout=30)
    assert response.status_code == 200, response.text
    return [hit["doc_id"] for hit in response.json()["hits"]]


def test_a_pdf_is_uploaded_listed_served_and_deleted(url: str) -> None:
    data = SMALL_PDF.read_bytes()
    kettle = b"# Kettle\n\nThe kettle switches itself off when the water boils.\n"
    assert upload(url, ("kettle.md", kettle)).status_code == 201  # keeps the index non-empty

    response = upload(url, (SMALL_PDF.name, data))
    assert response.status_code == 201, response.text
    job = response.json()
    doc_id = f"upload:{SMALL_PDF.name}"
    assert job["state"] == "done" and job["error"] is None
    assert job["documents"] == [doc_id] and job["skipped"] == []
    assert job["files_total"] == job["files_done"] == 1 and job["texts_embedded"] > 0
    assert job["collection"] == "citeqa"

    document = listed(url)[doc_id]
    assert document["format"] == "pdf" and document["source"] == SMALL_PDF.name
    assert document["bytes"] == len(data) and document["pages"] >= 2 and document["chunks"] > 1
    assert document["ingested_at"].endswith("Z") and document["collection"] == "citeqa"
    assert httpx.get(doc_url(url, doc_id)).json() == document

    original = httpx.get(doc_url(url, doc_id, "/file"))
    assert original.status_code == 200 and original.content == data
    assert original.headers["content-type"] == "application/pdf"
    assert original.headers["content-disposition"].startswith("inline;")
    assert SMALL_PDF.name in original.headers["content-disposition"]

    hits = httpx.get(f"{url}/v1/search", params={"q": document["title"], "k": 3}).json()["hits"]
    assert hits[0]["doc_id"] == doc_id and hits[0]["source"] == SMALL_PDF.name
    assert hits[0]["page"] >= 1

    again = upload(url, (SMALL_PDF.name, data)).json()  # the same content: nothing to do
    assert again["state"] == "done" and again["documents"] == [doc_id]
    assert again["texts_embedded"] == 0

    assert httpx.delete(doc_url(url, doc_id)).status_code == 204
    gone = httpx.get(doc_url(url, doc_id))
    assert gone.status_code == 404 and gone.headers["content-type"] == "application/problem+json"
    assert doc_id not in listed(url)
    assert doc_id not in search_ids(url, document["title"])  # the BM25 snapshot followed
    answer = httpx.post(f"{url}/v1/ask", json={"question": document["title"]}, timeout=30).json()
    assert doc_id not in {c["doc_id"] for c in answer["citations"] + answer["sources"]}
    assert httpx.delete(doc_url(url, doc_id)).status_code == 404


def test_a_changed_file_replaces_the_version_of_the_same_name(url: str) -> None:
    first = b"# Boiler\n\nThe boiler pressure should read 1.5 bar when cold.\n"
    second = b"# Boiler\n\nThe boiler pressure should read 1.2 bar when cold.\n"
    assert upload(url, ("boiler.md", first)).status_code == 201
    assert upload(url, ("boiler.md", second)).status_code == 201
    hits = httpx.get(f"{url}/v1/search", params={"q": "boiler pressure cold", "k": 10}).json()
    texts = [h["text"] for h in hits["hits"] if h["doc_id"] == "upload:boiler.md"]
    assert texts and all("1.2 bar" in t and "1.5 bar" not in t for t in texts)
    assert listed(url)["upload:boiler.md"]["format"] == "markdown"
    served = httpx.get(doc_url(url, "upload:boiler.md", "/file"))
    assert served.content == second and served.headers["content-type"].startswith("text/markdown")


def test_bad_files_are_skipped_with_the_readers_reason(url: str) -> None:
    response = upload(
        url,
        ("empty.txt", b""),
        ("lies.pdf", b"just some text, not a PDF at all\n"),
        ("tool.exe", b"MZ\x90\x00binary"),
        ("../../etc/passwd.md", b"# Fine\n\nA harmless note about the garden hose.\n"),
        ("lme4-PLSvGLS.pdf", (VIGNETTES / "lme4-PLSvGLS.pdf").read_bytes()),
    )
    assert response.status_code == 201, response.text
    job = response.json()
    reasons = {s["file"]: s["reason"] for s in job["skipped"]}
    assert reasons["empty.txt"] == "empty file"
    assert "extension says .pdf" in reasons["lies.pdf"]
    assert reasons["tool.exe"] == "unsupported file type '.exe'"
    assert "OCR is not supported" in reasons["lme4-PLSvGLS.pdf"]  # the PDF reader's reason
    assert job["documents"] == ["upload:passwd.md"]  # a file name is a label, never a path
    assert job["files_done"] == job["files_total"] == 5


def test_collections_keep_documents_apart_and_are_models(url: str) -> None:
    assert upload(url, ("kettle.md", b"# Kettle\n\nThe kettle is blue.\n")).status_code == 201
    text = {
        "title": "Espresso machine care",
        "text": "Descale the espresso machine every 200 shots with citric acid.",
        "metadata": {"url": "https://example.org/espresso"},
    }
    response = httpx.post(f"{url}/v1/documents", params={"collection": "kitchen"}, json=text)
    assert response.status_code == 201, response.text
    doc_id = response.json()["documents"][0]
    assert doc_id.startswith("text:") and response.json()["collection"] == "kitchen"

    assert doc_id not in search_ids(url, "descale espresso machine")
    hits = httpx.get(
        f"{url}/v1/search", params={"q": "descale espresso", "collection": "kitchen"}
    ).json()["hits"]
    assert hits[0]["doc_id"] == doc_id and hits[0]["url"] == "https://example.org/espresso"
    assert listed(url, collection="kitchen")[doc_id]["format"] == "json"

    models = [m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]]
    assert {"citeqa", "kitchen"} <= set(models)
    chat = httpx.post(
        f"{url}/v1/chat/completions",
        json={
            "model": "kitchen",
            "messages": [{"role": "user", "content": "How often to descale?"}],
        },
        timeout=30,
    ).json()
    assert [c["doc_id"] for c in chat["citations"]] == [doc_id]
    unknown_model = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "cellar", "messages": [{"role": "user", "content": "Hi?"}]},
    )
    assert unknown_model.status_code == 404
    assert unknown_model.json()["error"]["code"] == "model_not_found"

    for response in (
        httpx.get(f"{url}/v1/search", params={"q": "x", "collection": "cellar"}),
        httpx.get(f"{url}/v1/documents", params={"collection": "cellar"}),
        httpx.post(f"{url}/v1/ask", json={"question": "x?", "collection": "cellar"}),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert "'cellar'" in response.json()["detail"]
    bad = httpx.post(f"{url}/v1/documents", params={"collection": "a/../b"}, json=text)
    assert bad.status_code == 422 and "collection name" in bad.json()["detail"]
    empty = httpx.post(f"{url}/v1/documents", params={"collection": "pantry"}, json={})
    assert empty.status_code == 422  # and a bad upload creates no collection:
    assert httpx.get(f"{url}/v1/documents", params={"collection": "pantry"}).status_code == 404


def test_the_list_pages_with_a_cursor(url: str) -> None:
    for i in range(3):
        note = f"# Note {i}\n\nPaging note number {i} about the shed.\n".encode()
        assert upload(url, (f"page-{i}.md", note)).status_code == 201
    everything = list(listed(url))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{url}/v1/documents", params=params).json()
        assert len(page["data"]) <= 2
        seen += [d["id"] for d in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything and len(seen) >= 3
    assert httpx.get(f"{url}/v1/documents", params={"cursor": "%%%"}).status_code == 422


def test_upload_limits_are_their_own(store: Settings, embedder: Embedder) -> None:
    app = app_for(store, embedder, max_body_bytes=2048, max_upload_file_bytes=100_000)
    with LiveServer(app) as server:
        small = upload(server.url, ("note.md", b"# Small\n\nA note on limits of uploads.\n"))
        assert small.status_code == 201  # larger than nothing, smaller than the file limit
        big = (VIGNETTES / "lme4-PLSvGLS.pdf").read_bytes()
        too_big = upload(server.url, ("lme4-PLSvGLS.pdf", big))
        assert too_big.status_code == 413
        assert too_big.headers["content-type"] == "application/problem+json"
        assert "lme4-PLSvGLS.pdf" in too_big.json()["detail"]
        assert "upload:lme4-PLSvGLS.pdf" not in listed(server.url)
        # The JSON endpoints keep their small body limit.
        ask = httpx.post(f"{server.url}/v1/ask", json={"question": "x" * 3000})
        assert ask.status_code == 413
    app = app_for(store, embedder, max_upload_bytes=50_000)
    with LiveServer(app) as server:
        refused = upload(server.url, ("lme4-PLSvGLS.pdf", big))
        assert refused.status_code == 413 and "request body" in refused.json()["detail"]
        head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="x.pdf"\r\n\r\n'

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield head
            for start in range(0, len(big), 8192):
                yield big[start : start + 8192]
            yield b"\r\n--b--\r\n"

        streamed = httpx.post(
            f"{server.url}/v1/documents",
            content=chunked(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert streamed.status_code == 413
        assert "CITEQA_MAX_UPLOAD_BYTES" in streamed.json()["detail"]


def test_writes_need_a_write_key(store: Settings, embedder: Embedder) -> None:
    app = app_for(
        store, embedder, api_keys=SecretStr(READ_KEY), write_api_keys=SecretStr(WRITE_KEY)
    )
    note = ("keyed.md", b"# Keyed\n\nA note written with a write key.\n")
    read, write = ({"Authorization": f"Bearer {key}"} for key in (READ_KEY, WRITE_KEY))
    with LiveServer(app) as server:
        base = f"{server.url}/v1/documents"
        assert httpx.post(base, files=[("files", note)]).status_code == 401
        refused = httpx.post(base, files=[("files", note)], headers=read)
        assert refused.status_code == 403 and "write key" in refused.json()["detail"]
        assert httpx.post(base, files=[("files", note)], headers=write).status_code == 201
        listing = httpx.get(base, params={"limit": 200}, headers=read).json()["data"]
        assert "upload:keyed.md" in [d["id"] for d in listing]
        target = f"{base}/{quote('upload:keyed.md', safe='')}"
        assert httpx.delete(target, headers=read).status_code == 403
        assert httpx.delete(target, headers=write).status_code == 204


def test_a_large_upload_is_a_job_any_replica_can_report(tmp_path: Path, embedder: Embedder) -> None:
    """Two replicas sharing a Chroma server (a process of its own) and the files folder: the
    job, the document and its original file are seen from the one that did not take it."""
    with running_chroma(tmp_path / "chroma") as chroma:
        shared = Settings(data_dir=tmp_path / "data", chroma_url=chroma.url, generator="extractive")
        replicas(shared, embedder)


def replicas(shared: Settings, embedder: Embedder) -> None:
    with (
        LiveServer(app_for(shared, embedder, upload_sync_bytes=0)) as first,
        LiveServer(app_for(shared, embedder)) as replica,
    ):
        data = SMALL_PDF.read_bytes()
        response = upload(first.url, ("job.pdf", data))
        assert response.status_code == 202, response.text
        location = response.headers["location"]
        assert location == f"/v1/jobs/{response.json()['id']}"
        assert response.json()["state"] in ("queued", "running")
        deadline = time.monotonic() + 120
        job = response.json()
        while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
            job = httpx.get(replica.url + location).json()
        assert job["state"] == "done", job
        assert job["documents"] == ["upload:job.pdf"] and job["files_done"] == 1
        # Another replica sees new chunks once its BM25 snapshot refreshes (refresh_s, 2 s).
        deadline = time.monotonic() + 10
        while "upload:job.pdf" not in listed(replica.url) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "upload:job.pdf" in listed(replica.url)
        assert httpx.get(doc_url(replica.url, "upload:job.pdf", "/file")).content == data
        missing = httpx.get(f"{replica.url}/v1/jobs/nope")
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_folder_files_are_served_from_the_path_recorded_at_ingest(
    url: str, store: Settings, embedder: Embedder, tmp_path: Path
) -> None:
    from ingest.run import ingest_paths

    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    page = (VIGNETTES / "rstan-stanfit-objects.html").read_bytes()
    (folder / "stanfit.html").write_bytes(page)
    (folder / "sub" / "note.md").write_bytes(b"# Gate\n\nThe garden gate sticks in winter.\n")
    ingest_paths(store.model_copy(update={"collection": "folder"}), [folder], embedder=embedder)

    documents = listed(url, collection="folder")
    assert documents["file:stanfit.html"]["format"] == "html"
    assert documents["file:sub/note.md"]["source"] == "sub/note.md"
    html = httpx.get(doc_url(url, "file:stanfit.html", "/file"), params={"collection": "folder"})
    assert html.status_code == 200 and html.content == page
    assert html.headers["content-type"].startswith("text/html")
    assert html.headers["content-security-policy"] == "sandbox"  # its scripts never run here
    note = httpx.get(f"{url}/v1/documents/file:sub/note.md/file", params={"collection": "folder"})
    assert note.status_code == 200 and note.content.startswith(b"# Gate")
    outside = httpx.get(
        doc_url(url, "file:../../etc/passwd", "/file"), params={"collection": "folder"}
    )
    assert outside.status_code == 404  # only documents ingest recorded have a file


def test_a_50_mb_file_passes_the_default_limits(url: str) -> None:
    """The defaults take a 50 MB PDF: streamed to disk, kept by hash, read in a job (this one
    is damaged, so the job skips it with the reader's reason instead of embedding 50 MB)."""
    data = b"%PDF-1.7\n" + bytes(50 * 2**20)
    response = upload(url, ("big.pdf", data))
    assert response.status_code == 202, response.text
    location = response.headers["location"]
    deadline = time.monotonic() + 120
    job = response.json()
    while job["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = httpx.get(url + location).json()
    assert job["state"] == "done" and job["documents"] == []
    assert [s["file"] for s in job["skipped"]] == ["big.pdf"]


def test_an_upload_that_changes_the_collection_fits_its_answerability_model(
    tmp_path: Path, embedder: Embedder
) -> None:
    """As `citeqa ingest` does: after the job (its documents searchable at once) the
    collection's model is fit in the background; the job says "fitting", then the figures.
    An upload that changes nothing fits nothing; a delete that is material fits again."""
    settings = Settings(data_dir=tmp_path / "store", generator="extractive")
    folder = write_topic_documents(tmp_path / "docs")
    files = [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.md"))]
    with LiveServer(app_for(settings, embedder, calibrate_uploads=True)) as server:
        response = upload(server.url, *files)
        assert response.status_code == 201, response.text
        job = response.json()
        assert job["state"] == "done" and job["answerability"] == "fitting"
        assert "upload:kettles.md" in search_ids(server.url, "kettle heating element")
        deadline = time.monotonic() + 300
        while job["answerability"] == "fitting" and time.monotonic() < deadline:
            time.sleep(0.5)
            job = httpx.get(f"{server.url}/v1/jobs/{job['id']}", timeout=30).json()
        assert job["answerability"].startswith("answerability fit on 6 documents"), job
        again = upload(server.url, *files).json()
        assert again["state"] == "done" and again["answerability"] == "", again
        engine = build_engine(settings, embedder=embedder)
        assert engine.evidence.model().figures["documents"] == 6
        # a delete changes the collection too: one of six is material, refit in the background
        deleted = httpx.delete(doc_url(server.url, "upload:lamps.md"), timeout=30)
        assert deleted.status_code == 204, deleted.text
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if answerability.load(engine.index.chunks).figures["documents"] == 5:
                break
            time.sleep(0.5)
        assert answerability.load(engine.index.chunks).figures["documents"] == 5
