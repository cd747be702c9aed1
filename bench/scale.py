"""The figures of issue 19 at N chunks: ``python -m bench --scale N`` (section "## Scale").

On the cached store of N chunks (:mod:`bench.scale_store`) served by ``chroma run``:

1. **cold build**: a fresh process opens the collection and builds its lexical index
   (``retriever.warm()``, the Chroma read included): time, and the RSS it retains;
2. ``--replicas`` ``citeqa serve`` processes (``CITEQA_LEXICAL_POLL_S`` as given), each measured
   for RSS once ready;
3. **search, idle**: ``GET /v1/search`` on the first replica for every dev question, twice
   (the query embedding, dense and lexical search, HTTP): p50 and p99; then on it the
   documents listing (``GET /v1/documents``: first page, next page, one document) and the
   overview question, first and again;
4. **visible**: an ingest of ``--visible`` one-chunk documents through citeqa's pipeline
   (:mod:`bench.scale_ingest`, a process of its own); the seconds from the end of its writes
   until a search on each replica finds them;
5. **search while ingesting**: the same searches, on the first replica, while an ingest of
   ``--ingest`` chunks is written and until it is visible: p99 against idle.

Searches in 3 and 5 go one after the other from one client (closed loop), or, with
``--search-rate R``, R a second on a schedule in both phases (open loop, :class:`Clock`).

Then the ingested documents are deleted again (the cached store stays N chunks), and the
bundled corpus is searched in process: p50 and hit@5 on the dev set, for comparison with the
bundled-corpus figures of the main bench. ``--env KEY=VALUE`` passes settings to the replicas
and the cold-build process (e.g. a choice of lexical index).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.baseline import hit_at_k
from bench.load import REPO_ROOT, ApiProcess
from bench.measure import (
    Samples,
    TreeSampler,
    cpu_s,
    latencies_ms,
    load_average,
    rss_mb,
    settle,
    timed,
)
from bench.scale_store import (
    CACHE,
    COLLECTION,
    SEED,
    SENTENCE_CHUNKS,
    ScaleStore,
    bundled_store,
    corpus_vectors,
    ensure_scale_store,
)
from citeqa.config import Settings
from citeqa.embedding import Embedder, MiniLMOnnxEmbedder
from citeqa.store import connect, delete_records, open_index
from evals.dataset import load_dataset
from service.answering.engine import build_engine
from service.answering.extractive import ExtractiveGenerator
from tests.servers import child_env

HEADING = "## Scale: a large collection, replicas, ingest while serving (issue 19)"
DEV_SET = REPO_ROOT / "evals" / "datasets" / "dev.jsonl"
VISIBLE_TAG, INGEST_TAG = "benchvisible", "benchingest"  # a word in every title; the source
REQUEST_TIMEOUT_S = 1800.0  # a search waiting on a full rebuild at 1M takes many minutes
VISIBLE_CAP_S = 1800.0
FIRST_READ_S = 1800.0  # the first read of a large cached store through a fresh server
log = logging.getLogger("bench.scale")
# One client for every search, its connections kept alive as a real client's are: a new
# client for each search added its own setup (about 19 ms a search here) to every figure.
_CLIENT = httpx.Client(timeout=REQUEST_TIMEOUT_S)


@dataclass
class ScaleRun:
    """Everything the section reports."""

    scale: int
    replicas: int
    poll_s: float
    env: dict[str, str]
    store: ScaleStore | None = None
    chunks: int = 0
    sentences: int = 0
    cold_build_s: float = float("nan")
    lexical_rss_mb: float = float("nan")  # RSS the built index retains
    lexical_peak_mb: float = float("nan")  # peak RSS of the cold-build process
    lexical_tree_peak_mb: float = float("nan")  # ... of it and its field workers, summed
    lexical_tree_pss_mb: float = float("nan")  # ... summed PSS (shared pages counted once)
    cold_build_cpu_s: float = float("nan")  # CPU of the process and its workers (Chroma apart)
    server_settle_s: float = float("nan")  # the server's own work after its start, waited out
    server_settle_cpu_s: float = float("nan")  # ... its CPU meanwhile
    cold_build_server_cpu_s: float = float("nan")  # the server's CPU during the cold build
    ready_s: list[float] = field(default_factory=list)  # launch to /readyz, per replica
    replica_rss_mb: list[float] = field(default_factory=list)
    idle: Samples = field(default_factory=lambda: Samples("ms"))
    busy: Samples = field(default_factory=lambda: Samples("ms"))
    # each search's steps (its Server-Timing header), in the order of idle's and busy's values
    idle_steps: list[dict[str, float]] = field(default_factory=list)
    busy_steps: list[dict[str, float]] = field(default_factory=list)
    busy_timeouts: int = 0
    ingest_chunks: int = 0
    ingest_write_s: float = float("nan")
    ingest_visible_s: float = float("nan")  # end of the 10k ingest's writes to visible
    visible_chunks: int = 0
    visible_s: list[float] = field(default_factory=list)  # per replica
    # GET /v1/documents: the first page, the next one, one document; the overview question
    # ("what is this collection about?") the first time on a view and again
    documents_ms: dict[str, float] = field(default_factory=dict)
    bundled_p50: Samples = field(default_factory=lambda: Samples("ms"))
    bundled_hit5: float = float("nan")
    loads: dict[str, str] = field(default_factory=dict)
    total_s: float = 0.0
    rate: float = 0.0  # searches a second on a schedule (Clock); 0: closed loop


def run(
    scale: int,
    replicas: int = 2,
    ingest: int = 10_000,
    visible: int = 1_000,
    poll_s: float = 2.0,
    env: Mapping[str, str] | None = None,
    questions: int | None = None,
    rate: float = 0.0,
) -> ScaleRun:
    """``rate``: searches a second, sent on a schedule (:class:`Clock`); 0, the default: one
    after the other, each when the last is answered."""
    started = time.perf_counter()
    out = ScaleRun(scale, replicas, poll_s, dict(env or {}), rate=rate)
    out.loads["start"] = load_average()
    embedder = MiniLMOnnxEmbedder(threads=Settings().embed_threads)
    bundled = bundled_store(embedder)
    corpus = corpus_vectors(bundled, embedder)
    items = load_dataset(DEV_SET)[:questions]
    texts = [item.question for item in items]
    log.info("scale store of %d chunks: build or open", scale)
    out.store = ensure_scale_store(scale, corpus, embedder)
    del corpus
    gc.collect()
    out.loads["store ready"] = load_average()
    server = out.store.server().start(timeout=600)
    work = Path(tempfile.mkdtemp(prefix="run-scale-", dir=CACHE))
    settings = Settings(chroma_url=server.url, collection=COLLECTION)
    try:
        forget_ingests(settings, embedder)
        index = open_index(connect(settings), COLLECTION, embedder, create=False)
        out.chunks, out.sentences = index.chunks.count(), index.sentences.count()
        # A server that has just opened a store written to can spend minutes on its own work
        # (135 s at 1M in session 23), which a replica started against a running server does
        # not meet: the cold build is timed once the server is quiet, and that wait reported.
        assert server.process is not None
        pid = server.process.pid
        began_cpu = cpu_s(pid)
        out.server_settle_s = settle(pid)
        out.server_settle_cpu_s = cpu_s(pid) - began_cpu
        log.info("cold build of the lexical index, in a process of its own")
        began_cpu = cpu_s(pid)
        cold_build(out, server.url, work / "probe")
        out.cold_build_server_cpu_s = cpu_s(pid) - began_cpu
        out.loads["cold build"] = load_average()
        log.info(
            "cold build %.1f s, retained %.0f MB, peak %.0f MB (%d chunks)",
            out.cold_build_s,
            out.lexical_rss_mb,
            out.lexical_peak_mb,
            out.chunks,
        )
        apis = start_replicas(out, server.url, work)
        try:
            log.info("search, idle")
            clock = Clock(rate)
            for _ in range(2):
                search_all(apis[0].url, texts, out.idle, out.idle_steps, clock)
            out.replica_rss_mb = [rss_mb(api.process.pid) for api in apis if api.process]
            log.info("the documents listing and the collection overview")
            measure_documents(out, apis[0].url)
            log.info("documents: %s ms", out.documents_ms)
            log.info(
                "ready after %s s; idle p50 %.1f ms, p99 %.1f ms; replica RSS %s MB",
                [round(s) for s in out.ready_s],
                out.idle.median,
                out.idle.percentile(99),
                [round(m) for m in out.replica_rss_mb],
            )
            log.info("an ingest of %d chunks, visible on every replica", visible)
            measure_visible(out, server.url, apis, visible)
            out.loads["visible"] = load_average()
            log.info("%d chunks visible after %s s", out.visible_chunks, out.visible_s)
            log.info("search while an ingest of %d chunks is applied", ingest)
            measure_busy(out, server.url, apis[0], texts, ingest)
            out.loads["busy"] = load_average()
            log.info(
                "while ingesting %d chunks (written in %.0f s, visible %.1f s later): "
                "p99 %.1f ms over %d searches, max %.1f ms, %d timeouts",
                out.ingest_chunks,
                out.ingest_write_s,
                out.ingest_visible_s,
                out.busy.percentile(99),
                len(out.busy.values),
                out.busy.high,
                out.busy_timeouts,
            )
        finally:
            for api in apis:
                api.stop()
        forget_ingests(settings, embedder)
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    log.info("bundled corpus: search p50 and hit@5")
    engine = build_engine(bundled, embedder=embedder, generator=ExtractiveGenerator())
    engine.search(texts[0], 5)
    for _ in range(2):
        for text in texts:
            begun = time.perf_counter()
            engine.search(text, 5)
            out.bundled_p50.add((time.perf_counter() - begun) * 1000)
    out.bundled_hit5 = hit_at_k(items, lambda q: [h.title for h in engine.search(q, 5)])
    out.loads["end"] = load_average()
    out.total_s = time.perf_counter() - started
    return out


def replica_env(url: str, data_dir: Path, run: ScaleRun) -> dict[str, str]:
    empty = data_dir / "empty-corpus"  # a replica never ingests the bundled corpus here
    empty.mkdir(parents=True, exist_ok=True)
    return child_env(
        CITEQA_CHROMA_URL=url,
        CITEQA_COLLECTION=COLLECTION,
        CITEQA_DATA_DIR=str(data_dir),
        CITEQA_CORPUS_PATH=str(empty),
        CITEQA_GENERATOR="extractive",
        CITEQA_LEXICAL_POLL_S=str(run.poll_s),
        **run.env,
    )


def cold_build(run: ScaleRun, url: str, data_dir: Path) -> None:
    command = [sys.executable, "-m", "bench.scale", "cold-build", url, str(data_dir)]
    done = subprocess.run(
        command,
        env=replica_env(url, data_dir, run),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"cold build failed: {done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    run.cold_build_s = figures["build_s"]
    run.lexical_rss_mb = figures["retained_mb"]
    run.lexical_peak_mb = figures["peak_mb"]
    run.lexical_tree_peak_mb = figures["tree_peak_mb"]
    run.lexical_tree_pss_mb = figures["tree_pss_peak_mb"]
    run.cold_build_cpu_s = figures["tree_cpu_s"]


def cold_build_main(url: str, data_dir: str) -> None:
    """In a fresh process: open the collection, build the lexical index, print the figures."""
    settings = Settings(chroma_url=url, collection=COLLECTION, data_dir=Path(data_dir))
    embedder = MiniLMOnnxEmbedder(threads=settings.embed_threads)
    engine = build_engine(settings, embedder=embedder, generator=ExtractiveGenerator())
    gc.collect()
    before = rss_mb(os.getpid())
    begun = time.perf_counter()
    with TreeSampler() as tree:  # the build's field workers too (lexical_build_workers)
        engine.retriever.warm()
    build_s = time.perf_counter() - begun
    gc.collect()
    retained = rss_mb(os.getpid()) - before
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {"build_s": build_s, "retained_mb": retained, "peak_mb": peak}
    figures.update(tree_peak_mb=tree.peak_kb / 1024, tree_pss_peak_mb=tree.pss_peak_kb / 1024)
    figures.update(tree_cpu_s=sum(tree.cpu.values()))
    print(json.dumps(figures))


def start_replicas(run: ScaleRun, url: str, work: Path) -> list[ApiProcess]:
    apis = [
        ApiProcess(replica_env(url, work / f"replica-{i}", run), work / f"replica-{i}.log")
        for i in range(run.replicas)
    ]
    launched = time.perf_counter()
    for api in apis:
        api.launch()
    try:
        for api in apis:
            api.wait_ready(REQUEST_TIMEOUT_S)
            run.ready_s.append(time.perf_counter() - launched)
    except BaseException:
        for api in apis:
            api.stop()
        raise
    return apis


def search(url: str, query: str) -> tuple[list[str], dict[str, float]]:
    """The doc ids of a search's hits, and its steps' times (its Server-Timing header)."""
    response = _CLIENT.get(f"{url}/v1/search", params={"q": query, "k": 5})
    if response.is_error:
        raise RuntimeError(f"search {query!r}: {response.status_code} {response.text[:2000]}")
    steps = {}
    for part in response.headers.get("server-timing", "").split(","):
        step, _, ms = part.strip().partition(";dur=")
        if ms:
            steps[step] = float(ms)
    return [hit["doc_id"] for hit in response.json()["hits"]], steps


class Clock:
    """When each search is sent, and from when its latency counts.

    Closed loop (``rate`` 0): a search is sent when the last one is answered and counts from
    then; faster answers are more searches, so the load differs between phases and runs.
    Open loop: search i is due ``i / rate`` s after the first, is sent then (or at once, when
    the last one was answered late), and counts from when it was due: a search that waited
    behind a slow one counts its wait (no coordinated omission). The idle and the busy phase
    then see the same offered load, and their p99s compare the service, not the client's pace.
    """

    def __init__(self, rate: float = 0.0) -> None:
        self.rate = rate
        self.first: float | None = None
        self.sent = 0

    def due(self) -> float:
        """Wait until the next search is due: the ``time.perf_counter()`` it counts from."""
        now = time.perf_counter()
        if not self.rate:
            return now
        if self.first is None:
            self.first = now
        due = self.first + self.sent / self.rate
        self.sent += 1
        if due > now:
            time.sleep(due - now)
        return due


def search_all(
    url: str,
    questions: Sequence[str],
    samples: Samples,
    steps: list[dict[str, float]],
    clock: Clock,
) -> None:
    for question in questions:
        due = clock.due()
        _, taken = search(url, question)
        samples.add((time.perf_counter() - due) * 1000)
        steps.append(taken)


def slowest_steps(samples: Samples, steps: list[dict[str, float]], share: float) -> str:
    """The median time of each step of the slowest ``share`` of the searches, and of all."""
    paired = sorted(zip(samples.values, steps, strict=True), key=lambda p: -p[0])
    if not paired:  # a tiny run's ingest can be applied before a search returns
        return "no searches"
    slow = paired[: max(1, round(len(paired) * share))]

    def medians(searches: list[tuple[float, dict[str, float]]]) -> str:
        names = dict.fromkeys(step for _, taken in searches for step in taken)
        cells = [f"HTTP {statistics.median(ms for ms, _ in searches):,.0f}"]
        for step in names:
            cells.append(f"{step} {statistics.median(t.get(step, 0.0) for _, t in searches):,.0f}")
        return ", ".join(cells)

    return f"slowest {len(slow):,}: {medians(slow)}; all {len(paired):,}: {medians(paired)}"


def writer(run: ScaleRun, url: str, chunks: int, tag: str) -> subprocess.Popen[str]:
    """An ingest of ``chunks`` synthetic chunks, with the replicas' settings (``run.env``:
    an ingest's own, such as ``CITEQA_INGEST_MAX_RECORDS_PER_S``, apply to it)."""
    command = [sys.executable, "-m", "bench.scale_ingest", "--chroma", url]
    command += ["--collection", COLLECTION, "--chunks", str(chunks), "--tag", tag]
    return subprocess.Popen(
        command,
        env=child_env(**run.env),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(process: subprocess.Popen[str]) -> dict[str, object]:
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"synthetic ingest failed: {stderr[-3000:]}")
    return dict(json.loads(stdout.strip().splitlines()[-1]))


