"""The web page end to end in headless Chromium (Debian's chromium + chromium-driver).

The app runs in uvicorn on 127.0.0.1 over the session's corpus store; Selenium drives the page:
a question, its streamed and cited answer, a follow-up, a citation opened, a refusal. A second
store holds a document whose title and text carry an HTML payload, to check that the page shows
model and document output as text. The screenshot is kept in tests/artifacts/chat.png (an
ignored folder: a clone stays clean after its tests).

The Documents view runs against an empty store of its own (uploads write into it): a real PDF
from tests/data/r-vignettes uploaded through the file picker, a note and a broken "PDF" dropped
on the drop zone, the job followed to its end, the list, a question answered from the PDF with
its page shown and the file opened at that page, deletes (one refused by the server, its
message shown). Screenshot: tests/artifacts/documents.png. Behind API keys: the refusals shown,
the key sent (the file opened through it), and a new collection made by an upload, which the
collection selector then offers for asking and listing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from citeqa.config import Settings
from citeqa.embedding import Embedder
from service.answering.engine import Engine, build_engine
from service.api.app import create_app
from tests.live_server import LiveServer

DATA = Path(__file__).parent / "data" / "r-vignettes"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).parent / "artifacts"
PAYLOAD = "<img src=x onerror=alert(1)>"
WAIT_S = 90

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian Chromium is not installed (apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        # Every host but loopback (always direct) goes to a closed port: the tests prove the
        # pages need no network, on a machine that has one too.
        "--proxy-server=http://127.0.0.1:9",
        "--window-size=1360,1300",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def server(engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(engine.settings, engine_factory=lambda _: engine)) as live:
        yield live


@pytest.fixture
def hostile_server(tmp_path: Path, embedder: Embedder) -> Iterator[LiveServer]:
    """A store whose one relevant document carries an HTML payload in its title and text."""
    from ingest.run import ingest_paths

    docs = tmp_path / "docs"
    docs.mkdir()
    rows = [
        {
            "id": "zorblax",
            "title": f"{PAYLOAD} Zorblax Attention",
            "text": f"Zorblax attention {PAYLOAD} cuts memory use by 73% on the Flurb benchmark. "
            "It was designed for very long documents.",
        },
        {
            "id": "quibble",
            "title": "Quibble Networks for Tabular Data",
            "text": "Quibble networks learn tabular features with gated trees. They reach 91% "
            "accuracy on the Wobble dataset.",
        },
    ]
    (docs / "papers.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    settings = Settings(data_dir=tmp_path / "store", generator="extractive")
    for _ in ingest_paths(settings, [docs], embedder=embedder):
        pass
    engine = build_engine(settings, embedder=embedder)
    with LiveServer(create_app(settings, engine_factory=lambda _: engine)) as live:
        yield live


def ask(driver: webdriver.Chrome, question: str) -> WebElement:
    """Type a question, send it, wait for its answer to finish; the answer's turn element."""
    before = len(driver.find_elements(By.CSS_SELECTOR, ".turn.assistant"))
    box = driver.find_element(By.ID, "question")
    box.send_keys(question)
    box.send_keys(Keys.ENTER)
    wait = WebDriverWait(driver, WAIT_S)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".turn.assistant")) > before)
    turn = driver.find_elements(By.CSS_SELECTOR, ".turn.assistant")[before]
    wait.until(lambda _: turn.get_attribute("data-state") != "streaming")
    assert turn.get_attribute("data-state") == "done", turn.text
    return turn


def open_page(driver: webdriver.Chrome, server: LiveServer) -> None:
    driver.get(server.url + "/")
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_element(By.ID, "question").is_enabled())


