"""A bounded load test of the HTTP API: ``python -m bench.load --seconds 20 --concurrency 8``.

Starts ``citeqa serve`` as a subprocess on 127.0.0.1 (over the store in ``--data-dir``; an empty
store is filled with the bundled corpus by ``citeqa serve`` itself), waits for ``/readyz``,
then runs ``--concurrency`` client threads that alternate ``GET /v1/search`` and
``POST /v1/ask`` with the questions of ``evals/datasets/dev.jsonl`` for ``--seconds``. It stops
by itself and reports throughput, p50/p95/max latency per endpoint and the errors (any status
other than 200, or a transport failure). ``--url`` targets a server that is already running
(loopback only: this is a load generator).

Traffic goes to loopback only, every request has a timeout, and the run is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
QUESTIONS_FILE = REPO_ROOT / "evals" / "datasets" / "dev.jsonl"
FALLBACK_QUESTIONS = [
    "Which model uses a mixture of experts?",
    "What dataset was used for pretraining vision transformers?",
    "How many parameters does the largest model have?",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiProcess:
    """``citeqa serve`` in a subprocess on 127.0.0.1; ``start()`` returns once /readyz is 200.

    ``citeqa`` is this interpreter's checkout (run in the repository) unless ``citeqa`` names
    another command, e.g. an installed package's script run from ``cwd``.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        port: int | None = None,
        citeqa: Sequence[str] = (sys.executable, "-m", "cli"),
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.env = dict(env)
        self.log = log
        self.port = port or free_port()
        self.citeqa, self.cwd = list(citeqa), cwd
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300.0) -> ApiProcess:
        self.launch()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> None:
        """Start the process without waiting for it to be ready."""
        command = [*self.citeqa, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd
            )

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"citeqa serve exited: {self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"citeqa serve not ready after {timeout} s: {self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> ApiProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, endpoint: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies.setdefault(endpoint, []).append(seconds)
            if error:
                self.errors.append(f"{endpoint}: {error}")


def percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def load_questions(path: Path = QUESTIONS_FILE) -> list[str]:
    if not path.exists():
        return FALLBACK_QUESTIONS
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["question"] for line in lines if line.strip()] or FALLBACK_QUESTIONS


def one_request(client: httpx.Client, endpoint: str, question: str) -> str | None:
    """Send one request; the error text, or None when it answered 200."""
    try:
        if endpoint == "search":
            response = client.get("/v1/search", params={"q": question, "k": 5})
        else:
            response = client.post("/v1/ask", json={"question": question})
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    return None


def client_loop(
    url: str, questions: list[str], deadline: float, seed: int, stats: Stats, timeout: float
) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=timeout) as client:
        turn = seed % 2
        while time.monotonic() < deadline:
            endpoint = ("search", "ask")[turn]
            turn ^= 1
            started = time.perf_counter()
            error = one_request(client, endpoint, rng.choice(questions))
            stats.record(endpoint, time.perf_counter() - started, error)


def run_load(
    url: str, seconds: float, concurrency: int, seed: int = 0, timeout: float = 30.0
) -> dict[str, Any]:
    """Drive the API at ``url`` for ``seconds`` with ``concurrency`` threads; the report."""
    host = urlparse(url).hostname or ""
    if host not in LOOPBACK:
        raise ValueError(f"load is only sent to loopback addresses, not {host!r}")
    questions = load_questions()
    with httpx.Client(base_url=url, timeout=timeout) as client:  # warm caches, untimed
        for endpoint in ("search", "ask"):
            one_request(client, endpoint, questions[0])
    stats = Stats()
    started = time.monotonic()
    deadline = started + seconds
    threads = [
        threading.Thread(
            target=client_loop, args=(url, questions, deadline, seed + i, stats, timeout)
        )
        for i in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return report(stats, time.monotonic() - started, concurrency)


def report(stats: Stats, elapsed: float, concurrency: int) -> dict[str, Any]:
    endpoints = {}
    for endpoint, values in sorted(stats.latencies.items()):
        endpoints[endpoint] = {
            "requests": len(values),
            "p50_ms": round(percentile(values, 50) * 1000, 1),
            "p95_ms": round(percentile(values, 95) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
        }
    total = sum(len(v) for v in stats.latencies.values())
    return {
        "seconds": round(elapsed, 2),
        "concurrency": concurrency,
        "requests": total,
        "throughput_rps": round(total / elapsed, 2) if elapsed else 0.0,
        "errors": len(stats.errors),
        "error_samples": stats.errors[:5],
        "endpoints": endpoints,
    }


def machine() -> dict[str, Any]:
    cpu = "unknown"
    memory_kib = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(memory_kib / 1024**2, 1)}


def format_report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['requests']} requests in {result['seconds']} s with {result['concurrency']} "
        f"clients: {result['throughput_rps']} req/s, {result['errors']} errors",
    ]
    for endpoint, row in result["endpoints"].items():
        lines.append(
            f"  {endpoint:<7} n={row['requests']:<5} p50 {row['p50_ms']} ms  "
            f"p95 {row['p95_ms']} ms  max {row['max_ms']} ms"
        )
    lines.extend(f"  error: {sample}" for sample in result["error_samples"])
    box = result.get("machine")
    if box:
        lines.append(f"  machine: {box['nproc']} CPUs ({box['cpu']}), {box['ram_gib']} GiB RAM")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=summary)
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to send load")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--data-dir", type=Path, default=Path(".citeqa-bench"))
    parser.add_argument("--url", default=None, help="a running server (loopback) instead")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 < args.seconds <= 600 or not 1 <= args.concurrency <= 64:
        print("--seconds must be in (0, 600] and --concurrency in [1, 64]", file=sys.stderr)
        return 2
    if args.url:
        result = run_load(args.url, args.seconds, args.concurrency, args.seed)
    else:
        env = dict(os.environ, HF_HUB_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
        env["CITEQA_DATA_DIR"] = str(args.data_dir.resolve())
        env.setdefault("CITEQA_GENERATOR", "extractive")
        log = args.data_dir / "serve.log"
        print(f"starting citeqa serve over {args.data_dir} (log: {log})", file=sys.stderr)
        with ApiProcess(env, log).start(args.ready_timeout) as api:
            result = run_load(api.url, args.seconds, args.concurrency, args.seed)
    result["machine"] = machine()
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
