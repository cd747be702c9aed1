"""Real servers and small corpora for the integration tests of server mode and faults.

* :class:`ChromaServer`: ``chroma run`` (the CLI of the chromadb package) on a free 127.0.0.1
  port, with stop / start on the same path and port, freeze (SIGSTOP) and thaw;
* :func:`write_corpus`: a folder of small, made-up papers, each with checkable facts;
* :func:`expected_ids`: the chunk and sentence ids a folder must produce, from the chunker
  itself (the ingest pipeline is not asked);
* :func:`store_state`: what a store holds, and the consistency problems found in it.

``citeqa serve`` subprocesses come from :class:`bench.load.ApiProcess`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from citeqa.config import Settings
from citeqa.embedding import Embedder
from citeqa.store import SENTENCE_SUFFIX, Index
from ingest.chunker import SentenceChunker
from ingest.pipeline import quotable
from ingest.readers import read_source
from ingest.run import ingest_paths

CHROMA_BIN = Path(sys.executable).with_name("chroma")
TOPICS = [
    ("protein folding", "residues", "GPUs"),
    ("speech recognition", "hours of audio", "TPUs"),
    ("code generation", "repositories", "GPUs"),
    ("weather forecasting", "stations", "CPUs"),
    ("machine translation", "sentence pairs", "GPUs"),
    ("image segmentation", "masks", "TPUs"),
    ("graph learning", "molecules", "GPUs"),
    ("robot control", "episodes", "CPUs"),
]
NAMES = [
    "Zorblax",
    "Quintor",
    "Velmora",
    "Strandel",
    "Oakhurst",
    "Pellucid",
    "Marrow",
    "Tessel",
    "Kyanite",
    "Brevis",
]


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(**overrides: str) -> dict[str, str]:
    """The environment for citeqa subprocesses: offline, no telemetry, no inherited CITEQA_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env.update(HF_HUB_OFFLINE="1", ANONYMIZED_TELEMETRY="False", PYTHONUNBUFFERED="1")
    env.update(overrides)
    return env


