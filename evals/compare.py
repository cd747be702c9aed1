"""Before/after: compare two eval runs (``citeqa eval compare RUN_A RUN_B``).

Writes ``compare.md`` (short enough for a pull-request comment) and ``report.html``, one
self-contained file that renders offline: the metrics of both runs side by side with 95%
bootstrap confidence intervals over items (and of the difference, paired by item id), the items
whose verdict (:func:`evals.runner.item_failures`) flipped with both answers and citations, the
LLM judge's health when a run was judged, and three inline SVG plots: metrics by question type,
the answerability score of answerable vs unanswerable items against the refusal threshold, and
the latency distribution. Bootstrap resamples use a fixed seed: the same runs give the same file.
"""

from __future__ import annotations

import html
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.metrics import LOWER_IS_BETTER, OPTIONAL_METRICS, QUALITY_METRICS, percentile
from evals.runner import describe_judge_health, item_failures, load_items

RESAMPLES = 1000
SEED = 0
MAX_FLIPS_MD = 15
PLOT_METRICS = ("key_fact_accuracy", "citation_hit", "gold_doc_cited", "refusal_recall")
COLORS = ("#7a869a", "#1f6feb")  # run A, run B
CLASS_COLORS = {"answerable": "#1f6feb", "unanswerable": "#d9480f"}


class CompareError(ValueError):
    """A run folder cannot be read."""


@dataclass
class Run:
    name: str
    summary: dict[str, Any]
    records: list[dict[str, Any]]

    @property
    def by_id(self) -> dict[str, dict[str, Any]]:
        return {str(r["id"]): r for r in self.records}


def load_run(folder: Path) -> Run:
    folder = Path(folder)
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        records = load_items(folder / "items.jsonl")
    except (OSError, ValueError) as exc:
        raise CompareError(f"{folder}: not an eval output folder ({exc})") from exc
    return Run(folder.name or str(folder), summary, records)


# --------------------------------------------------------------------------- statistics


def bootstrap_ci(values: Sequence[float], seed: int = SEED) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of the mean of ``values``; None for no values."""
    if not values:
        return None
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(RESAMPLES))
    low, high = percentile(means, 2.5), percentile(means, 97.5)
    assert low is not None and high is not None
    return low, high


def paired_delta_ci(
    pairs: Sequence[tuple[float | None, float | None]], seed: int = SEED
) -> tuple[float, float] | None:
    """95% bootstrap interval of mean(B) - mean(A), resampling the items both runs answered
    (each pair is one item's value in A and in B, None where the metric does not apply to it,
    as refusal precision applies to refused items only); None without such items."""
    if not any(a is not None for a, _ in pairs) or not any(b is not None for _, b in pairs):
        return None
    rng = random.Random(seed)
    deltas = []
    for _ in range(RESAMPLES):
        sample = rng.choices(pairs, k=len(pairs))
        mean_a = _mean([float(a) for a, _ in sample if a is not None])
        mean_b = _mean([float(b) for _, b in sample if b is not None])
        if mean_a is not None and mean_b is not None:
            deltas.append(mean_b - mean_a)
    deltas.sort()
    low, high = percentile(deltas, 2.5), percentile(deltas, 97.5)
    return None if low is None or high is None else (low, high)


def _values(records: Sequence[Mapping[str, Any]], name: str) -> list[float]:
    return [float(v) for r in records if (v := r["metrics"].get(name)) is not None]


@dataclass
class MetricRow:
    name: str
    a: float | None
    a_ci: tuple[float, float] | None
    b: float | None
    b_ci: tuple[float, float] | None
    delta_ci: tuple[float, float] | None  # resampling the items of both runs together

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def verdict(self) -> str:
        """ "better" / "worse" when the paired interval excludes 0, else "same"."""
        if self.delta_ci is None or self.delta_ci[0] <= 0 <= self.delta_ci[1]:
            return "same"
        up = self.delta_ci[0] > 0
        return "better" if up != (self.name in LOWER_IS_BETTER) else "worse"


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def metric_rows(a: Run, b: Run) -> list[MetricRow]:
    names = [*QUALITY_METRICS, *(n for n in OPTIONAL_METRICS if _values(b.records, n))]
    b_ids = b.by_id
    rows = []
    for name in names:
        va, vb = _values(a.records, name), _values(b.records, name)
        if not va and not vb:
            continue
        pairs = [
            (ra["metrics"].get(name), rb["metrics"].get(name))
            for ra in a.records
            if (rb := b_ids.get(str(ra["id"]))) is not None
        ]
        rows.append(
            MetricRow(
                name,
                _mean(va),
                bootstrap_ci(va),
                _mean(vb),
                bootstrap_ci(vb),
                paired_delta_ci(pairs),
            )
        )
    return rows


@dataclass
class Flip:
    id: str
    question: str
    fixed: bool  # failed in A, passes in B
    a: dict[str, Any]
    b: dict[str, Any]
    reasons: list[str]  # why the failing side failed


def flipped(a: Run, b: Run) -> list[Flip]:
    """Items whose verdict differs between the runs, in run B's order, regressions first."""
    a_ids = a.by_id
    flips = []
    for rb in b.records:
        ra = a_ids.get(str(rb["id"]))
        if ra is None:
            continue
        fa, fb = item_failures(ra), item_failures(rb)
        if bool(fa) != bool(fb):
            flips.append(Flip(str(rb["id"]), str(rb["question"]), not fb, ra, rb, fb or fa))
    return sorted(flips, key=lambda f: f.fixed)