def shows(url: str, report: Mapping[str, object]) -> bool:
    """Whether a search on ``url`` finds the last document of an ingest's ``report``."""
    return str(report["probe_doc"]) in search(url, str(report["probe"]))[0]


DOCUMENTS_REPEAT = 5  # each listing request, the median taken
OVERVIEW = "What is this collection about?"


def measure_documents(run: ScaleRun, url: str) -> None:
    """The documents listing as the web page's Documents view reads it (the first page of
    50, the next, one document) and the overview question, on a ready replica."""

    def get(path: str, **params: str) -> dict[str, Any]:
        response = _CLIENT.get(f"{url}{path}", params=params)
        response.raise_for_status()
        return dict(response.json())

    def median_ms(request: Callable[[], object]) -> float:
        return latencies_ms(lambda _: request(), [""] * DOCUMENTS_REPEAT).median

    first = get("/v1/documents", limit="50")
    cursor, doc_id = first["next_cursor"], first["data"][-1]["id"]
    run.documents_ms["first page"] = median_ms(lambda: get("/v1/documents", limit="50"))
    run.documents_ms["next page"] = median_ms(
        lambda: get("/v1/documents", limit="50", cursor=cursor)
    )
    run.documents_ms["one document"] = median_ms(lambda: get(f"/v1/documents/{doc_id}"))
    ask = {"question": OVERVIEW}
    for key in ("overview, first", "overview, again"):
        response, seconds = timed(lambda: _CLIENT.post(f"{url}/v1/ask", json=ask))
        response.raise_for_status()
        run.documents_ms[key] = seconds * 1000


