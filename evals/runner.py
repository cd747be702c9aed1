"""Run an evaluation dataset through the answer engine and write the results.

:func:`run_eval` asks every question of the dataset through
:meth:`service.answering.engine.Engine.ask`,
the engine the API uses, scores each answer with :mod:`evals.metrics` and aggregates the scores
overall and per item type. :func:`write_outputs` writes three files:

* ``items.jsonl``: one record per item: id, type, question, the expected answer, gold titles and
  key facts, the answer, whether it was refused, its citations (title and quote), the retrieved
  titles in rank order, the per-item metric values and the timings;
* ``summary.json``: every metric overall and per type (``metrics``), how many items each metric
  applied to (``counts``), latency figures (``latency``, kept apart: the only part that changes
  between two runs), and the context needed to compare runs: corpus fingerprint (sha256 of the
  sorted chunk ids), settings (without secrets), package version, generator, judge, dataset path
  and sha256, item count;
* ``report.md``: the metrics table overall and per type, latency, and the worst items with their
  answers.

Everything except ``latency`` and the per-item ``timings_ms`` is deterministic for a given
store, dataset, settings and offline generator.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

import citeqa
from evals.dataset import ITEM_TYPES, EvalItem
from evals.metrics import (
    HYGIENE_COUNTS,
    LOWER_IS_BETTER,
    OPTIONAL_METRICS,
    QUALITY_METRICS,
    UNANSWERABLE,
    aggregate,
    answer_hygiene,
    applicable_counts,
    fact_in_text,
    item_metrics,
    latency_stats,
    rounded,
)

if TYPE_CHECKING:
    from evals.judge import LLMJudge
    from service.answering.engine import Engine

WORST_ITEMS = 10
ITEM_DIGITS = 6  # per-item figures; summary figures are rounded to 4 decimals
# Per-item figures the "worst items" ranking averages (false_refusal_rate is inverted).
ITEM_SCORE_METRICS = (
    "hit_at_5",
    "citation_hit",
    "key_fact_accuracy",
    "faithfulness",
    "refusal_recall",
    "false_refusal_rate",
)


@dataclass
class EvalRun:
    """The outcome of :func:`run_eval`: per-item records and the summary."""

    records: list[dict[str, Any]]
    summary: dict[str, Any]
    answers: list[dict[str, Any]] = field(default_factory=list, repr=False)


# --------------------------------------------------------------------------- context


def package_version() -> str:
    return citeqa.__version__


def corpus_fingerprint(engine: Engine) -> dict[str, Any]:
    """sha256 over the sorted chunk ids of the store (one id per line), and the chunk count."""
    ids = sorted(engine.index.chunks.get(include=[])["ids"])
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    return {"fingerprint": digest, "chunks": len(ids)}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _redact_url(value: Any) -> Any:
    """Drop ``user:password@`` from URLs."""
    if isinstance(value, str):
        return re.sub(r"(?<=://)[^/@\s]+@", "", value)
    return value


def refusal_threshold(engine: Engine) -> float:
    """The answerability threshold of the engine's collection (its calibrated model, else the
    default one): the line the compare report draws."""
    from service.answering.answerability import load

    return load(engine.index.chunks).threshold


def settings_snapshot(engine: Engine) -> dict[str, Any]:
    """The engine's settings as JSON, without the API key or credentials embedded in URLs."""
    data = engine.settings.model_dump(exclude={"llm_api_key"}, mode="json")
    return {
        key: _redact_url(value) if key.endswith("_url") else value for key, value in data.items()
    }


# --------------------------------------------------------------------------- running


def stored_chunks(engine: Engine, answer: Mapping[str, Any]) -> dict[str, str]:
    """The text of the chunks the answer's sources name, read from the engine's collection by
    chunk id: what ``faithfulness`` and ``citation_precision`` check the answer against (not
    the text the answer carries, which the engine wrote)."""
    ids = list(dict.fromkeys(str(s.get("chunk_id", "")) for s in answer["sources"]))
    if not ids:
        return {}
    got = engine.index.chunks.get(ids=ids, include=["documents"])
    return dict(zip(got["ids"], got["documents"] or [], strict=True))