def severe_console_messages(driver: webdriver.Chrome) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_ask_follow_up_open_a_citation_and_see_a_refusal(
    browser: webdriver.Chrome, server: LiveServer
) -> None:
    open_page(browser, server)
    assert browser.title.startswith("citeqa")

    first = ask(browser, "How many parameters does DeepSeek-V3 have?")
    answer = first.find_element(By.CSS_SELECTOR, ".answer-text")
    assert "671B" in answer.text
    assert first.find_elements(By.CSS_SELECTOR, ".answer-text button.cite")
    assert "DeepSeek-V3 Technical Report" in first.find_element(By.CSS_SELECTOR, ".sources").text

    follow_up = ask(browser, "and how long did its training take?")
    standalone = follow_up.find_element(By.CSS_SELECTOR, ".standalone")
    assert standalone.text == "Searched for: How long did DeepSeek-V3's training take?"
    assert "2.788M" in follow_up.find_element(By.CSS_SELECTOR, ".answer-text").text

    follow_up.find_element(By.CSS_SELECTOR, ".answer-text button.cite").click()
    panel = browser.find_element(By.ID, "citation")
    WebDriverWait(browser, 10).until(lambda _: panel.is_displayed())
    link = browser.find_element(By.ID, "citation-link")
    assert link.text == "DeepSeek-V3 Technical Report"
    assert link.get_attribute("href") == "https://github.com/deepseek-ai/DeepSeek-V3"
    quote = browser.find_element(By.ID, "citation-quote").text
    assert "2.788M H800 GPU hours" in quote
    assert browser.find_element(By.CSS_SELECTOR, "#citation-context mark").text == quote

    refused = ask(browser, "How do I prepare a pizza margherita?")
    assert refused.get_attribute("data-refused") == "true"
    badge = refused.find_element(By.CSS_SELECTOR, ".refused-badge")
    assert badge.is_displayed() and badge.text == "No answer in the corpus"
    assert "The corpus does not contain an answer" in refused.text
    assert not refused.find_elements(By.CSS_SELECTOR, "button.cite")

    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(ARTIFACTS / "chat.png"))
    assert severe_console_messages(browser) == []


def test_document_and_answer_html_is_shown_as_text(
    browser: webdriver.Chrome, hostile_server: LiveServer
) -> None:
    open_page(browser, hostile_server)
    turn = ask(browser, "How much does Zorblax attention cut memory use on the Flurb benchmark?")
    assert PAYLOAD in turn.find_element(By.CSS_SELECTOR, ".answer-text").text
    turn.find_element(By.CSS_SELECTOR, "button.cite").click()
    assert PAYLOAD in browser.find_element(By.ID, "citation-title").text
    assert PAYLOAD in browser.find_element(By.ID, "citation-quote").text
    # provenance: where the document was ingested from, and the collection
    assert "jsonl:zorblax (collection citeqa)" in browser.find_element(By.ID, "citation-where").text
    assert PAYLOAD in turn.find_element(By.CSS_SELECTOR, ".sources").text
    assert browser.execute_script("return document.images.length") == 0
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.accept()
    assert severe_console_messages(browser) == []


def same_origin_resources(driver: webdriver.Chrome, server: LiveServer) -> list[str]:
    """The URLs the page loaded, after asserting that none left the server."""
    urls: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert [u for u in urls if not u.startswith(server.url + "/")] == []
    return urls