def api_env(settings: Settings, data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a ``citeqa serve`` on ``settings``' Chroma server, with its own data
    dir, answering offline (extractive)."""
    assert settings.chroma_url
    return child_env(
        CITEQA_CHROMA_URL=settings.chroma_url,
        CITEQA_COLLECTION=settings.collection,
        CITEQA_DATA_DIR=str(data_dir),
        CITEQA_GENERATOR="extractive",
        **overrides,
    )


def wait_until_up(
    process: subprocess.Popen[bytes], url: str, timeout: float, log: Path, poll_s: float = 0.1
) -> None:
    """Return once ``url`` answers 200; raise (with the log's tail) when the process exits or
    ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll_s)
    raise TimeoutError(f"{url} not up after {timeout} s: {log.read_text()[-2000:]}")


def stop_process(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class ChromaServer:
    """``chroma run --path PATH --host 127.0.0.1 --port PORT`` that tests can stop and restart."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path = path
        self.port = port or free_port()
        self.log = path.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ChromaServer:
        self.path.mkdir(parents=True, exist_ok=True)
        command = [str(CHROMA_BIN), "run", "--path", str(self.path)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        wait_until_up(self.process, f"{self.url}/api/v2/heartbeat", timeout, self.log)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); the data stays on disk."""
        if self.process is None:
            return
        self.thaw()
        stop_process(self.process)
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)


@contextmanager
def running_chroma(path: Path) -> Iterator[ChromaServer]:
    """A ``chroma run`` server on ``path`` for the duration of the block."""
    server = ChromaServer(path).start()
    try:
        yield server
    finally:
        server.stop()


def ingested_corpus(
    chroma: ChromaServer, collection: str, root: Path, count: int, embedder: Embedder
) -> tuple[Settings, Any]:
    """``count`` made-up papers written under ``root`` and ingested over HTTP into
    ``collection``: the settings that reach them, and the ingest summary."""
    folder = write_corpus(root / "papers", count)
    settings = Settings(
        chroma_url=chroma.url, collection=collection, data_dir=root / "data", generator="extractive"
    )
    (summary,) = ingest_paths(settings, [folder], embedder=embedder)
    settings.corpus_path = folder
    return settings, summary


def paper_name(i: int) -> str:
    return f"{NAMES[i % len(NAMES)]}-{i}"


def paper(i: int, words: int = 0, marker: str = "") -> tuple[str, str]:
    """Title and text of made-up paper ``i``; ``words`` > 0 pads it with extra sentences
    (``marker`` goes into every padded sentence, to tell versions of one paper apart)."""
    rng = random.Random(i)
    topic, unit, device = TOPICS[i % len(TOPICS)]
    name = paper_name(i)
    title = f"{name}: scaling {topic} with sparse experts"
    gpus, days, size = rng.randint(8, 512), rng.randint(2, 90), rng.randint(1, 900)
    score = round(rng.uniform(40, 95), 1)
    sentences = [
        f"We present {name}, a model for {topic}.",
        f"{name} was trained on {gpus} {device} for {days} days.",
        f"The training set holds {size} thousand {unit}.",
        f"On the standard benchmark {name} reaches {score} percent accuracy.",
        f"Code and weights are released at https://example.org/{name.lower()}.",
    ]
    extra = 0
    while extra < words:
        sentence = (
            f"In ablation {len(sentences)} the {marker} variant of {name} changes layer "
            f"{rng.randint(1, 48)} and keeps {rng.randint(1, 99)} percent of the {unit}."
        )
        sentences.append(sentence)
        extra += len(sentence.split())
    return title, " ".join(sentences)


def write_paper(folder: Path, i: int, words: int = 0, marker: str = "") -> Path:
    title, text = paper(i, words, marker)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"paper-{i:03d}.md"
    path.write_text(f"# {title}\n\n{text}\n", encoding="utf-8")
    return path


def write_corpus(folder: Path, count: int) -> Path:
    """``count`` small papers as Markdown files (one chunk each)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_paper(folder, i)
    return folder


@dataclass
class Expected:
    chunks: set[str]
    sentences: set[str]
    by_doc: dict[str, set[str]] = field(default_factory=dict)  # doc id -> chunk ids


def expected_ids(folder: Path, embedder: Embedder, max_tokens: int = 200) -> Expected:
    """The chunk and sentence ids the folder should produce, straight from the chunker."""
    chunker = SentenceChunker(max_tokens=max_tokens, count_tokens=embedder.count_tokens)
    out = Expected(set(), set())
    for document in read_source(folder).documents:
        for node in chunker.chunk_document(document):
            out.chunks.add(node.node_id)
            out.by_doc.setdefault(str(node.metadata["doc_id"]), set()).add(node.node_id)
            for position in range(len(json.loads(str(node.metadata["sentences"])))):
                out.sentences.add(f"{node.node_id}/s{position}")
    return out


@dataclass
class StoreState:
    chunk_ids: list[str]
    sentence_ids: list[str]
    problems: list[str]


def store_state(index: Index) -> StoreState:
    """Every record id, and what breaks the pipeline's promises: a chunk without all of its
    sentences, a sentence whose chunk is gone, a duplicate id."""
    chunks = index.chunks.get(include=["metadatas", "documents"])
    sentences = index.sentences.get(include=["metadatas"])
    problems: list[str] = []
    chunk_ids, sentence_ids = list(chunks["ids"]), list(sentences["ids"])
    for kind, ids in (("chunk", chunk_ids), ("sentence", sentence_ids)):
        if len(ids) != len(set(ids)):
            problems.append(f"duplicate {kind} ids")
    present = set(sentence_ids)
    for cid, meta, text in zip(
        chunk_ids, chunks["metadatas"] or [], chunks["documents"] or [], strict=True
    ):
        at = int(meta["prefix_len"]) - int(meta["start"])  # document offset -> chunk text
        spans = json.loads(str(meta["sentences"]))
        wanted = {
            f"{cid}/s{p}" for p, (s, e) in enumerate(spans) if quotable(text[s + at : e + at])
        }
        if not wanted <= present:
            problems.append(f"chunk {cid} lacks sentences {sorted(wanted - present)}")
    known = set(chunk_ids)
    for sid, meta in zip(sentence_ids, sentences["metadatas"] or [], strict=True):
        if meta["chunk_id"] not in known:
            problems.append(f"orphan sentence {sid}")
    return StoreState(chunk_ids, sentence_ids, problems)


def collection_names(name: str) -> tuple[str, str]:
    return name, name + SENTENCE_SUFFIX