def record(item: EvalItem, answer: Mapping[str, Any], stored: Mapping[str, str]) -> dict[str, Any]:
    """One line of items.jsonl: what was expected, what was answered, and its metrics
    (``stored``: the text of each cited chunk, :func:`stored_chunks`)."""
    scores = item_metrics(
        item_type=item.type,
        gold_titles=item.gold_titles,
        key_facts=item.key_facts,
        answer=answer,
        gold_docs=item.gold_docs,
        gold_pages=item.gold_pages,
        stored=stored,
    )
    expected: dict[str, Any] = {
        "answer": item.answer,
        "gold_titles": item.gold_titles,
        "key_facts": item.key_facts,
    }
    if item.gold_docs:
        expected.update(gold_docs=item.gold_docs, gold_pages=item.gold_pages)
    return {
        "id": item.id,
        "type": item.type,
        "tags": item.tags,
        "question": item.question,
        "expected": expected,
        "answer": answer["answer"],
        "refused": bool(answer["refused"]),
        "answerability": answer.get("answerability"),
        "citations": [
            {
                "n": c["n"],
                "title": c["title"],
                "doc_id": c["doc_id"],
                "quote": c["quote"],
                **{k: c[k] for k in ("source", "page", "page_end") if c.get(k) is not None},
            }
            for c in answer["citations"]
        ],
        "retrieved": [s["title"] for s in answer["sources"]],
        "retrieved_sources": [s.get("source") for s in answer["sources"]],
        "hygiene": answer_hygiene(answer["answer"], answer["sources"], bool(answer["refused"])),
        "dropped": answer.get("dropped", []),
        "metrics": {name: rounded(value, ITEM_DIGITS) for name, value in scores.items()},
        "timings_ms": dict(answer.get("timings_ms", {})),
    }


def run_eval(
    engine: Engine,
    items: Sequence[EvalItem],
    progress: bool = True,
    top_k: int | None = None,
    judge: LLMJudge | None = None,
    dataset_path: Path | None = None,
) -> EvalRun:
    """Ask every item's question through ``engine`` and score the answers.

    ``top_k`` overrides the engine's default number of sources. With ``judge``, each answer is
    also judged by the LLM (``faithfulness_llm``, beside the offline ``faithfulness``).
    ``dataset_path`` is recorded in the summary with its sha256.
    """
    records: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    bar = tqdm(items, desc="eval", unit="q", disable=not progress, dynamic_ncols=True)
    for item in bar:
        answer = engine.ask(item.question, top_k=top_k).public()
        scored = record(item, answer, stored_chunks(engine, answer))
        if judge is not None:
            _judge_into(judge, answer, scored)
        records.append(scored)
        answers.append(answer)
    summary = summarise(records, judged=judge is not None)
    summary.update(_context(engine, items, dataset_path, top_k, judge))
    if judge is not None:
        health = judge_health(records)
        summary["judge_health"] = {**health, "response_format": judge.response_format}
    return EvalRun(records=records, summary=_ordered(summary), answers=answers)


def _judge_into(judge: LLMJudge, answer: Mapping[str, Any], record: dict[str, Any]) -> None:
    """The judgement of one answer into its record; ``record["judge"]["status"]`` says whether
    it was judged, the judge failed (with a grouped ``reason``), or there was nothing to judge
    (a refusal, an answer that cites nothing)."""
    import openai

    from evals.judge import JudgeError

    record["metrics"]["faithfulness_llm"] = None
    try:
        judgement = judge.judge_answer(answer)
    except JudgeError as exc:
        record["judge"] = {"status": "failed", "reason": exc.reason, "error": str(exc)}
        return
    except openai.APIError as exc:  # after the client's own retries
        reason = f"the request failed ({type(exc).__name__})"
        record["judge"] = {"status": "failed", "reason": reason, "error": str(exc)[:300]}
        return
    if judgement is None:
        record["judge"] = {"status": "not_applicable"}
        return
    record["metrics"]["faithfulness_llm"] = rounded(judgement.faithfulness, ITEM_DIGITS)
    record["judge"] = {"status": "judged", **judgement.public()}


