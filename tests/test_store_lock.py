"""The embedded store's lock (citeqa/lock.py): one citeqa process per data folder, a clear
refusal for the second, nothing left behind by a dead one, nothing locked in server mode.

The holder is this test process or a real subprocess; the refused commands run as real
``citeqa`` subprocesses (they fail before loading any model)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from citeqa.config import Settings
from citeqa.errors import StoreBusyError
from citeqa.lock import LOCK_FILE, hold_store
from tests.servers import child_env, free_port

pytestmark = pytest.mark.integration

HOLD_AS_SERVER = """
import sys, time
from pathlib import Path
from citeqa.config import Settings
from citeqa.lock import hold_store
with hold_store(Settings(data_dir=Path(sys.argv[1])), "serve", "http://127.0.0.1:8123"):
    print("held", flush=True)
    time.sleep(600)
"""


def citeqa(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cli", *args]
    env = child_env(CITEQA_DATA_DIR=str(data_dir))
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("citeqa: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "advice"),
    [
        (("serve", "--port", "0"), "wait for it to finish"),  # serve while an ingest runs
        (("ingest", "."), "wait for it to finish"),  # two ingests on one folder
    ],
)
def test_a_second_writer_is_refused_while_an_ingest_holds_the_folder(
    tmp_path: Path, args: tuple[str, ...], advice: str
) -> None:
    with hold_store(Settings(data_dir=tmp_path), "ingest"):
        line = refusal(citeqa(tmp_path, *args))
    assert f"`citeqa ingest` (pid {os.getpid()})" in line and str(tmp_path) in line
    assert advice in line and "CITEQA_CHROMA_URL" in line


@pytest.mark.parametrize("command", ["ask", "search"])
def test_readers_are_refused_while_a_server_holds_the_folder_and_told_to_ask_it(
    tmp_path: Path, command: str
) -> None:
    """Opening the embedded store writes to it (chromadb 1.5.9), so readers wait their turn."""
    with hold_store(Settings(data_dir=tmp_path), "serve", "http://127.0.0.1:8123"):
        line = refusal(citeqa(tmp_path, command, "What is FastV?"))
    assert f"a citeqa server (pid {os.getpid()}, http://127.0.0.1:8123)" in line
    assert "POST http://127.0.0.1:8123/v1/ask" in line and "stop the server" in line


def test_a_server_is_refused_on_a_folder_another_server_holds(tmp_path: Path) -> None:
    with hold_store(Settings(data_dir=tmp_path), "serve", "http://127.0.0.1:8123"):
        line = refusal(citeqa(tmp_path, "serve", "--port", str(free_port())))
    assert "already served at http://127.0.0.1:8123" in line


def test_the_lock_file_of_a_killed_holder_blocks_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AS_SERVER, str(tmp_path)],
        env=child_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreBusyError, match=f"pid {holder.pid}"), hold_store(settings, "ask"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert str(holder.pid) in (tmp_path / LOCK_FILE).read_text()  # its record is left behind
    with hold_store(settings, "ingest"):
        assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_FILE).read_text()
    assert (tmp_path / LOCK_FILE).read_text() == ""  # a clean exit leaves no holder named


def test_two_holders_in_one_process_are_refused_too(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with (
        hold_store(settings, "eval"),
        pytest.raises(StoreBusyError, match="`citeqa eval`"),
        hold_store(settings, "chat"),
    ):
        pass
    with hold_store(settings, "chat"):  # released on exit
        pass


def test_nothing_is_locked_with_a_chroma_server(tmp_path: Path) -> None:
    """Server mode is multi-process safe (tests/test_chroma_server.py ingests while serving)."""
    settings = Settings(data_dir=tmp_path / "data", chroma_url="http://127.0.0.1:8001")
    with hold_store(settings, "serve", "http://127.0.0.1:8000"), hold_store(settings, "ingest"):
        pass
    assert not (tmp_path / "data").exists()
