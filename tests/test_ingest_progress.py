"""Progress of long ingests (issue 11, item 6): `citeqa serve` printed nothing for ~55 s while it
ingested the corpus. Now a terminal gets bars, anything else gets log lines. No assertion here
depends on timing: the in-process test logs after every batch (``every=0``)."""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from bench.load import ApiProcess
from citeqa.config import Settings
from citeqa.embedding import Embedder
from ingest.progress import LogLines
from ingest.readers import read_source
from ingest.run import build_ingestor
from tests.servers import child_env, write_corpus

pytestmark = pytest.mark.integration

PAPERS = 20  # one chunk and five sentences each: 120 texts, two batches of sentences or more
LINE = re.compile(r"embedding \(20 documents\): (\d+)/120 texts \(\d+%\), [\d.]+ texts/s, ETA ")


def citeqa_ingest(folder: Path, data_dir: Path, **streams: object) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "cli", "ingest", str(folder)]
    env = child_env(CITEQA_DATA_DIR=str(data_dir))
    return subprocess.Popen(command, env=env, **streams)  # type: ignore[call-overload]


def test_the_pipeline_reports_chunking_and_embedding_with_rate_and_eta(
    fresh_settings: Settings,
    embedder: Embedder,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ingest.progress")
    read = read_source(write_corpus(tmp_path / "papers", PAPERS))
    ingestor = build_ingestor(fresh_settings, embedder)
    summary = ingestor.ingest(read, progress=functools.partial(LogLines, every=0.0))
    lines = [r.getMessage() for r in caplog.records if r.name == "ingest.progress"]
    chunking = [line for line in lines if line.startswith(f"{read.source}: chunking: ")]
    embedding = [line for line in lines if line.startswith(f"{read.source}: embedding (")]
    assert lines == chunking + embedding, lines
    assert chunking[0].endswith(f": {PAPERS} documents to do")
    assert f": {PAPERS}/{PAPERS} documents in " in chunking[-1]
    assert embedding[0].endswith(f"embedding ({PAPERS} documents): 120 texts to do")
    done = [int(m.group(1)) for line in embedding if (m := LINE.search(line))]
    assert len(done) >= 2 and done == sorted(done) and done[-1] < 120, lines
    assert f"embedding ({PAPERS} documents): 120/120 texts in " in embedding[-1]
    assert summary.embedded == 120


def test_cli_ingest_not_on_a_terminal_prints_progress_lines(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "papers", 3)
    process = citeqa_ingest(
        folder, tmp_path / "store", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = (stream.decode() for stream in process.communicate(timeout=300))
    assert process.returncode == 0, err
    assert "added 3" in out
    lines = [line for line in err.splitlines() if line.startswith("INFO ingest.progress: ")]
    assert any(line.endswith("chunking: 3 documents to do") for line in lines), err
    assert any("embedding (3 documents): 18/18 texts in " in line for line in lines), err
    assert "\r" not in err  # no bar redrawn into a log


def test_cli_ingest_on_a_terminal_draws_bars(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "papers", 3)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a window
    process = citeqa_ingest(folder, tmp_path / "store", stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert process.wait(timeout=300) == 0, seen
    screen = seen.decode(errors="replace")
    assert re.search(r"chunking: 100%.*3/3 \[.*document/s\]", screen), screen
    assert re.search(r"embedding \(3 documents\): 100%.*18/18 \[.*text/s\]", screen), screen
    assert "INFO ingest.progress" not in screen


def test_serve_first_ingest_logs_progress(tmp_path: Path) -> None:
    folder = write_corpus(tmp_path / "papers", 3)
    env = child_env(
        CITEQA_DATA_DIR=str(tmp_path / "store"),
        CITEQA_CORPUS_PATH=str(folder),
        CITEQA_GENERATOR="extractive",
    )
    with ApiProcess(env, tmp_path / "api.log").start(180) as api:
        log = api.tail(100_000)
    progress = [line for line in log.splitlines() if '"logger": "ingest.progress"' in line]
    assert any("chunking: 3 documents to do" in line for line in progress), log
    assert any("embedding (3 documents): 18/18 texts in " in line for line in progress), log