def judge_health(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How the judge fared: items judged, failed (reasons grouped, most frequent first) and
    not applicable. A judge that failed everywhere must not read as one with nothing to do."""
    statuses = [r["judge"]["status"] for r in records if "judge" in r]
    reasons: dict[str, int] = {}
    for record in records:
        if record.get("judge", {}).get("status") == "failed":
            reason = record["judge"]["reason"]
            reasons[reason] = reasons.get(reason, 0) + 1
    failed = statuses.count("failed")
    attempted = failed + statuses.count("judged")
    return {
        "judged": statuses.count("judged"),
        "failed": failed,
        "not_applicable": statuses.count("not_applicable"),
        "failed_share": round(failed / attempted, 4) if attempted else 0.0,
        "failure_reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def describe_judge_health(health: Mapping[str, Any]) -> str:
    """One line for reports: ``judged 6, failed 2 (2 the reply is not JSON), not applicable 1``."""
    reasons = "; ".join(f"{n} {reason}" for reason, n in health["failure_reasons"].items())
    failed = f"failed {health['failed']}" + (f" ({reasons})" if reasons else "")
    line = f"judged {health['judged']}, {failed}, not applicable {health['not_applicable']}"
    if health.get("response_format"):
        line += f"; structured output: {health['response_format']}"
    return line


def metric_names(judged: bool) -> tuple[str, ...]:
    return QUALITY_METRICS + (OPTIONAL_METRICS if judged else ())


def by_tag(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The records carrying each tag, tags in sorted order (an item may carry several)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        for tag in record.get("tags", []):
            groups.setdefault(str(tag), []).append(record)
    return dict(sorted(groups.items()))


def summarise(records: Sequence[Mapping[str, Any]], judged: bool = False) -> dict[str, Any]:
    """Quality metrics overall, per type and per tag, applicable counts, and latency (kept
    apart)."""
    names = metric_names(judged)
    scores = [r["metrics"] for r in records]
    by_type = {t: [r for r in records if r["type"] == t] for t in ITEM_TYPES}
    by_type = {t: rs for t, rs in by_type.items() if rs}
    tagged = by_tag(records)
    totals = [float(r["timings_ms"]["total"]) for r in records if "total" in r["timings_ms"]]
    metrics: dict[str, Any] = {
        "overall": aggregate(scores, names),
        "by_type": {t: aggregate([r["metrics"] for r in rs], names) for t, rs in by_type.items()},
    }
    counts: dict[str, Any] = {
        "items": len(records),
        "by_type": {t: len(rs) for t, rs in by_type.items()},
        "applicable": applicable_counts(scores, names),
    }
    if tagged:
        metrics["by_tag"] = {
            t: aggregate([r["metrics"] for r in rs], names) for t, rs in tagged.items()
        }
        counts["by_tag"] = {t: len(rs) for t, rs in tagged.items()}
    return {
        "metrics": metrics,
        "counts": counts,
        "hygiene": {
            name: sum(int(r.get("hygiene", {}).get(name, 0)) for r in records)
            for name in HYGIENE_COUNTS
        },
        "latency": {
            "overall": latency_stats(totals),
            "by_type": {
                t: latency_stats([float(r["timings_ms"].get("total", 0.0)) for r in rs])
                for t, rs in by_type.items()
            },
        },
    }


def _context(
    engine: Engine,
    items: Sequence[EvalItem],
    dataset_path: Path | None,
    top_k: int | None,
    judge: LLMJudge | None,
) -> dict[str, Any]:
    dataset: dict[str, Any] = {"path": None, "sha256": None, "items": len(items)}
    if dataset_path is not None:
        dataset.update(path=str(dataset_path), sha256=file_sha256(dataset_path))
    return {
        "dataset": dataset,
        "corpus": corpus_fingerprint(engine),
        "generator": engine.generator.name,
        "judge": judge.name if judge is not None else "none",
        "top_k": engine.check_top_k(top_k),
        "refusal_threshold": refusal_threshold(engine),
        "package_version": package_version(),
        "settings": settings_snapshot(engine),
    }


_SUMMARY_ORDER = (
    "dataset",
    "corpus",
    "generator",
    "judge",
    "judge_health",
    "top_k",
    "refusal_threshold",
    "package_version",
    "metrics",
    "counts",
    "hygiene",
    "latency",
    "settings",
)


def _ordered(summary: dict[str, Any]) -> dict[str, Any]:
    keys = [k for k in _SUMMARY_ORDER if k in summary] + [
        k for k in summary if k not in _SUMMARY_ORDER
    ]
    return {k: summary[k] for k in keys}


# --------------------------------------------------------------------------- worst items


def item_score(record: Mapping[str, Any]) -> float:
    """How well one item went, in [0, 1]: the mean of its applicable figures among
    ``ITEM_SCORE_METRICS`` (a false refusal counts as 0, a correct answer as 1). An unanswerable
    item scores 1 if it was refused, else 0, however faithful its answer."""
    if record.get("type") == UNANSWERABLE:
        value = record["metrics"].get("refusal_recall")
        return 1.0 if value is None else float(value)
    values = []
    for name in ITEM_SCORE_METRICS:
        value = record["metrics"].get(name)
        if value is None:
            continue
        values.append(1.0 - value if name in LOWER_IS_BETTER else float(value))
    return sum(values) / len(values) if values else 1.0


def item_failures(record: Mapping[str, Any]) -> list[str]:
    """Why an item did not pass, empty when it did: an unanswerable item passes when refused;
    an answerable one when it is answered, states every key fact, cites a gold document and,
    where the dataset gives pages, cites one of them. The verdict of JUnit and of compare."""
    metrics = record["metrics"]
    if record.get("type") == UNANSWERABLE:
        return [] if record.get("refused") else ["answered a question the documents do not answer"]
    if record.get("refused"):
        return ["refused a question the documents answer"]
    reasons = []
    if metrics.get("key_fact_accuracy") == 0.0:
        missing = [
            f for f in record["expected"]["key_facts"] if not fact_in_text(f, record["answer"])
        ]
        reasons.append("key facts missing: " + ", ".join(repr(f) for f in missing))
    cited = metrics.get("gold_doc_cited")
    if cited is None:
        cited = metrics.get("citation_hit")
    if cited == 0.0:
        reasons.append("no citation of a gold document")
    elif metrics.get("page_accuracy") == 0.0:
        reasons.append("no citation on a gold page")
    return reasons


def worst_items(
    records: Sequence[Mapping[str, Any]], n: int = WORST_ITEMS
) -> list[Mapping[str, Any]]:
    """The ``n`` lowest-scoring items (:func:`item_score`), ties broken by dataset order;
    items scoring 1.0 are never listed."""
    ranked = sorted(enumerate(records), key=lambda pair: (item_score(pair[1]), pair[0]))
    return [r for _, r in ranked if item_score(r) < 1.0][:n]


# --------------------------------------------------------------------------- output


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _fmt_ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def _table_rows(
    summary: Mapping[str, Any], group: str = "by_type"
) -> tuple[list[str], list[list[str]]]:
    """Rows of the metrics table: overall and per type (``group="by_type"``, with latency) or
    per tag (``group="by_tag"``)."""
    metrics = summary["metrics"]
    types = list(metrics.get(group, {}))
    header = ["metric", "overall", *types]
    counts = summary.get("counts", {})
    rows = [
        [
            "items",
            str(counts.get("items", "")),
            *(str(counts.get(group, {}).get(t, "")) for t in types),
        ]
    ]
    for name, value in metrics["overall"].items():
        arrow = " (lower is better)" if name in LOWER_IS_BETTER else ""
        rows.append(
            [name + arrow, _fmt(value), *(_fmt(metrics[group][t].get(name)) for t in types)]
        )
    latency = summary.get("latency", {})
    if latency and group == "by_type":
        for key in ("p50_ms", "p95_ms"):
            rows.append(
                [
                    f"latency {key}",
                    _fmt_ms(latency["overall"].get(key)),
                    *(_fmt_ms(latency["by_type"].get(t, {}).get(key)) for t in types),
                ]
            )
    return header, rows


def format_table(summary: Mapping[str, Any], group: str = "by_type") -> str:
    """The metrics, overall and per type (or per tag), as an aligned plain-text table."""
    header, rows = _table_rows(summary, group)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    if "hygiene" in summary and group == "by_type":
        out.append(describe_hygiene(summary["hygiene"]))
    return "\n".join(out)


def describe_hygiene(hygiene: Mapping[str, int]) -> str:
    """One line: the answer-hygiene counts (each should be 0)."""
    return "answer hygiene: " + ", ".join(f"{k} {v}" for k, v in hygiene.items())


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        *("| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows),
    ]


def format_report(run: EvalRun, n_worst: int = WORST_ITEMS) -> str:
    """``report.md``: context, the metrics table, and the worst items with their answers."""
    summary = run.summary
    header, rows = _table_rows(summary)
    lines = [
        "# citeqa evaluation report",
        "",
        f"- dataset: `{summary['dataset']['path']}` ({summary['dataset']['items']} items, "
        f"sha256 `{str(summary['dataset']['sha256'])[:12]}`)",
        f"- corpus: {summary['corpus']['chunks']} chunks, fingerprint "
        f"`{summary['corpus']['fingerprint'][:12]}`",
        f"- generator: `{summary['generator']}`; judge: `{summary['judge']}`; "
        f"top_k: {summary['top_k']}; citeqa {summary['package_version']}",
        "",
        "## Metrics",
        "",
    ]
    lines.extend(_md_table(header, rows))
    if summary["metrics"].get("by_tag"):
        lines += ["", "## By tag", "", *_md_table(*_table_rows(summary, "by_tag"))]
    lines += [
        "",
        "Metric definitions: `evals/metrics.py`. `-`: the metric applies to no item of that kind.",
        "",
        *([describe_hygiene(summary["hygiene"]) + ".", ""] if "hygiene" in summary else []),
        *(
            [f"LLM judge: {describe_judge_health(summary['judge_health'])}.", ""]
            if "judge_health" in summary
            else []
        ),
        f"## Worst items (up to {n_worst})",
        "",
    ]
    worst = worst_items(run.records, n_worst)
    if not worst:
        lines.append("Every item scored perfectly.")
    for record in worst:
        failed = [
            name
            for name in ITEM_SCORE_METRICS
            if record["metrics"].get(name) is not None
            and (
                record["metrics"][name] > 0
                if name in LOWER_IS_BETTER
                else record["metrics"][name] < 1
            )
        ]
        facts = ", ".join(f"`{f}`" for f in record["expected"]["key_facts"]) or "(none)"
        lines += [
            f"### {record['id']} ({record['type']}), score {item_score(record):.2f}",
            "",
            f"- question: {record['question']}",
            f"- expected key facts: {facts}",
            f"- expected answer: {record['expected']['answer']}",
            f"- refused: {'yes' if record['refused'] else 'no'}",
            f"- failed: {', '.join(failed) or '(partial scores)'}",
            f"- retrieved: {'; '.join(record['retrieved'][:5]) or '(nothing)'}",
            "",
            "> " + record["answer"].replace("\n", "\n> "),
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def write_outputs(run: EvalRun, out_dir: Path) -> dict[str, Path]:
    """Write ``items.jsonl``, ``summary.json`` and ``report.md`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "items": out_dir / "items.jsonl",
        "summary": out_dir / "summary.json",
        "report": out_dir / "report.md",
    }
    with paths["items"].open("w", encoding="utf-8") as fh:
        for record in run.records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    paths["summary"].write_text(
        json.dumps(run.summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    paths["report"].write_text(format_report(run), encoding="utf-8")
    return paths


def load_items(path: Path) -> list[dict[str, Any]]:
    """Read back an ``items.jsonl`` written by :func:`write_outputs`."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