def measure_visible(run: ScaleRun, url: str, apis: list[ApiProcess], chunks: int) -> None:
    report = finished(writer(run, url, chunks, VISIBLE_TAG))
    written = float(report["written"])  # type: ignore[arg-type]
    run.visible_chunks = int(report["chunks"])  # type: ignore[call-overload]
    pending = {api.url: float("inf") for api in apis}
    while any(s == float("inf") for s in pending.values()):
        for api_url, seconds in pending.items():
            if seconds == float("inf") and shows(api_url, report):
                pending[api_url] = time.time() - written
        if time.time() - written > VISIBLE_CAP_S:
            break
        time.sleep(0.2)
    run.visible_s = list(pending.values())


def measure_busy(
    run: ScaleRun, url: str, api: ApiProcess, questions: Sequence[str], chunks: int
) -> None:
    """Searches while the ingest runs and until its documents are visible on ``api``, sent
    as :class:`Clock` says (``run.rate``); only those due after the ingest started writing
    count."""
    clock = Clock(run.rate)
    process = writer(run, url, chunks, INGEST_TAG)
    timed: list[tuple[float, float, dict[str, float]]] = []  # wall start, ms, steps
    visible_at = None
    report: dict[str, object] | None = None
    turn = 0
    while visible_at is None:
        question = questions[turn % len(questions)]
        turn += 1
        due = clock.due()
        begun = time.time() - (time.perf_counter() - due)
        try:
            _, steps = search(api.url, question)
            timed.append((begun, (time.perf_counter() - due) * 1000, steps))
        except httpx.TimeoutException:
            run.busy_timeouts += 1
            timed.append((begun, REQUEST_TIMEOUT_S * 1000, {}))
        if report is None and process.poll() is not None:
            report = finished(process)
            written = float(report["written"])  # type: ignore[arg-type]
        if report is not None and shows(api.url, report):
            visible_at = time.time()
        elif report is not None and time.time() - written > VISIBLE_CAP_S:
            break
    assert report is not None
    started, written = float(report["started"]), float(report["written"])  # type: ignore[arg-type]
    run.ingest_chunks = int(report["chunks"])  # type: ignore[call-overload]
    run.ingest_write_s = written - started
    run.ingest_visible_s = (visible_at - written) if visible_at else float("inf")
    for begun, ms, steps in timed:
        if begun >= started:
            run.busy.add(ms)
            run.busy_steps.append(steps)


