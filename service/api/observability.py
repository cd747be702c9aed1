"""Prometheus metrics, request ids and structured logs.

* :class:`Metrics` holds the app's own registry (one per app, so several apps in one process,
  as in tests, never clash). Request counts and latencies are labelled by route *template*
  (``/v1/ask``, never a raw path with ids or junk in it) and status; answers feed retrieval and
  generation time histograms and a refusal counter. :class:`EngineCollector` reads the index
  size and the LLM client's counters at scrape time, through ``getattr``, so neither the engine
  nor the client knows about Prometheus.
* :class:`ObservabilityMiddleware` (outermost) gives every request an id (an incoming
  ``X-Request-ID`` of a safe shape that holds nothing the log would redact, or a new one),
  returns it in ``X-Request-ID``, counts and times the request, and writes one access log line.
* :func:`configure_logging` installs one root handler: JSON lines (``ts, level, logger, msg,
  request_id`` and, for access lines, ``method, path, status, ms``) or text; a filter redacts
  bearer tokens, ``sk-`` keys, ``api_key=...`` pairs and the configured secrets themselves, in
  every field of a record (a key pasted into a URL path is redacted from ``path`` too).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citeqa.config import Settings
from service.answering.answer import Answer

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED_ROUTE = "<unmatched>"
ACCESS_LOGGER = "citeqa.access"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "citeqa_request_id", default=None
)


# --------------------------------------------------------------------------- metrics


class Metrics:
    """The app's Prometheus series; :meth:`render` is the /metrics body."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "citeqa_http_requests", "HTTP requests.", labels, registry=self.registry
        )
        self.latency = Histogram(
            "citeqa_http_request_duration_seconds",
            "HTTP request latency, to the last byte of the response.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retrieval = Histogram(
            "citeqa_retrieval_seconds",
            "Retrieval and evidence time per answer.",
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.generation = Histogram(
            "citeqa_generation_seconds",
            "Generation and citation validation time per answer.",
            ["generator"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter(
            "citeqa_answers",
            "Answers given, refusals included.",
            ["generator"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "citeqa_refusals", "Answers that refused.", ["generator"], registry=self.registry
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)

    def observe_answer(self, answer: Answer) -> None:
        """Record an answer's stage timings (``timings_ms``) and outcome."""
        timings = answer.timings_ms
        if "retrieve" in timings:
            self.retrieval.observe(timings["retrieve"] / 1000)
        if "generate" in timings:
            self.generation.labels(answer.generator).observe(timings["generate"] / 1000)
        self.answers.labels(answer.generator).inc()
        if answer.refused:
            self.refusals.labels(answer.generator).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class EngineCollector(Collector):
    """Index size and LLM client counters, read from the engine when Prometheus scrapes.

    ``engine`` returns the current engine (None before it is built). The LLM counters come from
    ``engine.generator.client`` attributes (``requests``, ``retries``, ``failures``,
    ``prompt_tokens``, ``completion_tokens``) when present, so this module depends on none of it.
    """

    _LLM_COUNTERS = (
        ("requests", "citeqa_llm_requests", "LLM HTTP attempts."),
        ("retries", "citeqa_llm_retries", "LLM attempts retried."),
        ("failures", "citeqa_llm_failures", "LLM calls that failed after retries."),
    )

    def __init__(self, engine: Callable[[], Any]) -> None:
        self._engine = engine

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: the series appear once an engine exists

    def collect(self) -> Iterator[Metric]:
        engine = self._engine()
        if engine is None:
            return
        chunks = _index_size(engine)
        if chunks is not None:
            yield GaugeMetricFamily("citeqa_index_chunks", "Chunks in the index.", value=chunks)
        client = getattr(getattr(engine, "generator", None), "client", None)
        if client is not None:
            yield from _llm_counters(client, self._LLM_COUNTERS)


def _index_size(engine: Any) -> int | None:
    try:
        return int(engine.index.chunks.count())
    except Exception:  # a scrape must not fail because Chroma is down; /readyz reports that
        return None


def _llm_counters(client: Any, counters: Iterable[tuple[str, str, str]]) -> Iterator[Metric]:
    for attribute, name, doc in counters:
        value = getattr(client, attribute, None)
        if isinstance(value, int | float):
            yield CounterMetricFamily(name, doc, value=value)
    tokens = CounterMetricFamily("citeqa_llm_tokens", "LLM tokens used.", labels=["kind"])
    found = False
    for kind in ("prompt", "completion"):
        value = getattr(client, f"{kind}_tokens", None)
        if isinstance(value, int | float):
            tokens.add_metric([kind], value)
            found = True
    if found:
        yield tokens


def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


# --------------------------------------------------------------------------- middleware


class ObservabilityMiddleware:
    """Request id, metrics and the access log line for every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        routes: Callable[[], list[BaseRoute]],
        redactor: RedactingFilter | None = None,
    ):
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.redactor = redactor or RedactingFilter()
        self.log = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope, self.redactor) or uuid.uuid4().hex
        # Not reset afterwards on purpose: each request runs in its own task (its own context),
        # and the server's error handler, outside this middleware, still logs with the id.
        request_id_var.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, request_id, status, time.perf_counter() - started)

    def _record(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        method, path = scope["method"], scope["path"]
        self.metrics.observe_request(method, self.route_of(scope), status, seconds)
        ms = round(seconds * 1000, 2)
        self.log.info(
            "%s %s %d %.2f ms",
            method,
            path,
            status,
            ms,
            extra={
                "request_id": request_id,
                "method": method,
                "path": path,
                "status": status,
                "ms": ms,
            },
        )

    def route_of(self, scope: Scope) -> str:
        """The route template that served (or would serve) the request, never the raw path."""
        route = scope.get("route")
        if route is None:  # refused before routing (401, 413, 429): match it ourselves
            route = _matching_route(self.routes(), scope)
        return str(getattr(route, "path", None) or UNMATCHED_ROUTE)


def _matching_route(routes: Iterable[BaseRoute], scope: Scope) -> BaseRoute | None:
    """The route that would serve ``scope``, looking inside included routers (FastAPI keeps
    an included router as one entry of ``app.routes`` that has no path of its own)."""
    for route in routes:
        included = getattr(getattr(route, "original_router", None), "routes", None)
        found = (
            _matching_route(included, scope)
            if included is not None
            else route
            if route.matches(dict(scope))[0] != Match.NONE
            else None
        )
        if found is not None:
            return found
    return None


def incoming_request_id(scope: Scope, redactor: RedactingFilter) -> str | None:
    """The client's ``X-Request-ID`` when it is short, of a safe shape and nothing the log
    would redact (a key sent there by mistake is neither logged nor echoed), else None."""
    value = Headers(scope=scope).get(REQUEST_ID_HEADER)
    if not value or not _REQUEST_ID_RE.fullmatch(value):
        return None
    return value if redactor.redact(value) == value else None


# --------------------------------------------------------------------------- logging


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the request id comes from the record or the current context."""

    _EXTRA = ("method", "path", "status", "ms")

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        payload.update({k: getattr(record, k) for k in self._EXTRA if hasattr(record, k)})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = record.exc_text
        return json.dumps(payload, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get() or "-"
        return super().format(record)


_SECRET_PATTERNS = (
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1[REDACTED]"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "[REDACTED]"),
    (
        re.compile(
            r"(?i)\b((?:api[_-]?keys?|authorization|access[_-]?token|secret|password)"
            r"[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+"
        ),
        r"\1[REDACTED]",
    ),
)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, traceback and every other text field (``path``,
    ``request_id``...) with secrets replaced by ``[REDACTED]``.

    Attached to the handler; the record is changed in place, so handlers that see it later
    (pytest's caplog among them) get the redacted text too.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        literal = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, literal))) if literal else None

    def redact(self, text: str) -> str:
        if self._literal is not None:
            text = self._literal.sub("[REDACTED]", text)
        for pattern, replacement in _SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        context_id = request_id_var.get()
        if context_id is not None and not hasattr(record, "request_id"):
            record.request_id = context_id  # what the formatters would read, redacted below
        for name, value in list(vars(record).items()):  # every field: path, request_id...
            if isinstance(value, str) and name != "msg":
                setattr(record, name, self.redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value in ``settings`` (the filter redacts them verbatim)."""
    secrets = settings.api_key_list + settings.write_keys
    for secret in (settings.llm_api_key, settings.metrics_token):
        if secret is not None:
            secrets.append(secret.get_secret_value())
    return secrets


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (test capture swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


def configure_logging(settings: Settings, stream: Any = None) -> logging.Handler:
    """Route all logs (uvicorn's included) through one root handler in ``log_format``.

    Replaces the handler a previous call installed and plain ``StreamHandler`` s (as
    ``logging.basicConfig`` adds); other handlers (pytest's capture) stay. Uvicorn's access log
    is silenced: :class:`ObservabilityMiddleware` writes a richer one. Call it once the server
    has configured its own logging (the app's lifespan), or uvicorn re-adds its handlers.
    """
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name("citeqa")
    handler.setLevel(settings.log_level)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(RedactingFilter(settings_secrets(settings)))
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "citeqa" or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    return handler


# --------------------------------------------------------------------------- wiring


def install_observability(app: FastAPI, settings: Settings | None = None) -> Metrics:
    """Metrics, /metrics and the request-id middleware. Install it last: it must be outermost,
    so that refusals of the other middleware are counted and logged too. ``settings`` gives the
    secrets an incoming request id must not contain."""
    metrics = Metrics()
    metrics.registry.register(EngineCollector(lambda: getattr(app.state, "engine", None)))
    app.state.metrics = metrics

    async def prometheus_metrics() -> Response:
        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    app.add_api_route(
        "/metrics",
        prometheus_metrics,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    redactor = RedactingFilter(settings_secrets(settings) if settings else ())
    app.add_middleware(
        ObservabilityMiddleware, metrics=metrics, routes=lambda: app.routes, redactor=redactor
    )
    return metrics
