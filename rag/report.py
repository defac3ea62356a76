"""Evaluation reports: thresholds, baselines and a self-contained HTML page.

Everything shown in the page comes from documents and questions, which are untrusted:
it is escaped before it is placed, and the page loads nothing from anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.evaluate import Row
from rag.render import escape, highlight

# The metrics a threshold may name (higher is better for each).
GATED = (
    "hit@1",
    "hit@5",
    "mrr@10",
    "answer_acc",
    "answer_first_acc",
    "citation_precision",
    "refusal_acc",
    "scope_acc",
)
# What a person sees of a run, in this order.
SUMMARY = ("n", *GATED, "answer_chars_p50", "latency_ms")


class ThresholdError(ValueError):
    """A thresholds file or flag we cannot use."""


def set_config_path(set_path: Path) -> Path:
    """`evals/project.jsonl` → `evals/project.toml`; a folder `x/` → `x.toml` beside it,
    or `x/eval.toml` inside it."""
    if set_path.is_dir():
        inside = set_path / "eval.toml"
        return inside if inside.is_file() else set_path.with_suffix(".toml")
    return set_path.with_name(set_path.name.split(".", 1)[0] + ".toml")


def load_thresholds(config: Path) -> dict[str, float]:
    """`[min]` table of a set's TOML file: `"hit@5" = 0.9`, `answer_acc = 0.8` …"""
    if not config.is_file():
        return {}
    try:
        data = tomllib.loads(config.read_text("utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ThresholdError(f"{config}: {err}") from None
    table = data.get("min", {})
    unknown = set(table) - set(GATED)
    if unknown:
        raise ThresholdError(f"{config}: unknown metric(s) {sorted(unknown)}; use {list(GATED)}")
    return {k: float(v) for k, v in table.items()}


@dataclass(frozen=True)
class Gate:
    """One check that decides the run's exit status: a threshold, or the regressions
    against a baseline. `failure` says what fell short; None when it passed."""

    name: str
    failure: str | None = None


def threshold_gates(metrics: dict, thresholds: dict[str, float]) -> list[Gate]:
    """One gate per threshold (a metric the set cannot measure fails its gate)."""
    gates = []
    for name, minimum in thresholds.items():
        value = metrics.get(name)
        if value is None:
            failure = f"{name}: not measured by this set (needs {minimum})"
        elif value < minimum:
            failure = f"{name}: {value:.4f} < {minimum}"
        else:
            failure = None
        gates.append(Gate(f"{name} >= {minimum}", failure))
    return gates


def shortfalls(metrics: dict, thresholds: dict[str, float]) -> list[str]:
    """One line per metric under its threshold (a metric the set cannot measure is one)."""
    return [g.failure for g in threshold_gates(metrics, thresholds) if g.failure]


def regression_gate(flipped: dict, allowed: int) -> Gate:
    """Passes while at most `allowed` questions went from right to wrong."""
    regressed = flipped["regressed"]
    failure = None
    if len(regressed) > allowed:
        failure = (
            f"{len(regressed)} question(s) went from right to wrong since the baseline "
            f"(allowed: {allowed}): {', '.join(regressed)}"
        )
    return Gate(f"at most {allowed} regression(s) against the baseline", failure)


class BaselineError(ValueError):
    """A baseline file we cannot compare with."""


def load_baseline(path: Path, set_path: Path, question_ids: Sequence[str]) -> dict:
    """An earlier `rag eval --json` output (or `--out`'s report.json) of the same set.

    It is of the same set when it names a set of the same name (runs from other
    checkouts differ in the folder only) and, when it lists its questions, shares
    some of them; questions added or dropped since are left out of the comparison."""
    try:
        baseline = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"no such baseline file: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BaselineError(f"{path}: not a JSON report of `rag eval` ({err})") from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("n"), int):
        raise BaselineError(f"{path}: not a report of `rag eval` (no metrics object)")
    named = baseline.get("set")
    if isinstance(named, str) and Path(named).name != set_path.name:
        raise BaselineError(
            f"{path} is a baseline of another set ({Path(named).name}, not {set_path.name})"
        )
    questions = baseline.get("questions")
    if questions is None:
        return baseline  # an older report: metric changes only
    if not isinstance(questions, list) or not all(
        isinstance(q, dict) and isinstance(q.get("id"), str) and isinstance(q.get("correct"), bool)
        for q in questions
    ):
        raise BaselineError(f'{path}: "questions" must be a list of {{"id", "correct"}} rows')
    if questions and not {q["id"] for q in questions} & set(question_ids):
        raise BaselineError(
            f"{path} is a baseline of another set: none of its {len(questions)} question ids "
            "is in this set"
        )
    return baseline


def flips(rows: Sequence[Row], baseline: dict) -> dict | None:
    """The ids of the questions that went from right to wrong (`regressed`) and from wrong
    to right (`fixed`) since the baseline, in the set's order; None when the baseline
    does not list its questions."""
    if baseline.get("questions") is None:
        return None
    before = {q["id"]: q["correct"] for q in baseline["questions"]}
    return {
        "regressed": [r.id for r in rows if before.get(r.id) is True and not r.correct],
        "fixed": [r.id for r in rows if before.get(r.id) is False and r.correct],
    }


def deltas(metrics: dict, baseline: dict) -> dict[str, float]:
    """Metric − baseline for every number both reports have (latency by p50 and p95)."""
    out = {}
    for name, value in metrics.items():
        old = baseline.get(name)
        if isinstance(value, dict) and isinstance(old, dict):
            for sub in value:
                if isinstance(value[sub], int | float) and isinstance(old.get(sub), int | float):
                    out[f"{name}.{sub}"] = round(value[sub] - old[sub], 4)
        elif isinstance(value, int | float) and isinstance(old, int | float):
            out[name] = round(value - old, 4)
    return out


def write_reports(out_dir: Path, report: dict, rows: Sequence[Row], title: str) -> None:
    """report.json (the object `rag eval --json` prints), questions.jsonl, report.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), "utf-8")
    with (out_dir / "questions.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
    (out_dir / "report.html").write_text(render_html(report, rows, title), "utf-8")


_CSS = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC","PingFang SC",
"Microsoft YaHei",sans-serif;margin:2rem auto;max-width:60rem;color:#1f2328;line-height:1.6}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem}
.meta{color:#656d76;font-size:.9rem}
table.metrics{border-collapse:collapse;margin:.5rem 0}
table.metrics td,table.metrics th{border:1px solid #d0d7de;padding:.3rem .8rem;text-align:right}
table.metrics th:first-child,table.metrics td:first-child{text-align:left}
.bad{color:#cf222e;font-weight:600}.good{color:#1a7f37}
.charts{display:flex;gap:2rem;flex-wrap:wrap}
.failure{border:1px solid #d0d7de;border-radius:6px;padding:.8rem 1rem;margin:1rem 0}
.failure h3{font-size:1rem;margin:0 0 .4rem}.label{color:#656d76;font-size:.85rem}
.answer{background:#f6f8fa;padding:.4rem .6rem;border-radius:4px}
.passage{border-left:3px solid #d0d7de;padding-left:.7rem;margin:.4rem 0;font-size:.92rem}
mark{background:#fff3b0}
"""


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return escape(value)


def _bar_chart(title: str, labels: Sequence[str], values: Sequence[int], color: str) -> str:
    """A small inline SVG bar chart (no scripts, no external files)."""
    width, height, pad = 320, 160, 24
    top = max(values) if values and max(values) > 0 else 1
    bar = (width - 2 * pad) / max(1, len(values))
    parts = [
        f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height + 40}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = (height - pad) * value / top
        x = pad + i * bar
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{height - h:.1f}" width="{bar - 4:.1f}" '
            f'height="{h:.1f}" fill="{color}"/>'
        )
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{height - h - 4:.1f}" font-size="11" '
            f'text-anchor="middle">{value}</text>'
        )
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{height + 14}" font-size="11" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(
        f'<text x="{width / 2}" y="{height + 34}" font-size="12" '
        f'text-anchor="middle">{escape(title)}</text></svg>'
    )
    return "".join(parts)


