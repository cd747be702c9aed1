"""Optional LLM judge of faithfulness (RAGAS-style), for ``citeqa eval --judge llm``.

The configured OpenAI-compatible LLM (``settings.llm_base_url``, ``llm_api_key``, ``llm_model``)
is given an answer and the texts it cites, splits the answer into claims and judges each claim
as supported or not by those texts. ``faithfulness_llm`` = supported claims / claims. It is
reported beside the offline, deterministic ``faithfulness`` of :mod:`evals.metrics`, never
instead of it. The prompt is ``prompts/judge_claims.md`` (a Jinja2 template rendered with
``StrictUndefined``; variables ``answer`` and ``sources``, a list of ``{n, title, text}``), or
the file of that name in ``settings.prompts_dir`` when there is one.

Structured output
-----------------
The reply is asked for as JSON that matches :class:`JudgementReply`, in the strongest form the
server accepts, tried in this order and remembered once one is accepted:

1. ``json_schema``: ``response_format={"type": "json_schema", "json_schema": {...}}`` (OpenAI,
   vLLM, Ollama, llama.cpp's server, which enforce it with a grammar);
2. ``json_object+schema``: ``{"type": "json_object", "schema": {...}}`` (llama-cpp-python's
   server enforces the schema this way);
3. ``json_object``: any JSON object;
4. ``text``: no ``response_format``; the JSON is looked for in the prose.

A server that refuses a form (HTTP 400 or 422, or an error that names ``response_format``) is
asked again in the next one. Whatever the
form, the reply is validated with the pydantic model; a reply that fails is a
:class:`JudgeError` whose ``reason`` groups it ("not JSON", "not a judgement") in the reports.

Response cache
--------------
LLM responses are cached on disk so that re-running an eval costs nothing and gives the same
figures. The cache is a directory (default ``evals/cache/llm/``, relative to the working
directory) of JSON files, one per request::

    <sha256 hex>.json
    {"model": "<model name>",
     "messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}],
     "response": "<the assistant message content, verbatim>"}

The file name is ``sha256(model + "\\n" + messages_json)`` where ``messages_json`` is
``json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))`` encoded
as UTF-8: the key covers the model and the full prompt, so editing the template or the system
message, or changing model, misses the cache. Requests are always sent with temperature 0.
A cache hit never calls the network (no client is even created). Only responses that parse as
a valid judgement are stored, so a malformed reply is retried on the next run. Files are
written atomically (temporary file + rename); deleting the directory clears the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from citeqa.config import Settings
from evals.metrics import markers
from service.answering.prompts import render

DEFAULT_CACHE_DIR = Path("evals/cache/llm")
PROMPT = "judge_claims"
SYSTEM_MESSAGE = (
    "You are a meticulous fact-checker. You judge answers only against the sources you are "
    "given, and you reply with a single JSON object."
)
MIN_MAX_TOKENS = 1024

Messages = list[dict[str, str]]


class JudgeError(ValueError):
    """The judge gave no valid judgement; ``reason`` names the kind of failure, the message
    adds the detail (a part of the reply)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


NOT_JSON = "the reply is not JSON"
NOT_A_JUDGEMENT = "the reply is JSON but not a judgement"


class ClaimVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    claim: str
    supported: bool


class JudgementReply(BaseModel):
    """What the judge must reply: ``{"claims": [{"claim": str, "supported": bool}]}``."""

    model_config = ConfigDict(extra="forbid")
    claims: list[ClaimVerdict]


def inline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$ref`` resolved and titles and descriptions dropped:
    the plain form grammar-constrained servers (llama.cpp) and strict OpenAI outputs take."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[-1]])
            dropped = {"title", "description", "$defs"}
            return {k: walk(v) for k, v in node.items() if k not in dropped}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


JUDGEMENT_SCHEMA = inline_schema(JudgementReply.model_json_schema())
RESPONSE_FORMATS: dict[str, dict[str, Any] | None] = {
    "json_schema": {
        "type": "json_schema",
        "json_schema": {"name": "judgement", "strict": True, "schema": JUDGEMENT_SCHEMA},
    },
    "json_object+schema": {"type": "json_object", "schema": JUDGEMENT_SCHEMA},
    "json_object": {"type": "json_object"},
    "text": None,
}


@dataclass(frozen=True)
class Claim:
    claim: str
    supported: bool


@dataclass(frozen=True)
class Judgement:
    claims: list[Claim]
    cached: bool

    @property
    def faithfulness(self) -> float | None:
        """Supported claims / claims; ``None`` when the answer yielded no claims."""
        if not self.claims:
            return None
        return sum(c.supported for c in self.claims) / len(self.claims)

    def public(self) -> dict[str, Any]:
        return {
            "claims": [{"claim": c.claim, "supported": c.supported} for c in self.claims],
            "faithfulness_llm": self.faithfulness,
            "cached": self.cached,
        }


class ResponseCache:
    """LLM responses on disk, keyed by model and full prompt (format in the module docstring)."""

    def __init__(self, directory: Path = DEFAULT_CACHE_DIR) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(model: str, messages: Messages) -> str:
        blob = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"{model}\n{blob}".encode()).hexdigest()

    def path(self, model: str, messages: Messages) -> Path:
        return self.directory / f"{self.key(model, messages)}.json"

    def get(self, model: str, messages: Messages) -> str | None:
        path = self.path(model, messages)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if record.get("model") != model or record.get("messages") != messages:
            return None  # not ours (hash collision or a hand-edited file)
        response = record.get("response")
        return response if isinstance(response, str) else None

    def put(self, model: str, messages: Messages, response: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(model, messages)
        record = {"model": model, "messages": messages, "response": response}
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh, ensure_ascii=False, indent=1)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def render_prompt(
    answer: str, sources: Sequence[Mapping[str, Any]], prompts_dir: Path | None = None
) -> str:
    """The user message: the judge's template (``prompts_dir``'s, else the packaged one)."""
    return render(PROMPT, prompts_dir, answer=answer, sources=list(sources))


