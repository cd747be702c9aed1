"""Throughput of the OpenAI-compatible embedder against a server with a fixed latency, by
``embed_concurrency`` (issue 19: it must grow up to 8).

    python -m bench.embedder_concurrency [--quick] [--no-write]

The server is the tests' scripted fake (tests/fakes/openai_server.py) in a process of its own,
so its threads do not share the client's interpreter lock: it answers every ``/v1/embeddings``
request ``LATENCY_S`` after it arrives, with 384-number vectors (base64, as the SDK asks by
default). The client is citeqa's :class:`~citeqa.embedding.OpenAIEmbedder` with the default
batch size; each pass embeds the same texts once per concurrency, in turn, so every
concurrency sees the same background load. Rewrites its own section of BENCHMARKS.md;
``python -m bench`` appends the same section to the report it writes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench import report
from bench.load import REPO_ROOT
from bench.measure import Samples, load_average, machine
from citeqa.config import Settings
from citeqa.embedding import OpenAIEmbedder

HEADING = "## Embedding over HTTP, by concurrency"
OUTPUT = REPO_ROOT / "BENCHMARKS.md"
LATENCY_S = 0.05
DIM = 384
CONCURRENCIES = (1, 2, 4, 8)
TEXT_WORDS = 60  # about the length of a sentence and a half; ingest sends sentences and chunks

_SERVER = f"""
import sys, time
from tests.fakes.openai_server import FakeOpenAIServer
with FakeOpenAIServer(embedding_dim={DIM}, embedding_latency={LATENCY_S}) as srv:
    print(srv.port, flush=True)
    sys.stdin.read()  # until the bench closes our stdin
"""


@dataclass
class Result:
    texts: int
    batch_size: int
    passes: int
    by_concurrency: dict[int, Samples] = field(default_factory=dict)
    date: str = ""
    machine: dict[str, str] = field(default_factory=dict)
    load_start: str = ""
    load_end: str = ""
    openai: str = ""


@contextmanager
def fake_server() -> Iterator[str]:
    """The fake OpenAI server in a child process; yields its base URL."""
    child = subprocess.Popen(
        [sys.executable, "-c", _SERVER],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)


def texts(count: int) -> list[str]:
    """Seeded pseudo-sentences of ``TEXT_WORDS`` words (the fake ignores their meaning)."""
    rng = random.Random(19)
    vocabulary = [f"w{n}" for n in range(5000)]
    return [" ".join(rng.choices(vocabulary, k=TEXT_WORDS)) for _ in range(count)]


def run(quick: bool = False) -> Result:
    count, passes = (256, 1) if quick else (1024, 5)
    batch_size = Settings().embed_batch_size
    result = Result(count, batch_size, passes, {c: Samples("texts/s") for c in CONCURRENCIES})
    result.date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    result.machine, result.load_start = machine(), load_average()
    result.openai = metadata.version("openai")
    inputs = texts(count)
    with fake_server() as url:
        clients = {
            c: OpenAIEmbedder("fake-embedder", url, None, batch_size=batch_size, concurrency=c)
            for c in CONCURRENCIES
        }
        for client in clients.values():
            client.embed(inputs[: batch_size * client.concurrency])  # connections opened
        for _ in range(passes):
            for concurrency, client in clients.items():
                started = time.perf_counter()
                vectors = client.embed(inputs)
                elapsed = time.perf_counter() - started
                assert vectors.shape == (count, DIM)
                result.by_concurrency[concurrency].add(count / elapsed)
        for client in clients.values():
            client.close()
    result.load_end = load_average()
    return result


def ceiling(result: Result, concurrency: int) -> float:
    """texts/s if every request took exactly the server's latency and nothing else."""
    requests = math.ceil(result.texts / result.batch_size)
    rounds = math.ceil(requests / concurrency)
    return result.texts / (rounds * LATENCY_S)


def section(result: Result) -> str:
    base = result.by_concurrency[1].median
    rows = []
    for concurrency, samples in result.by_concurrency.items():
        cap = ceiling(result, concurrency)
        rows.append(
            f"| {concurrency} | {samples.median:,.0f} (min {samples.low:,.0f}, max "
            f"{samples.high:,.0f}, n={len(samples.values)}) | {samples.median / base:.2f}x | "
            f"{cap:,.0f} | {samples.median / cap:.0%} |"
        )
    facts = result.machine
    return f"""{HEADING}

Written by `python -m bench.embedder_concurrency` (and by `python -m bench`) on {result.date}.
Machine: {facts.get("cores", "?")} cores ({facts.get("cpu", "?")}), {facts.get("ram", "?")}.
Load average (1/5/15 min): {result.load_start} at start, {result.load_end} at end.
openai {result.openai}.

`OpenAIEmbedder.embed` of {result.texts:,} texts of {TEXT_WORDS} words, in requests of
{result.batch_size} texts (`CITEQA_EMBED_BATCH_SIZE`, the default).
The server is the tests' fake OpenAI server in a process of its own: it answers each
`/v1/embeddings` request {LATENCY_S * 1000:.0f} ms after it arrives, with vectors of {DIM}
numbers (base64, as the SDK asks).
{result.passes} pass(es), each running every concurrency in turn; median (min, max) over passes.
Ceiling: the rate if a request cost nothing but the server's wait, i.e. the texts divided by
(rounds of `concurrency` requests x {LATENCY_S * 1000:.0f} ms).

| `CITEQA_EMBED_CONCURRENCY` | texts/s | vs 1 | ceiling texts/s | of ceiling |
| ---: | --- | ---: | ---: | ---: |
{chr(10).join(rows)}

Below the ceiling is the work per request on this machine's cores, client and fake server
together: building and sending the request, JSON and base64 decoding, numpy. Against a real
embedding server the latency is the model's, and the server's batching and cores bound the
concurrency worth setting.
"""


def replace_section(document: str, new: str) -> str:
    """``document`` with this bench's section replaced by ``new`` (appended when absent)."""
    return report.replace_section(document, HEADING, new)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.embedder_concurrency", description=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="256 texts, one pass")
    parser.add_argument("--no-write", action="store_true", help="print, keep BENCHMARKS.md")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    text = section(run(args.quick))
    if args.no_write:
        print(text)
    else:
        old = args.output.read_text(encoding="utf-8") if args.output.exists() else "# Benchmarks\n"
        args.output.write_text(replace_section(old, text), encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