def forget_ingests(settings: Settings, embedder: Embedder) -> None:
    """Delete what earlier runs ingested: the cached store goes back to N chunks. It is the
    first read of the collection after the server started, which at 1M chunks takes longer
    than citeqa's request bound (``CHROMA_TIMEOUT``, 30 s) while the server reads its files
    in: this client waits up to :data:`FIRST_READ_S`."""
    client = connect(settings)
    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(FIRST_READ_S, connect=3.0)
    index = open_index(client, COLLECTION, embedder, create=False)
    for tag in (VISIBLE_TAG, INGEST_TAG):
        delete_records(index, {"source": f"bench:{tag}"}, client.get_max_batch_size())


# --------------------------------------------------------------------------- report


def today(benchmarks: str) -> tuple[str, str]:
    """The bundled-corpus search p50 and hit@5 the main bench last wrote in BENCHMARKS.md."""
    p50 = re.search(r"\| Search p50, bundled corpus \| [^|]+ \| ([^|]+) \|", benchmarks)
    hit = re.search(r"\| hit@5 \(answerable dev questions\) \| ([^|]+) \|", benchmarks)
    return (p50.group(1).strip() if p50 else "n/a"), (hit.group(1).strip() if hit else "n/a")


def _ms(value: float) -> str:
    return f"{value:,.1f} ms" if value == value else "n/a"