# --------------------------------------------------------------------------- markdown


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _ci(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


_VERDICT_MARK = {"better": "better", "worse": "**worse**", "same": ""}


def format_markdown(a: Run, b: Run, rows: Sequence[MetricRow], flips: Sequence[Flip]) -> str:
    regressions = [f for f in flips if not f.fixed]
    lines = [
        f"## citeqa eval: `{a.name}` (A) vs `{b.name}` (B)",
        "",
        f"{len(b.records)} items in B ({len(a.records)} in A); "
        f"{len(regressions)} regressed, {len(flips) - len(regressions)} fixed. "
        "95% bootstrap intervals over items; Δ is paired by item id.",
        "",
        "| metric | A | B | Δ (B-A) | |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        arrow = " ↓" if row.name in LOWER_IS_BETTER else ""
        lines.append(
            f"| {row.name}{arrow} | {_f(row.a)}{_ci(row.a_ci)} | {_f(row.b)}{_ci(row.b_ci)} | "
            f"{_signed(row.delta)}{_ci(row.delta_ci)} | {_VERDICT_MARK[row.verdict]} |"
        )
    latency = [run.summary.get("latency", {}).get("overall", {}) for run in (a, b)]
    lines += [
        "",
        f"Latency p50/p95 (ms): A {_ms(latency[0], 'p50_ms')}/{_ms(latency[0], 'p95_ms')}, "
        f"B {_ms(latency[1], 'p50_ms')}/{_ms(latency[1], 'p95_ms')}.",
    ]
    for label, run in (("A", a), ("B", b)):
        if "judge_health" in run.summary:
            lines.append(
                f"LLM judge {label}: {describe_judge_health(run.summary['judge_health'])}."
            )
    if flips:
        lines += ["", f"### Flipped items ({len(flips)})", ""]
        for flip in flips[:MAX_FLIPS_MD]:
            kind = "fixed" if flip.fixed else "**regressed**"
            lines.append(
                f"- {kind} `{flip.id}`: {_md(flip.question)} ({_md('; '.join(flip.reasons))})"
            )
        if len(flips) > MAX_FLIPS_MD:
            lines.append(f"- ... and {len(flips) - MAX_FLIPS_MD} more in report.html")
    return "\n".join(lines) + "\n"


def _ms(latency: Mapping[str, Any], key: str) -> str:
    value = latency.get(key)
    return "-" if value is None else f"{float(value):.0f}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------- SVG plots

W, H, PAD = 640, 260, 44


def _svg(body: list[str], title: str, height: int = H) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" '
        f'height="{height}" role="img" aria-label="{html.escape(title)}">'
        f"<title>{html.escape(title)}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "middle", size: int = 11) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}">'
        f"{html.escape(text)}</text>"
    )


def _legend(x: float, y: float, entries: Sequence[tuple[str, str]]) -> list[str]:
    out = []
    for i, (label, color) in enumerate(entries):
        out.append(
            f'<rect x="{x + i * 130:.1f}" y="{y - 9}" width="10" height="10" fill="{color}"/>'
        )
        out.append(_text(x + i * 130 + 14, y, label, "start"))
    return out


def _axis_y(
    top: float,
    bottom: float,
    left: float,
    right: float,
    ticks: Sequence[float],
    scale: Callable[[float], float],
    fmt: Callable[[float], str],
) -> list[str]:
    out = [f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#888"/>']
    for tick in ticks:
        y = scale(tick)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(_text(left - 6, y + 4, fmt(tick), "end", 10))
    return out


def plot_by_type(a: Run, b: Run, metric: str) -> str | None:
    """Bars of ``metric`` per question type, run A beside run B."""
    types = [
        t
        for t in b.summary["metrics"].get("by_type", {})
        if any(
            run.summary["metrics"]["by_type"].get(t, {}).get(metric) is not None for run in (a, b)
        )
    ]
    if not types:
        return None
    top, bottom, left, right = 30, H - 40, PAD, W - 10

    def y(v: float) -> float:
        return bottom - v * (bottom - top)

    body = _axis_y(top, bottom, left, right, [0, 0.25, 0.5, 0.75, 1.0], y, lambda v: f"{v:.2f}")
    slot = (right - left) / len(types)
    bar = min(40.0, slot / 3)
    for i, t in enumerate(types):
        cx = left + slot * (i + 0.5)
        for j, run in enumerate((a, b)):
            value = run.summary["metrics"]["by_type"].get(t, {}).get(metric)
            x = cx - bar + j * bar
            if value is None:
                body.append(_text(x + bar / 2, bottom - 4, "n/a", size=9))
                continue
            body.append(
                f'<rect class="bar" x="{x:.1f}" y="{y(value):.1f}" width="{bar - 2:.1f}" '
                f'height="{bottom - y(value):.1f}" fill="{COLORS[j]}">'
                f"<title>{html.escape(f'{run.name} {t}: {value:.3f}')}</title></rect>"
            )
        body.append(_text(cx, bottom + 16, t))
    body += _legend(left + 10, 16, [(f"A {a.name}", COLORS[0]), (f"B {b.name}", COLORS[1])])
    body.append(_text(right, 16, metric, "end", 12))
    return _svg(body, f"{metric} by question type")


def plot_answerability(a: Run, b: Run, threshold: float | None) -> str | None:
    """Each item's answerability score as a dot (answerable above, unanswerable below the
    run's line), one band per run, with the refusal threshold as a vertical line."""
    runs = [run for run in (a, b) if any(r.get("answerability") is not None for r in run.records)]
    if not runs:
        return None
    height = 70 + 90 * len(runs)
    left, right = 150, W - 20

    def x(v: float) -> float:
        return left + max(0.0, min(1.0, v)) * (right - left)

    body = []
    for k in range(6):
        tick = k / 5
        body.append(
            f'<line x1="{x(tick):.1f}" y1="30" x2="{x(tick):.1f}" y2="{height - 30}" '
            'stroke="#eee"/>'
        )
        body.append(_text(x(tick), height - 14, f"{tick:.1f}", size=10))
    for band, run in enumerate(runs):
        base = 50 + band * 90
        body.append(_text(left - 10, base + 24, f"{'AB'[(a, b).index(run)]} {run.name}", "end"))
        rng = random.Random(SEED)  # vertical jitter only, fixed
        for record in run.records:
            score = record.get("answerability")
            if score is None:
                continue
            kind = "unanswerable" if record["type"] == "unanswerable" else "answerable"
            cy = base + (40 if kind == "unanswerable" else 8) + rng.random() * 24
            body.append(
                f'<circle class="dot" cx="{x(float(score)):.1f}" cy="{cy:.1f}" r="3" '
                f'fill="{CLASS_COLORS[kind]}" fill-opacity="0.6">'
                f"<title>{html.escape(str(record['id']))}: {float(score):.3f}</title></circle>"
            )
    if threshold is not None:
        body.append(
            f'<line class="threshold" x1="{x(threshold):.1f}" y1="30" '
            f'x2="{x(threshold):.1f}" y2="{height - 30}" stroke="#000" '
            'stroke-dasharray="4 3"/>'
        )
        body.append(_text(x(threshold) + 4, 26, f"refusal threshold {threshold:.2f}", "start"))
    body += _legend(10, 16, list(CLASS_COLORS.items()))
    return _svg(body, "answerability score, answerable vs unanswerable", height)


def plot_latency(a: Run, b: Run) -> str | None:
    """The cumulative distribution of per-item latency (ms, log scale) of both runs."""
    import math

    series = []
    for run in (a, b):
        totals = sorted(float(r.get("timings_ms", {}).get("total", 0.0)) for r in run.records)
        series.append([t for t in totals if t > 0])
    every = [t for s in series for t in s]
    if not every:
        return None
    lo, hi = math.log10(min(every)), math.log10(max(every))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    top, bottom, left, right = 30, H - 40, PAD, W - 10

    def x(v: float) -> float:
        return left + (math.log10(v) - lo) / (hi - lo) * (right - left)

    def y(q: float) -> float:
        return bottom - q * (bottom - top)

    body = _axis_y(top, bottom, left, right, [0, 0.5, 0.95, 1.0], y, lambda v: f"{v:.2f}")
    for k in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            v = m * 10**k
            if lo <= math.log10(v) <= hi:
                body.append(_text(x(v), bottom + 16, f"{v:g} ms", size=10))
    for j, totals in enumerate(series):
        if not totals:
            continue
        points = " ".join(
            f"{x(t):.1f},{y((i + 1) / len(totals)):.1f}" for i, t in enumerate(totals)
        )
        body.append(
            f'<polyline class="cdf" points="{points}" fill="none" '
            f'stroke="{COLORS[j]}" stroke-width="2"/>'
        )
    body += _legend(left + 10, 16, [(f"A {a.name}", COLORS[0]), (f"B {b.name}", COLORS[1])])
    body.append(_text(right, 16, "share of items answered within", "end", 12))
    return _svg(body, "latency distribution")


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1b1f24}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #d0d7de;padding:4px 8px}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.worse{color:#b42318;font-weight:600}.better{color:#1a7f37;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plots figure{margin:0;border:1px solid #d0d7de}
.flip{border:1px solid #d0d7de;margin:12px 0;padding:8px 12px}
.flip h3{margin:0 0 6px;font-size:15px}
.side{display:grid;grid-template-columns:1fr 1fr;gap:12px}.side pre{white-space:pre-wrap;margin:0}
.muted{color:#57606a}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _answer_html(record: Mapping[str, Any]) -> str:
    cites = "".join(
        f"<li>[{_e(c['n'])}] {_e(c['title'])}"
        + (
            f" <span class=muted>({_e(c.get('source', ''))}, p. {_e(c['page'])})</span>"
            if c.get("page")
            else ""
        )
        + f"<br><q>{_e(c['quote'])}</q></li>"
        for c in record.get("citations", [])
    )
    refused = " <span class=muted>(refused)</span>" if record.get("refused") else ""
    return f"<pre>{_e(record['answer'])}</pre>{refused}<ol>{cites}</ol>"


def format_html(
    a: Run, b: Run, rows: Sequence[MetricRow], flips: Sequence[Flip], plots: Sequence[str]
) -> str:
    table = "".join(
        f"<tr><td>{_e(r.name)}{' ↓' if r.name in LOWER_IS_BETTER else ''}</td>"
        f"<td class=n>{_f(r.a)}{_ci(r.a_ci)}</td><td class=n>{_f(r.b)}{_ci(r.b_ci)}</td>"
        f"<td class=n>{_signed(r.delta)}{_ci(r.delta_ci)}</td>"
        f"<td class={r.verdict}>{'' if r.verdict == 'same' else r.verdict}</td></tr>"
        for r in rows
    )
    judges = "".join(
        f"<p>LLM judge {label}: {_e(describe_judge_health(run.summary['judge_health']))}</p>"
        for label, run in (("A", a), ("B", b))
        if "judge_health" in run.summary
    )
    flip_html = "".join(
        f"<div class=flip id='flip-{_e(f.id)}'><h3>{'fixed' if f.fixed else 'regressed'}: "
        f"{_e(f.id)} ({_e(f.b['type'])})</h3><p>{_e(f.question)}</p>"
        f"<p class=muted>{_e('; '.join(f.reasons))}; expected: "
        f"{_e(', '.join(f.b['expected'].get('key_facts', [])) or 'a refusal')}</p>"
        f"<div class=side><div><b>A</b>{_answer_html(f.a)}</div>"
        f"<div><b>B</b>{_answer_html(f.b)}</div></div></div>"
        for f in flips
    )
    context = "".join(
        f"<li>{label} <b>{_e(run.name)}</b>: {len(run.records)} items, generator "
        f"{_e(run.summary.get('generator'))}, top_k {_e(run.summary.get('top_k'))}, "
        f"dataset {_e(run.summary.get('dataset', {}).get('path'))}, corpus "
        f"{_e(str(run.summary.get('corpus', {}).get('fingerprint', ''))[:12])}</li>"
        for label, run in (("A", a), ("B", b))
    )
    figures = "".join(f"<figure>{svg}</figure>" for svg in plots)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>citeqa eval: {_e(a.name)} vs {_e(b.name)}</title><style>{_CSS}</style></head>"
        f"<body><h1>citeqa eval: {_e(a.name)} (A) vs {_e(b.name)} (B)</h1><ul>{context}</ul>"
        "<h2>Metrics</h2><p class=muted>95% bootstrap intervals over items; Δ paired by item "
        "id; worse/better when its interval excludes 0. ↓: lower is better.</p>"
        "<table><tr><th>metric</th><th>A</th><th>B</th><th>Δ (B-A)</th><th></th></tr>"
        f"{table}</table>{judges}<h2>Plots</h2><div class=plots>{figures}</div>"
        f"<h2>Flipped items ({len(flips)})</h2>{flip_html or '<p>None.</p>'}</body></html>\n"
    )


def write_compare(run_a: Path, run_b: Path, out: Path) -> dict[str, Path]:
    """Compare two eval output folders; write ``compare.md`` and ``report.html`` into ``out``."""
    a, b = load_run(run_a), load_run(run_b)
    if a.name == b.name:
        a.name, b.name = str(run_a), str(run_b)
    rows = metric_rows(a, b)
    flips = flipped(a, b)
    threshold = b.summary.get("refusal_threshold", a.summary.get("refusal_threshold"))
    plots = [
        svg
        for svg in (
            *(plot_by_type(a, b, m) for m in PLOT_METRICS),
            plot_answerability(a, b, threshold),
            plot_latency(a, b),
        )
        if svg is not None
    ]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "compare.md", "html": out / "report.html"}
    paths["markdown"].write_text(format_markdown(a, b, rows, flips), encoding="utf-8")
    paths["html"].write_text(format_html(a, b, rows, flips, plots), encoding="utf-8")
    return paths
