"""`citeqa chat` end to end: a subprocess reading questions from stdin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from citeqa.config import Settings
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.integration


def test_chat_streams_cited_answers_and_follows_up(
    corpus_settings: Settings, tmp_path: Path
) -> None:
    # A copy of the session store: embedded Chroma is not safe across processes.
    store = shutil.copytree(corpus_settings.data_dir, tmp_path / "store")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITEQA_", "OPENAI_"))}
    env |= {"CITEQA_DATA_DIR": str(store), "CITEQA_GENERATOR": "extractive"}
    questions = [
        "How many parameters does DeepSeek-V3 have?",
        "x" * 2001,  # too long: one error line, and the chat goes on
        "and how long did its training take?",
        "/quit",
        "What is never asked?",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "cli", "chat"],
        input="\n".join(questions) + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    first, follow_up = out.split("(searching for: How long did DeepSeek-V3's training take?)")
    assert "671B" in first
    cited = [line for line in first.splitlines() if line.startswith("[")]
    assert cited and "DeepSeek-V3 Technical Report" in cited[0]
    assert "\u201c" in first  # the quote under the source
    assert "2.788M" in follow_up and "] DeepSeek-V3 Technical Report" in follow_up
    assert "never asked" not in out  # /quit ended the loop
    errors = [line for line in done.stderr.splitlines() if line.startswith("citeqa: error:")]
    assert errors == ["citeqa: error: the question has 2001 characters; the limit is 2000"]
    assert "Traceback" not in done.stderr