def test_api_docs_render_without_network(browser: webdriver.Chrome, server: LiveServer) -> None:
    browser.get(server.url + "/docs")
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {
        e.get_attribute("data-path")
        for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    assert {"/v1/ask", "/v1/search", "/v1/chat/completions", "/readyz"} <= paths
    loaded = same_origin_resources(browser, server)
    assert any(u.endswith("/swagger-ui-bundle.js") for u in loaded)
    assert httpx.get(server.url + "/redoc", timeout=30).status_code == 404  # its logo: a CDN

    assert severe_console_messages(browser) == []


# ---------------------------------------------------------------------- the Documents view

PDF = DATA / "sandwich-sandwich-OOP.pdf"
PDF_ID = "upload:sandwich-sandwich-OOP.pdf"
NOTE_ID = "upload:kettle.md"
PAGE_RE = re.compile(r"\bpp?\. \d+(-\d+)?\b")


def documents_app(settings: Settings, embedder: Embedder) -> FastAPI:
    """The app over a store of its own; one engine per collection, sharing the embedder."""
    return create_app(settings, engine_factory=lambda s: build_engine(s, embedder=embedder))


@pytest.fixture
def documents_server(tmp_path: Path, embedder: Embedder) -> Iterator[LiveServer]:
    """An empty store that takes uploads; every upload goes through a job (no size is small
    enough to be ingested within the request), so the page has to follow the job."""
    settings = Settings(data_dir=tmp_path / "store", generator="extractive", upload_sync_bytes=0)
    with LiveServer(documents_app(settings, embedder)) as live:
        yield live


def open_documents(driver: webdriver.Chrome, server: LiveServer) -> None:
    """The page, switched to its Documents view (the question box is the Ask view's)."""
    open_page(driver, server)
    driver.find_element(By.ID, "tab-documents").click()
    assert driver.find_element(By.ID, "documents-view").is_displayed()
    assert not driver.find_element(By.ID, "ask-form").is_displayed()


def drop_files(driver: webdriver.Chrome, files: dict[str, str]) -> None:
    """Drop files made in the page (name -> text) on the drop zone, as a drag and drop does."""
    driver.execute_script(
        """
        const transfer = new DataTransfer();
        for (const [name, text] of Object.entries(arguments[0])) {
          transfer.items.add(new File([text], name));
        }
        const zone = document.getElementById("drop-zone");
        for (const type of ["dragover", "drop"]) {
          zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true}));
        }
        """,
        files,
    )


def follow_upload(driver: webdriver.Chrome, start: Callable[[], None]) -> list[str]:
    """Start an upload, wait until the page shows its job over; the states the page showed.

    The job is told apart from the previous upload's by its id (``data-job``), so a status left
    over from before is never taken for this one's."""
    status = driver.find_element(By.ID, "upload-status")
    before = status.get_attribute("data-job")
    start()
    seen: list[str] = []

    def over(_: webdriver.Chrome) -> bool:
        job, state = status.get_attribute("data-job"), status.get_attribute("data-state") or ""
        if not seen and job == before and state != "uploading":
            return False  # still the previous upload's status
        if not seen or seen[-1] != state:
            seen.append(state)
        return state in {"done", "failed", "error"}

    WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(over)
    assert seen[-1] == "done", status.text
    return seen


def rows_of(driver: webdriver.Chrome, doc_id: str) -> list[WebElement]:
    """The list's rows of a document, found in one call (the list may be redrawn any time)."""
    return driver.find_elements(By.CSS_SELECTOR, f'#documents-body tr[data-id="{doc_id}"]')


def document_row(driver: webdriver.Chrome, doc_id: str) -> WebElement:
    """A document's row, once the list has loaded and shows it."""
    table = driver.find_element(By.ID, "documents-table")
    wait = WebDriverWait(driver, WAIT_S)
    wait.until(lambda _: table.get_attribute("data-state") == "ready")
    return wait.until(lambda d: next(iter(rows_of(d, doc_id)), False))


def listed_ids(server: LiveServer) -> set[str]:
    response = httpx.get(server.url + "/v1/documents", timeout=30)
    response.raise_for_status()
    return {d["id"] for d in response.json()["data"]}


def fetch_file(server: LiveServer, href: str) -> httpx.Response:
    """GET a file link of the page (the fragment stays in the browser, as it does)."""
    assert href.startswith(server.url + "/v1/documents/"), href
    return httpx.get(href.split("#")[0], timeout=30)


def test_documents_upload_list_ask_open_and_delete(
    browser: webdriver.Chrome, documents_server: LiveServer
) -> None:
    server = documents_server
    open_documents(browser, server)
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.ID, "documents-empty").is_displayed()
    )

    # drag and drop: a note whose title is an HTML payload, and a "PDF" that is not one
    dropped = {
        "kettle.md": f"# {PAYLOAD} Kettles\n\nThe Brewmaster boils a litre in 94 seconds.\n",
        "broken.pdf": "this is not a PDF at all",
    }
    follow_upload(browser, lambda: drop_files(browser, dropped))
    skipped = browser.find_element(By.ID, "upload-skipped").text
    assert "broken.pdf: skipped," in skipped
    assert "kettle.md" not in skipped
    note = document_row(browser, NOTE_ID)
    assert PAYLOAD in note.find_element(By.CSS_SELECTOR, ".doc-title").text
    assert browser.execute_script("return document.images.length") == 0

    # the file picker: a real 16-page PDF, followed through its job
    picker = browser.find_element(By.ID, "files")
    seen = follow_upload(browser, lambda: picker.send_keys(str(PDF)))
    assert {"queued", "running"} & set(seen), seen  # the page followed the job
    assert "1 of 1 file(s) done" in browser.find_element(By.ID, "upload-state").text
    assert browser.find_element(By.ID, "upload-skipped").text == ""
    row = document_row(browser, PDF_ID)
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert cells[1] == PDF.name and cells[2] == "pdf" and cells[3] == "16", cells
    assert int(cells[4]) > 0 and cells[5].endswith("KB") and cells[6], cells
    opened = fetch_file(server, row.find_element(By.CSS_SELECTOR, "a.open").get_attribute("href"))
    assert opened.status_code == 200
    assert opened.headers["content-type"].startswith("application/pdf")
    assert opened.content == PDF.read_bytes()
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "documents.png"))

    # asked, the answer comes from the PDF: its citations say which page, and open it there
    browser.find_element(By.ID, "tab-ask").click()
    turn = ask(browser, "What is the most popular estimate of the bread of a sandwich estimator?")
    sources = turn.find_element(By.CSS_SELECTOR, ".sources").text
    assert "Object-Oriented Computation of Sandwich" in sources
    assert PAGE_RE.search(sources), sources
    cites = turn.find_elements(By.CSS_SELECTOR, ".answer-text button.cite")
    from_pdf = [c for c in cites if "Sandwich" in (c.get_attribute("title") or "")]
    assert from_pdf, [c.get_attribute("title") for c in cites]
    assert PAGE_RE.search(from_pdf[0].get_attribute("title"))
    from_pdf[0].click()
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "citation").is_displayed())
    location = browser.find_element(By.ID, "citation-location").text
    page = PAGE_RE.search(location)
    assert page, location
    link = browser.find_element(By.ID, "citation-file")
    href = link.get_attribute("href")
    physical = re.search(r"#page=(\d+)$", href)
    assert physical and 1 <= int(physical.group(1)) <= 16, href
    response = fetch_file(server, href)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/pdf")
    assert response.content.startswith(b"%PDF")
    browser.save_screenshot(str(ARTIFACTS / "documents-answer.png"))

    # delete with a confirm step: Cancel keeps the document, Delete removes it
    browser.find_element(By.ID, "tab-documents").click()
    row = document_row(browser, PDF_ID)
    row.find_element(By.CSS_SELECTOR, "button.delete").click()
    row.find_element(By.CSS_SELECTOR, "button.cancel-delete").click()
    assert PDF_ID in listed_ids(server)
    row.find_element(By.CSS_SELECTOR, "button.delete").click()
    row.find_element(By.CSS_SELECTOR, "button.confirm-delete").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: not rows_of(d, PDF_ID))
    assert PDF_ID not in listed_ids(server)

    assert severe_console_messages(browser) == []

    # deleted elsewhere meanwhile: the server's 404 message is shown, not swallowed
    note = document_row(browser, NOTE_ID)
    gone = httpx.delete(f"{server.url}/v1/documents/{NOTE_ID}", timeout=30)
    assert gone.status_code == 204
    note.find_element(By.CSS_SELECTOR, "button.delete").click()
    note.find_element(By.CSS_SELECTOR, "button.confirm-delete").click()
    error = browser.find_element(By.ID, "documents-error")
    WebDriverWait(browser, 10).until(lambda _: error.is_displayed())
    detail = httpx.get(f"{server.url}/v1/documents/{NOTE_ID}", timeout=30).json()["detail"]
    assert detail and detail in error.text
    WebDriverWait(browser, WAIT_S).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, "#documents-body tr")
    )