def parse_judgement(response: str) -> list[Claim]:
    """Claims from the LLM's reply: a :class:`JudgementReply` as JSON, possibly wrapped in a
    code fence or surrounded by prose (a server that ignores ``response_format``)."""
    text = response.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    start, end = text.find("{"), text.rfind("}")
    candidates = [text, text[start : end + 1]] if 0 <= start < end else [text]
    data: Any = None
    for candidate in candidates:
        try:
            data = json.loads(candidate)
            break
        except json.JSONDecodeError:
            continue
    else:
        raise JudgeError(NOT_JSON, repr(response[:200]))
    try:
        reply = JudgementReply.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        raise JudgeError(NOT_A_JUDGEMENT, f"{where}: {first['msg']}") from None
    return [Claim(c.claim.strip(), c.supported) for c in reply.claims]


def _refuses_format(error: Any) -> bool:
    """Whether an HTTP error refuses the ``response_format`` sent: a 400 or 422, or any status
    whose message names the parameter (llama-cpp-python's server answers 500 to a request
    that fails its validation: ``Input should be 'text' or 'json_object'``)."""
    return error.status_code in (400, 422) or "response_format" in str(error.message)


def cited_sources(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sources an answer (``Answer.public()`` shape) cites, in order of first citation."""
    sources = list(answer.get("sources", []))
    out: list[dict[str, Any]] = []
    for n in markers(str(answer.get("answer", ""))):
        if 1 <= n <= len(sources):
            src = sources[n - 1]
            out.append({"n": n, "title": src.get("title", ""), "text": src.get("text", "")})
    return out


def openai_client(settings: Settings) -> Any:
    """An ``openai.OpenAI`` client for the configured LLM endpoint (the eval's own calls)."""
    import openai

    key = settings.llm_api_key
    return openai.OpenAI(
        base_url=settings.llm_base_url,
        api_key=key.get_secret_value() if key is not None else "not-needed",
        max_retries=2,
        timeout=settings.llm_timeout_s,
    )


class LLMJudge:
    """Claim extraction and verification by the configured OpenAI-compatible LLM."""

    def __init__(
        self,
        settings: Settings,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        model: str | None = None,
        client: Any = None,
    ) -> None:
        self.settings = settings
        self.model = model or settings.llm_model
        self.cache = ResponseCache(cache_dir)
        self._client = client
        self.calls = 0  # requests actually sent to the LLM
        self.formats = list(RESPONSE_FORMATS)  # the forms not refused yet, strongest first

    @property
    def name(self) -> str:
        return f"llm:{self.model}"

    def client(self) -> Any:
        if self._client is None:
            self._client = openai_client(self.settings)
        return self._client

    def messages(self, answer: str, sources: Sequence[Mapping[str, Any]]) -> Messages:
        return [
            {"role": "system", "content": SYSTEM_MESSAGE},
            {"role": "user", "content": render_prompt(answer, sources, self.settings.prompts_dir)},
        ]

    def judge(self, answer: str, sources: Sequence[Mapping[str, Any]]) -> Judgement:
        """Judge ``answer`` against ``sources`` (each ``{n, title, text}``).

        Raises :class:`JudgeError` when the reply is not a valid judgement; errors of the
        ``openai`` client (connection, authentication...) propagate.
        """
        messages = self.messages(answer, sources)
        cached = self.cache.get(self.model, messages)
        if cached is not None:
            return Judgement(parse_judgement(cached), cached=True)
        response = self._complete(messages)
        claims = parse_judgement(response)
        self.cache.put(self.model, messages, response)
        return Judgement(claims, cached=False)

    @property
    def response_format(self) -> str:
        """The strongest form of structured output the server has not refused."""
        return self.formats[0]

    def _complete(self, messages: Messages) -> str:
        """The reply's text, asked for in the strongest form of structured output the server
        accepts; a form it refuses is dropped for the rest of the run."""
        import openai

        while True:
            extra: dict[str, Any] = {}
            response_format = RESPONSE_FORMATS[self.response_format]
            if response_format is not None:
                extra["response_format"] = response_format
            self.calls += 1
            try:
                completion = self.client().chat.completions.create(
                    model=self.model,
                    messages=messages,
                    temperature=0,
                    max_tokens=max(MIN_MAX_TOKENS, self.settings.llm_max_tokens),
                    **extra,
                )
            except openai.APIStatusError as exc:
                if response_format is None or not _refuses_format(exc):
                    raise
                self.formats.pop(0)
                continue
            return completion.choices[0].message.content or ""

    def judge_answer(self, answer: Mapping[str, Any]) -> Judgement | None:
        """Judge an ``Answer.public()`` dict against the sources it cites; ``None`` for a
        refusal or an answer that cites nothing (no context to judge against)."""
        if answer.get("refused"):
            return None
        sources = cited_sources(answer)
        if not sources:
            return None
        return self.judge(str(answer.get("answer", "")), sources)
