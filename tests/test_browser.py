"""The web page end to end in headless Chromium (Debian's chromium + chromium-driver).

The app runs in uvicorn on 127.0.0.1 over the session's corpus store; Selenium drives the page:
a question, its streamed and cited answer, a follow-up, a citation opened, a refusal. A second
store holds a document whose title and text carry an HTML payload, to check that the page shows
model and document output as text. The screenshot is kept in tests/artifacts/chat.png (an
ignored folder: a clone stays clean after its tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from citeqa.config import Settings
from citeqa.embedding import Embedder
from service.api import create_app
from service.engine import Engine, build_engine
from tests.live_server import LiveServer

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