READ_KEY = "read-key-for-the-browser-test"
WRITE_KEY = "write-key-for-the-browser-test"
SMALL_PDF = DATA / "survival-tiedtimes.pdf"


@pytest.fixture
def keyed_documents_server(tmp_path: Path, embedder: Embedder) -> Iterator[LiveServer]:
    """An empty store behind a read key and a write key; small uploads finish in the request."""
    settings = Settings(
        data_dir=tmp_path / "store",
        generator="extractive",
        api_keys=READ_KEY,
        write_api_keys=WRITE_KEY,
    )
    with LiveServer(documents_app(settings, embedder)) as live:
        yield live


def type_key(driver: webdriver.Chrome, key: str) -> None:
    settings = driver.find_element(By.ID, "settings")
    if settings.get_attribute("open") is None:
        settings.find_element(By.TAG_NAME, "summary").click()
    box = driver.find_element(By.ID, "api-key")
    box.clear()
    box.send_keys(key, Keys.TAB)  # the page takes the key on change


def shown_error(driver: webdriver.Chrome) -> str:
    error = driver.find_element(By.ID, "documents-error")
    WebDriverWait(driver, WAIT_S).until(lambda _: error.is_displayed() and error.text)
    return error.text


def test_documents_with_keys_show_refusals_and_send_the_key(
    browser: webdriver.Chrome, keyed_documents_server: LiveServer
) -> None:
    server = keyed_documents_server
    open_documents(browser, server)
    refused = httpx.get(server.url + "/v1/documents", timeout=30)
    assert refused.status_code == 401
    assert refused.json()["detail"] in shown_error(browser)

    picker = browser.find_element(By.ID, "files")
    type_key(browser, READ_KEY)  # reads, but may not upload
    WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.ID, "documents-empty").is_displayed()
    )
    assert not browser.find_element(By.ID, "documents-error").is_displayed()
    picker.send_keys(str(SMALL_PDF))
    forbidden = httpx.post(
        server.url + "/v1/documents",
        headers={"Authorization": f"Bearer {READ_KEY}"},
        files={"files": (SMALL_PDF.name, b"%PDF-1.4")},
        timeout=30,
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["detail"] in shown_error(browser)
    assert browser.find_element(By.ID, "upload-status").get_attribute("data-state") == "error"

    type_key(browser, WRITE_KEY)
    follow_upload(browser, lambda: picker.send_keys(str(SMALL_PDF)))
    row = document_row(browser, f"upload:{SMALL_PDF.name}")

    # a plain link cannot carry the key: the page fetches the file with it and opens that
    first = browser.current_window_handle
    row.find_element(By.CSS_SELECTOR, "a.open").click()
    WebDriverWait(browser, WAIT_S).until(lambda d: len(d.window_handles) == 2)
    browser.switch_to.window(next(h for h in browser.window_handles if h != first))
    WebDriverWait(browser, WAIT_S).until(lambda d: d.current_url.startswith("blob:"))
    assert browser.execute_script("return document.contentType") == "application/pdf"
    browser.close()
    browser.switch_to.window(first)

    # a new collection, named in the upload box: the selector appears and picks the corpus
    assert not browser.find_element(By.ID, "collection-field").is_displayed()
    target = browser.find_element(By.ID, "upload-target")
    target.clear()
    target.send_keys("notes")
    note = {"kettle.md": "# Kettles\n\nThe Brewmaster kettle boils a litre in 94 seconds.\n"}
    follow_upload(browser, lambda: drop_files(browser, note))
    selector = browser.find_element(By.ID, "collection")
    WebDriverWait(browser, WAIT_S).until(lambda _: selector.is_displayed())
    assert selector.get_attribute("value") == "notes"
    options = {o.text for o in selector.find_elements(By.TAG_NAME, "option")}
    assert options == {"citeqa", "notes"}
    document_row(browser, NOTE_ID)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#documents-body tr")) == 1
    browser.find_element(By.ID, "tab-ask").click()
    turn = ask(browser, "How many seconds does the Brewmaster kettle take to boil a litre?")
    assert "94 seconds" in turn.find_element(By.CSS_SELECTOR, ".answer-text").text
    turn.find_element(By.CSS_SELECTOR, ".answer-text button.cite").click()
    assert "kettle.md (collection notes)" in browser.find_element(By.ID, "citation-where").text
    Select(selector).select_by_visible_text("citeqa")
    browser.find_element(By.ID, "tab-documents").click()
    document_row(browser, f"upload:{SMALL_PDF.name}")
    assert browser.find_element(By.ID, "upload-target").get_attribute("value") == "citeqa"