def _flips_html(report: dict, rows: Sequence[Row]) -> str:
    """What flipped since the baseline: the first thing a corpus keeper looks for after a
    change. Empty when the run had no baseline."""
    if "flipped" not in report:
        return ""
    flipped = report["flipped"]
    if flipped is None:
        return "<h2>与基线相比</h2><p>基线报告不含逐题结果（较早的版本），只比较了指标。</p>"
    questions = {r.id: r.question for r in rows}

    def listed(ids: Sequence[str], linked: bool) -> str:
        if not ids:
            return "<p>无。</p>"
        items = "".join(
            f'<li><a href="#q-{escape(i)}">{escape(i)}</a> · {escape(questions.get(i, ""))}</li>'
            if linked
            else f"<li>{escape(i)} · {escape(questions.get(i, ''))}</li>"
            for i in ids
        )
        return f"<ul>{items}</ul>"

    regressed, fixed = flipped["regressed"], flipped["fixed"]
    return (
        '<h2 id="flipped">与基线相比</h2>'
        f'<h3 class="bad">由对变错（{len(regressed)}）</h3>{listed(regressed, True)}'
        f'<h3 class="good">由错变对（{len(fixed)}）</h3>{listed(fixed, False)}'
    )


def render_html(metrics: dict, rows: Sequence[Row], title: str) -> str:
    """The page for a report: what flipped since the baseline first (when there is one),
    then the metrics, the distributions and every failed question."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    metric_rows = []
    for name in SUMMARY[1:-1]:
        metric_rows.append(f"<tr><td>{escape(name)}</td><td>{_fmt(metrics.get(name))}</td></tr>")
    latency = metrics.get("latency_ms", {})
    metric_rows.append(
        f"<tr><td>latency p50 / p95 (ms)</td><td>{_fmt(latency.get('p50'))} / "
        f"{_fmt(latency.get('p95'))}</td></tr>"
    )

    bins = ["1", "2", "3", "4", "5", "6–10", "无"]
    counts = [0] * len(bins)
    for r in rows:
        if r.gold_docs and not (r.expect_refusal or r.out_of_scope):
            rank = r.gold_rank
            counts[rank - 1 if 1 <= rank <= 5 else 5 if 6 <= rank <= 10 else 6] += 1
    edges = [50, 100, 200, 400, 800]
    lat_labels = ["<50", "<100", "<200", "<400", "<800", "≥800"]
    lat_counts = [0] * len(lat_labels)
    for r in rows:
        lat_counts[next((i for i, e in enumerate(edges) if r.latency_ms < e), len(edges))] += 1

    failures = []
    for r in rows:
        if r.correct:
            continue
        expected = (
            "应拒答或说明知识库不涵盖"
            if r.out_of_scope
            else "应拒答"
            if r.expect_refusal
            else "、".join(
                "/".join(map(str, item)) if isinstance(item, list) else str(item)
                for item in r.expected
            )
        )
        passages = "".join(
            f'<div class="passage"><div class="label">[{escape(c["n"])}] '
            + " · ".join(
                escape(x) for x in (c["title"], c["date"], c["source"], c["chunk_id"]) if x
            )
            + f"</div>{highlight(c['text'], c.get('quotes', []))}</div>"
            for c in r.citations
        )
        gold = "、".join(r.gold_docs) or "—"
        failures.append(
            f'<div class="failure" id="q-{escape(r.id)}"><h3>{escape(r.id)} · {escape(r.question)}</h3>'
            f'<div><span class="label">期望：</span>{escape(expected)}'
            f' <span class="label">　金标文档：</span>{escape(gold)}'
            f' <span class="label">　首个金标排名：</span>{escape(r.gold_rank or "未检出")}</div>'
            f'<div class="label">回答{"（已拒答）" if r.refused else ""}：</div>'
            f'<div class="answer">{escape(r.answer)}</div>{passages}</div>'
        )
    failures_html = "".join(failures) or "<p>没有失败的问题。</p>"
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>评测报告 · {escape(title)}</title><style>{_CSS}</style></head>
<body><h1>评测报告 · {escape(title)}</h1>
<div class="meta">{escape(when)} · {metrics.get("n", 0)} 个问题（可回答 {metrics.get("answerable", 0)}，应拒答 {metrics.get("unanswerable", 0)}）· 失败 {len(failures)}</div>
{_flips_html(metrics, rows)}
<h2>指标</h2><table class="metrics"><tr><th>指标</th><th>数值</th></tr>{"".join(metric_rows)}</table>
<h2>分布</h2><div class="charts">
{_bar_chart("首个金标文档的排名", bins, counts, "#0969da")}
{_bar_chart("每题延迟（毫秒）", lat_labels, lat_counts, "#8250df")}
</div>
<h2>失败的问题（{len(failures)}）</h2>{failures_html}
</body></html>
"""
