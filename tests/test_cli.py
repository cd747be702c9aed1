"""The `citeqa` command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from citeqa.config import Settings

pytestmark = pytest.mark.integration


def citeqa(*args: str, data_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CITEQA_DATA_DIR=str(data_dir), HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_ask_json_is_the_api_shape(corpus_settings: Settings) -> None:
    result = citeqa(
        "ask",
        "What is the name of the dataset of computational graphs?",
        "--json",
        data_dir=corpus_settings.data_dir,
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert {"answer", "refused", "citations", "sources", "timings_ms"} <= body.keys()


def asked(question: str, settings: Settings) -> str:
    """What `citeqa ask` prints for ``question`` (it must succeed)."""
    result = citeqa("ask", question, data_dir=settings.data_dir)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_ask_prints_answer_and_numbered_sources(corpus_settings: Settings) -> None:
    printed = asked("How many activated parameters does DeepSeek-V3 have?", corpus_settings)
    assert "37B" in printed
    assert re.search(r"^\[\d+\] DeepSeek-V3 Technical Report", printed, re.MULTILINE)


def test_ask_says_what_a_slip_in_a_name_was_read_as(corpus_settings: Settings) -> None:
    printed = asked("How many activated parameters does DeepSeeek-V3 have?", corpus_settings)
    first = printed.splitlines()[0]
    said = "(read \u201cDeepSeeek-V3\u201d as \u201cDeepSeek-V3\u201d, as the documents write it)"
    assert first == said
    assert "37B" in printed


def test_search_lists_hits(corpus_settings: Settings) -> None:
    result = citeqa("search", "FastV", "-k", "2", data_dir=corpus_settings.data_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[1] ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("ingest", "/definitely/not/here"), "no such file or folder"),
        (("ask", "   "), "the question is empty"),
        (("ask", "What is FastV?", "-k", "99"), "top_k must be between 1 and 50"),
    ],
)
def test_errors_are_one_line_without_traceback(
    corpus_settings: Settings, args: tuple[str, ...], message: str
) -> None:
    result = citeqa(*args, data_dir=corpus_settings.data_dir)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip() == f"citeqa: error: {message}"
        or message in result.stderr.strip().splitlines()[-1]
    )


def test_ingest_folder_lists_skipped_files(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "note.md").write_text("# A note\n\nSparse attention is cheap. It is also fast.\n")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n")
    result = citeqa("ingest", str(folder), data_dir=tmp_path / "store")
    assert result.returncode == 0, result.stderr
    assert "added 1" in result.stdout
    assert "skipped image.png: unsupported file type '.png'" in result.stdout
    again = citeqa("ingest", str(folder), data_dir=tmp_path / "store")
    assert "unchanged 1" in again.stdout and "0 texts embedded" in again.stdout


def test_serve_builds_one_embedding_model_and_is_ready_with_bm25_built(
    corpus_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`citeqa serve` in process; uvicorn's loop is replaced by a TestClient on the same app
    (it runs the lifespan), so the ingest check, the engine and /readyz are the real ones."""
    import uvicorn
    from fastapi.testclient import TestClient

    import citeqa.embedding
    from cli.main import main

    built: list[object] = []
    real_init = citeqa.embedding.MiniLMOnnxEmbedder.__init__

    def counting_init(self: object, *args: object, **kwargs: object) -> None:
        built.append(self)
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]

    seen: dict[str, object] = {}

    def serve_once(app: object, **_: object) -> None:
        with TestClient(app) as client:  # type: ignore[arg-type]
            seen["warmed"] = client.app.state.engine.retriever.warmed  # type: ignore[attr-defined]
            seen["readyz"] = client.get("/readyz").status_code
            seen["search"] = client.get("/v1/search", params={"q": "FastV"}).status_code

    monkeypatch.setattr(citeqa.embedding.MiniLMOnnxEmbedder, "__init__", counting_init)
    monkeypatch.setattr(uvicorn, "run", serve_once)
    monkeypatch.setenv("CITEQA_DATA_DIR", str(corpus_settings.data_dir))
    assert main(["serve"]) == 0
    assert seen == {"warmed": True, "readyz": 200, "search": 200}
    assert len(built) == 1, "one embedding model for the ingest check and the engine"


def test_version_is_pyprojects(capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    from cli.main import main
    from tests.paths import REPO_ROOT

    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"citeqa {version}"
