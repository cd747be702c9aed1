"""What citeqa guarantees with a real weak LLM: answerable dev questions streamed through the
HTTP API with llama-cpp-python's server running the packaged gemma-3-270m (tests/llama_server.py).

    python -m bench.real_llm [N] [--raw]   # N questions (default 60); --raw: no stop sequences
                                           # and no frequency penalty (the validator alone)

For each answer: the streamed text equals the final answer, no 5xx, and the independent check of
evals/metrics.py (lines without content, repeated sentences, names absent from the cited
source). Needs an ingested store (CITEQA_DATA_DIR) and the dev extra. Prints one JSON line.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from citeqa.config import Settings
from evals.dataset import load_dataset
from evals.metrics import HYGIENE_COUNTS, answer_hygiene
from service.answering.engine import build_engine
from service.api.app import create_app
from tests.live_server import LiveServer
from tests.llama_server import MODEL_NAME, assemble_model, running_llama
from tests.paths import REPO_ROOT


def streamed(url: str, question: str) -> tuple[int, list[dict[str, Any]]]:
    body = {"model": "citeqa", "stream": True, "messages": [{"role": "user", "content": question}]}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
        text = "".join(response.iter_text())
    events = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: {")]
    return response.status_code, events


def tally(url: str, question: str, totals: dict[str, Any]) -> None:
    """Stream one answer and count what it shows into ``totals``."""
    status, events = streamed(url, question)
    totals["items"] += 1
    if status >= 500:
        totals["5xx"] += 1
        return
    final = events[-1]
    if "error" in final:
        totals["stream_errors"] += 1
        return
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    totals["stream_equals_answer"] += text == final["answer"]
    totals["answered"] += not final["refused"]
    for name, value in answer_hygiene(
        final["answer"], events[0]["sources"], final["refused"]
    ).items():
        totals[name] += value


def main(count: int, raw: bool) -> dict[str, Any]:
    dev = load_dataset(REPO_ROOT / "evals" / "datasets" / "dev.jsonl")
    questions = [i.question for i in dev if i.type != "unanswerable"][:count]
    totals: dict[str, Any] = {"items": 0, "answered": 0, "stream_equals_answer": 0, "5xx": 0}
    totals.update(dict.fromkeys(["stream_errors", *HYGIENE_COUNTS], 0))
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="citeqa-llm-"))
    with running_llama(assemble_model(folder), folder / "server.log") as url:
        update: dict[str, Any] = {"generator": "llm", "llm_base_url": url, "llm_model": MODEL_NAME}
        update.update(llm_max_tokens=200, llm_timeout_s=120, llm_deadline_s=180)
        if raw:
            update.update(llm_stop=[], llm_frequency_penalty=0.0)
        settings = Settings().model_copy(update=update)
        engine = build_engine(settings)
        with LiveServer(create_app(settings, engine_factory=lambda _: engine)) as live:
            for question in questions:
                tally(live.url, question, totals)
    shutil.rmtree(folder)
    mode = "raw" if raw else "as shipped"
    return {"mode": mode, **totals, "seconds": round(time.perf_counter() - started)}


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--raw"]
    print(json.dumps(main(int(args[0]) if args else 60, "--raw" in sys.argv)))
