"""Optional LLM judge of faithfulness (RAGAS-style), for ``citeqa eval --judge llm``.

The configured OpenAI-compatible LLM (``settings.llm_base_url``, ``llm_api_key``, ``llm_model``)
is given an answer and the texts it cites, splits the answer into claims and judges each claim
as supported or not by those texts. ``faithfulness_llm`` = supported claims / claims. It is
reported beside the offline, deterministic ``faithfulness`` of :mod:`evals.metrics`, never
instead of it. The prompt is ``prompts/judge_claims.md`` (a Jinja2 template rendered with
``StrictUndefined``; variables ``answer`` and ``sources``, a list of ``{n, title, text}``).

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

import jinja2

from citeqa.config import REPO_ROOT, Settings
from evals.metrics import parse_markers

DEFAULT_CACHE_DIR = Path("evals/cache/llm")
PROMPT_PATH = REPO_ROOT / "prompts" / "judge_claims.md"
SYSTEM_MESSAGE = (
    "You are a meticulous fact-checker. You judge answers only against the sources you are "
    "given, and you reply with a single JSON object."
)
MIN_MAX_TOKENS = 1024

Messages = list[dict[str, str]]


class JudgeError(ValueError):
    """The LLM's reply is not a valid judgement."""


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


def render_prompt(answer: str, sources: Sequence[Mapping[str, Any]], template_path: Path) -> str:
    """The user message: the template rendered with ``StrictUndefined``."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    template = env.from_string(template_path.read_text(encoding="utf-8"))
    return template.render(answer=answer, sources=list(sources))


def parse_judgement(response: str) -> list[Claim]:
    """Claims from the LLM's reply: a JSON object ``{"claims": [{"claim", "supported"}]}``,
    possibly wrapped in a code fence or surrounded by prose."""
    text = response.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise JudgeError(f"the judge's reply is not JSON: {response[:200]!r}") from None
        try:
            data = json.loads(text[start : end + 1])
        except json.JSONDecodeError as exc:
            raise JudgeError(f"the judge's reply is not JSON: {response[:200]!r}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise JudgeError('the judge\'s reply has no "claims" list')
    claims: list[Claim] = []
    for entry in data["claims"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("claim"), str):
            raise JudgeError(f"malformed claim in the judge's reply: {entry!r}")
        supported = entry.get("supported")
        if isinstance(supported, str) and supported.lower() in {"true", "false"}:
            supported = supported.lower() == "true"
        if not isinstance(supported, bool):
            raise JudgeError(f"claim without a boolean 'supported': {entry!r}")
        claims.append(Claim(entry["claim"].strip(), supported))
    return claims


def cited_sources(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sources an answer (``Answer.public()`` shape) cites, in order of first citation."""
    sources = list(answer.get("sources", []))
    out: list[dict[str, Any]] = []
    for n in parse_markers(str(answer.get("answer", ""))):
        if 1 <= n <= len(sources):
            src = sources[n - 1]
            out.append({"n": n, "title": src.get("title", ""), "text": src.get("text", "")})
    return out


class LLMJudge:
    """Claim extraction and verification by the configured OpenAI-compatible LLM."""

    def __init__(
        self,
        settings: Settings,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        model: str | None = None,
        template_path: Path = PROMPT_PATH,
        client: Any = None,
    ) -> None:
        self.settings = settings
        self.model = model or settings.llm_model
        self.cache = ResponseCache(cache_dir)
        self.template_path = template_path
        self._client = client
        self.calls = 0  # requests actually sent to the LLM

    @property
    def name(self) -> str:
        return f"llm:{self.model}"

    def client(self) -> Any:
        if self._client is None:
            import openai

            key = self.settings.llm_api_key
            self._client = openai.OpenAI(
                base_url=self.settings.llm_base_url,
                api_key=key.get_secret_value() if key is not None else "not-needed",
                max_retries=2,
                timeout=self.settings.llm_timeout_s,
            )
        return self._client

    def messages(self, answer: str, sources: Sequence[Mapping[str, Any]]) -> Messages:
        return [
            {"role": "system", "content": SYSTEM_MESSAGE},
            {"role": "user", "content": render_prompt(answer, sources, self.template_path)},
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
        self.calls += 1
        completion = self.client().chat.completions.create(
            model=self.model,
            messages=messages,
            temperature=0,
            max_tokens=max(MIN_MAX_TOKENS, self.settings.llm_max_tokens),
        )
        response = completion.choices[0].message.content or ""
        claims = parse_judgement(response)
        self.cache.put(self.model, messages, response)
        return Judgement(claims, cached=False)

    def judge_answer(self, answer: Mapping[str, Any]) -> Judgement | None:
        """Judge an ``Answer.public()`` dict against the sources it cites; ``None`` for a
        refusal or an answer that cites nothing (no context to judge against)."""
        if answer.get("refused"):
            return None
        sources = cited_sources(answer)
        if not sources:
            return None
        return self.judge(str(answer.get("answer", "")), sources)
