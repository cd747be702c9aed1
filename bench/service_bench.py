"""The HTTP service as users run it: `citeqa serve` in a subprocess on 127.0.0.1.

* startup: process start to the first ``/readyz`` 200, and RSS (VmRSS) once ready (idle);
* /v1/ask latency seen by a client vs the engine's own ``timings_ms.total`` in the same response:
  the difference is the web layer (HTTP, FastAPI, validation, threadpool, JSON), client included;
* requests/s at concurrency 1 and 8 for a bounded time;
* RSS after a given number of questions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.measure import Samples, percentile_runs, rss_mb
from citeqa.config import Settings

log = logging.getLogger("bench")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    ready_s: float


@dataclass
class ServiceResult:
    startup_s: Samples = field(default_factory=lambda: Samples("s"))
    rss_idle_mb: Samples = field(default_factory=lambda: Samples("MB"))
    rss_after_mb: float = 0.0
    questions_asked: int = 0
    e2e_runs: list[Samples] = field(default_factory=list)
    engine_runs: list[Samples] = field(default_factory=list)
    overhead_runs: list[Samples] = field(default_factory=list)
    healthz_runs: list[Samples] = field(default_factory=list)
    rps: dict[int, float] = field(default_factory=dict)
    errors: int = 0
    imports_s: Samples = field(default_factory=lambda: Samples("s"))
    model_s: Samples = field(default_factory=lambda: Samples("s"))
    memory: dict[str, float] = field(default_factory=dict)  # step -> RSS MB (last probe)
    in_process_overhead: Samples = field(default_factory=lambda: Samples("ms"))

    @property
    def overhead_p50(self) -> Samples:
        return percentile_runs(self.overhead_runs, 50)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command() -> list[str]:
    script = shutil.which("citeqa", path=str(Path(sys.executable).parent))
    return [script, "serve"] if script else [sys.executable, "-m", "cli", "serve"]


def _environment(store: Settings, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env.update(
        CITEQA_DATA_DIR=str(store.data_dir.resolve()),
        CITEQA_COLLECTION=store.collection,
        CITEQA_GENERATOR="extractive",
        CITEQA_PORT=str(port),
        CITEQA_HOST="127.0.0.1",
        HF_HUB_OFFLINE="1",
    )
    return env


@contextmanager
def serve(store: Settings, log: Path, timeout_s: float = 180.0) -> Iterator[Server]:
    """`citeqa serve` on a free port; yields once /readyz answers 200, stops it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(
            _command(), env=_environment(store, port), stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            ready = _wait_ready(process, url, started, timeout_s, log)
            yield Server(process, url, ready)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(
    process: subprocess.Popen[bytes], url: str, started: float, timeout_s: float, log: Path
) -> float:
    with httpx.Client(timeout=5.0) as client:
        while time.perf_counter() - started < timeout_s:
            if process.poll() is not None:
                raise RuntimeError(f"citeqa serve exited with {process.returncode}; see {log}")
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    raise RuntimeError(f"citeqa serve not ready after {timeout_s:.0f} s; see {log}")


PROBE = """
import gc, json, time
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))
out = {"python": rss()}
t = time.perf_counter()
import cli.main, ingest.run, service.api.app, service.answering.engine, uvicorn
out["imports_s"], out["imports"] = time.perf_counter() - t, rss()
from citeqa.embedding import MiniLMOnnxEmbedder
t = time.perf_counter()
first = MiniLMOnnxEmbedder(); first.embed(["warm-up"])
out["model_s"], out["model"] = time.perf_counter() - t, rss()
second = MiniLMOnnxEmbedder(); second.embed(["warm-up"]); del second; gc.collect()
out["second_model_freed"] = rss()
print(json.dumps(out))
"""


def startup_probe() -> dict[str, float]:
    """In a fresh interpreter: import time, model load time, and RSS (MB) after each step,
    including after a second model is loaded and freed (as `citeqa serve` did before it
    reused one model for its ingest check and its engine)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=600
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_service(
    store: Settings,
    questions: list[str],
    log: Path,
    startups: int,
    runs: int,
    rps_seconds: float,
    total_questions: int,
) -> ServiceResult:
    result = ServiceResult()
    for _ in range(startups):
        probe = startup_probe()
        result.imports_s.add(probe.pop("imports_s"))
        result.model_s.add(probe.pop("model_s"))
        result.memory = probe
    for _ in range(startups - 1):
        with serve(store, log) as server:
            _record_startup(server, result)
    with serve(store, log) as server:
        _record_startup(server, result)
        with httpx.Client(base_url=server.url, timeout=120.0) as client:
            for _ in range(runs):
                _latency_run(client, questions, result)
        for concurrency in (1, 8):
            result.rps[concurrency] = _throughput(
                server.url, questions, concurrency, rps_seconds, result
            )
        remaining = total_questions - result.questions_asked
        if remaining > 0:
            _ask_many(server.url, questions, remaining, result)
        result.rss_after_mb = rss_mb(server.process.pid)
    return result


def _record_startup(server: Server, result: ServiceResult) -> None:
    result.startup_s.add(server.ready_s)
    result.rss_idle_mb.add(rss_mb(server.process.pid))


def _ask(client: httpx.Client, question: str) -> tuple[float, float] | None:
    """(client-side ms, engine total ms) of one /v1/ask, or None on an error status."""
    started = time.perf_counter()
    response = client.post("/v1/ask", json={"question": question})
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        return None
    return elapsed, float(response.json()["timings_ms"]["total"])


def _count(result: ServiceResult, timing: tuple[float, float] | None) -> None:
    result.questions_asked += 1
    result.errors += timing is None


def _latency_run(client: httpx.Client, questions: list[str], result: ServiceResult) -> None:
    e2e, engine, overhead, healthz = Samples("ms"), Samples("ms"), Samples("ms"), Samples("ms")
    for question in questions:
        timing = _ask(client, question)
        _count(result, timing)
        if timing is None:
            continue
        e2e.add(timing[0])
        engine.add(timing[1])
        overhead.add(timing[0] - timing[1])
        started = time.perf_counter()
        client.get("/healthz")
        healthz.add((time.perf_counter() - started) * 1000)
    result.e2e_runs.append(e2e)
    result.engine_runs.append(engine)
    result.overhead_runs.append(overhead)
    result.healthz_runs.append(healthz)


def _throughput(
    url: str, questions: list[str], concurrency: int, seconds: float, result: ServiceResult
) -> float:
    """Completed requests per second with ``concurrency`` clients asking back to back.

    Clients are built before the clock starts (an httpx client takes a while to build on a
    loaded machine); requests started before the deadline are waited for and counted.
    """
    clients = [httpx.Client(base_url=url, timeout=120.0) for _ in range(concurrency)]
    done = [0] * concurrency
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def worker(slot: int) -> None:
        start.wait()
        i = slot
        while time.perf_counter() < deadline[0]:
            try:
                timing = _ask(clients[slot], questions[i % len(questions)])
            except httpx.HTTPError as exc:
                log.warning("request failed at concurrency %d: %r", concurrency, exc)
                timing = None
            with lock:
                _count(result, timing)
            done[slot] += timing is not None
            i += concurrency

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(concurrency)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    return sum(done) / elapsed


def _ask_many(url: str, questions: list[str], count: int, result: ServiceResult) -> None:
    with httpx.Client(base_url=url, timeout=120.0) as client:
        for i in range(count):
            _count(result, _ask(client, questions[i % len(questions)]))


class WebLayer:
    """/v1/ask over ASGI in this thread (engine injected), for a profile of the web layer.

    No sockets and no uvicorn: what remains is FastAPI, the middleware, validation,
    serialisation and the threadpool hop; the engine's own time shows as one await. Entering
    runs the app's lifespan and one warm-up request, so that :meth:`ask_all` is steady state.
    """

    def __init__(self, store: Settings, engine: object, questions: list[str]) -> None:
        from service.api.app import create_app

        settings = store.model_copy(update={"generator": "extractive"})
        self.app = create_app(settings, lambda _: engine)  # type: ignore[arg-type,return-value]
        self.questions = questions
        self.loop = asyncio.new_event_loop()
        self.stack = contextlib.AsyncExitStack()
        self.client: httpx.AsyncClient | None = None
        root = logging.getLogger()
        self._logging = (list(root.handlers), root.level)

    def __enter__(self) -> WebLayer:
        self.loop.run_until_complete(self._open())
        self.loop.run_until_complete(self._ask(self.questions[:1]))
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.run_until_complete(self.stack.aclose())
        self.loop.close()
        root = logging.getLogger()  # the app's lifespan installed its own log handler
        root.handlers[:], level = self._logging
        root.setLevel(level)

    def ask_all(self) -> None:
        self.loop.run_until_complete(self._ask(self.questions))

    def overhead(self) -> Samples:
        """Per request: time in the app (client included) minus the engine's own time."""
        return self.loop.run_until_complete(self._overhead())

    async def _overhead(self) -> Samples:
        assert self.client is not None
        out = Samples("ms")
        for question in self.questions:
            started = time.perf_counter()
            response = await self.client.post("/v1/ask", json={"question": question})
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            out.add(elapsed - float(response.json()["timings_ms"]["total"]))
        return out

    async def _open(self) -> None:
        await self.stack.enter_async_context(self.app.router.lifespan_context(self.app))
        transport = httpx.ASGITransport(app=self.app)
        self.client = await self.stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://bench")
        )

    async def _ask(self, questions: list[str]) -> None:
        assert self.client is not None
        for question in questions:
            response = await self.client.post("/v1/ask", json={"question": question})
            response.raise_for_status()