def _s(value: float) -> str:
    if value != value:
        return "n/a"
    return f"> {VISIBLE_CAP_S:.0f} s (gave up)" if value == float("inf") else f"{value:,.1f} s"


def _pace(rate: float) -> str:
    if not rate:
        return "one client, closed loop (each sent when the last is answered)"
    return (
        f"one client, open loop at {rate:g} a second, idle and busy alike (each counted from "
        "when it was due: a wait behind a slow one counts; `--search-rate`)"
    )


_LISTING = ("first page", "next page", "one document")
_OVERVIEWS = ("overview, first", "overview, again")


def section(run: ScaleRun, benchmarks: str) -> str:
    store = run.store
    assert store is not None
    p50_today, hit_today = today(benchmarks)
    idle_p99, busy_p99 = run.idle.percentile(99), run.busy.percentile(99)
    ratio = busy_p99 / idle_p99 if idle_p99 else float("nan")
    settings = ", ".join(f"{k}={v}" for k, v in run.env.items()) or "the defaults"
    rows = [
        ("Chunks / sentence records in the store", f"{run.chunks:,} / {run.sentences:,}", ""),
        (
            "Search p50, idle (HTTP, query embedding included)",
            _ms(run.idle.median),
            "<= 80 ms at 1M",
        ),
        ("Search p99, idle", _ms(idle_p99), ""),
        (
            f"Search p99 while an ingest of {run.ingest_chunks:,} chunks is applied",
            f"{_ms(busy_p99)} ({ratio:.1f}x idle; n={len(run.busy.values)}, "
            f"max {_ms(run.busy.high)}, timeouts {run.busy_timeouts})",
            "<= 2x p99 idle",
        ),
        (
            "Where searches' time goes: median ms of HTTP and of each step (Server-Timing) "
            "of the slowest 1% and of all, busy / idle",
            f"busy: {slowest_steps(run.busy, run.busy_steps, 0.01)} / idle: "
            f"{slowest_steps(run.idle, run.idle_steps, 0.01)}",
            "",
        ),
        (
            "Lexical index: cold build (Chroma read included), one process and its field "
            "workers / their CPU (Chroma server apart)",
            f"{_s(run.cold_build_s)} / {_s(run.cold_build_cpu_s)}",
            "<= 5 min",
        ),
        (
            "Chroma server: its own work after it started, waited out before the cold build / "
            "its CPU then / its CPU during the cold build",
            f"{_s(run.server_settle_s)} / {_s(run.server_settle_cpu_s)} / "
            f"{_s(run.cold_build_server_cpu_s)}",
            "",
        ),
        (
            "Lexical index: RSS retained / peak RSS of that process / peak RSS (PSS) of it "
            "and its workers, summed",
            f"{run.lexical_rss_mb:,.0f} MB / {run.lexical_peak_mb:,.0f} MB / "
            f"{run.lexical_tree_peak_mb:,.0f} MB ({run.lexical_tree_pss_mb:,.0f} MB)",
            "<= 1.5 GB per replica",
        ),
        (
            "Replicas: launch to ready / RSS once ready",
            " ; ".join(f"{s:,.0f} s" for s in run.ready_s)
            + " / "
            + " ; ".join(f"{m:,.0f} MB" for m in run.replica_rss_mb),
            "",
        ),
        (
            "Documents: GET /v1/documents first page of 50 / next page / one document "
            f"(median of {DOCUMENTS_REPEAT}); the overview question ({OVERVIEW!r}) first / again",
            " / ".join(_ms(run.documents_ms.get(k, float("nan"))) for k in _LISTING)
            + "; "
            + " / ".join(_ms(run.documents_ms.get(k, float("nan"))) for k in _OVERVIEWS),
            "",
        ),
        (
            f"Ingest of {run.visible_chunks:,} chunks: end of writes to visible, per replica",
            " ; ".join(_s(s) for s in run.visible_s),
            "<= 15 s on every replica",
        ),
        (
            f"Ingest of {run.ingest_chunks:,} chunks: writes / end of writes to visible",
            f"{_s(run.ingest_write_s)} / {_s(run.ingest_visible_s)}",
            "",
        ),
        (
            "Bundled corpus: search p50 in process / hit@5 (dev set)",
            f"{_ms(run.bundled_p50.median)} / {run.bundled_hit5:.1%}",
            f"main bench: {p50_today} / {hit_today}",
        ),
    ]
    table = "\n".join(f"| {name} | {value} | {goal} |" for name, value, goal in rows)
    loads = "; ".join(f"{phase} {value}" for phase, value in run.loads.items())
    built = "built now" if store.built_now else "cached"
    cpu = f", {store.build_cpu_s / 60:.0f} min of CPU" if store.build_cpu_s else ""
    return f"""{HEADING}

`python -m bench --scale {run.scale}` ({run.replicas} replica(s),
CITEQA_LEXICAL_POLL_S={run.poll_s}, other settings: {settings}), {run.total_s / 60:.0f} min.
Searches: {_pace(run.rate)}.
Load average (1/5/15 min) by phase: {loads}.

| Figure | Measured | Issue 19 asks |
| --- | --- | --- |
{table}

How it was made: the store ({built}; its build took {store.build_s / 60:.0f} min{cpu}) holds
the bundled corpus (real embeddings) and synthetic documents of two chunks, each chunk as many
real sentences of the bundled corpus as a real chunk holds, drawn at random (seed {SEED}), its
vector the normalised mean of its sentences' real vectors (bench/synthetic.py,
bench/scale_store.py), written by an embedded Chroma in batches of 5,000 (then served by
`chroma run`), with a change log record per document as citeqa's ingest writes. Synthetic
chunks have sentence records up to the {SENTENCE_CHUNKS:,}th only (writing 4 more records
per chunk beyond would take hours here), so past that size the dense sentence search is over
a smaller collection than a real library of that size has. The synthetic chunks draw on the
corpus' vocabulary (a few thousand terms): a real library's terms are far more selective, so
lexical search times here are pessimistic. The ingests are synthetic one-chunk documents
written by citeqa's own ingest pipeline in a process of their own (bench/scale_ingest.py), so
any lexical index design sees them as a real ingest. Query embeddings are real (the model runs
per query, in the replica).
"""


if __name__ == "__main__":
    if sys.argv[1:2] == ["cold-build"]:
        cold_build_main(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("usage: python -m bench.scale cold-build CHROMA_URL DATA_DIR")
