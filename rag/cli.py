"""The `rag` command line. Thin: parse, call one `rag` function, format the result."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import asdict, replace
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from rag.config import Settings

PROCESS_START = time.perf_counter()

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="招商政策问答: offline, cited answers."
)
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error (user text is never read as markup) and return the exit."""
    err.print(Text("error: ", style="bold red") + Text(message))
    return typer.Exit(code)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            (f"RAG_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "") + e["msg"]
            for e in exc.errors()
        )
        raise fail(f"bad configuration: {problems}", 2) from None


class _Bar:
    """A rich progress bar on a TTY, nothing otherwise."""

    def __init__(self, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        )
        self._label = label
        self._task = None

    def start(self, total: int) -> None:
        self._progress.start()
        self._task = self._progress.add_task(self._label, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n)

    def stop(self) -> None:
        self._progress.stop()


def _sharing(settings: Settings):
    """Commands that open an embedded store never run beside the server that owns it
    (`DataDirOwned`, a RuntimeError, says what to do); a Chroma server takes many."""
    from contextlib import nullcontext

    from rag.owner import sharing

    return nullcontext() if settings.chroma_url else sharing(settings.data_dir)


@app.callback()
def _root() -> None:
    """招商政策问答: offline, cited answers over investment-promotion documents."""


@app.command()
def ingest(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="files or folders; default: the corpus dir")
    ] = None,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="read and embed every document of these folders again (an interrupted "
            "rebuild leaves the index whole); other folders, uploads and knowledge bases "
            "are not touched",
        ),
    ] = False,
    mirror: Annotated[
        bool,
        typer.Option(
            "--mirror",
            help="make knowledge base --kb equal to these folders: also remove its documents "
            "that are not in them, uploads included (lists them and asks first)",
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="with --mirror: remove without asking")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the counts as one JSON object")
    ] = False,
    kb: Annotated[
        str, typer.Option("--kb", help="the knowledge base the documents belong to")
    ] = "default",
) -> None:
    """Index documents (.txt .md .html .pdf .docx .doc .wps .xlsx .csv .ofd, images by OCR,
    .jsonl[.gz] records), incrementally."""
    from rag.index import Cancelled
    from rag.ingest import ingest as run_ingest
    from rag.manifest import check_kb_name

    settings = load_settings()
    roots = paths or [settings.corpus_dir]
    try:
        kb = check_kb_name(kb)
    except ValueError as exc:
        raise fail(f"--kb: {exc}", 2) from None
    if yes and not mirror:
        raise fail("--yes only goes with --mirror", 2)
    if mirror and not yes and not sys.stdin.isatty():
        raise fail("--mirror removes documents: run it on a terminal to confirm, or add --yes", 2)
    bar = _Bar("embedding")
    try:
        with _sharing(settings):
            report = run_ingest(
                roots,
                _index_to_write(settings, rebuild),
                settings.chunk_size,
                settings.chunk_overlap,
                rebuild=rebuild,
                progress=bar,
                kb=kb,
                commit_chunks=settings.commit_chunks,
                mirror=mirror,
                confirm=lambda doomed: _confirm_removal(doomed, kb, yes),
            )
    except Cancelled:
        raise fail("nothing was changed", 1) from None
    except (RuntimeError, OSError) as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted: what was published stays; run it again to finish", 130) from None
    finally:
        bar.stop()

    if as_json:
        out.print(json.dumps(report.to_json(), ensure_ascii=False), markup=False)
    else:
        for failure in report.failures:
            err.print(f"skipped {failure.path}: {failure.reason}", markup=False)
        out.print(
            f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
            f"{report.removed} removed, {report.failed} failed"
            + (f", {report.duplicates} duplicates" if report.duplicates else "")
            + f"; {report.chunks_written} chunks written in {report.seconds:.1f} s",
            markup=False,
        )
    if report.added + report.updated + report.unchanged == 0 and report.failed + report.duplicates:
        raise fail(f"nothing could be read from {', '.join(map(str, roots))}")


def _confirm_removal(doomed: list[str], kb: str, yes: bool) -> bool:
    """--mirror: say which documents of `kb` go, and ask (unless --yes)."""
    if not doomed:
        return True
    err.print(f"--mirror removes {len(doomed)} documents of knowledge base {kb!r}:", markup=False)
    for doc_id in doomed[:50]:
        err.print(f"  {doc_id}", markup=False)
    if len(doomed) > 50:
        err.print(f"  … and {len(doomed) - 50} more", markup=False)
    return yes or typer.confirm("remove them?", default=False, err=True)


def _index_to_write(settings: Settings, rebuild: bool):
    """The index `rag ingest` writes. A rebuild keeps one this version can read, so that
    it is served whole until the rebuild publishes; one another version or model wrote
    (nothing in it can be served) is started anew."""
    from rag.chain import open_index

    try:
        return open_index(settings)
    except RuntimeError as exc:
        if not rebuild:
            raise
        err.print(f"starting from an empty index: {exc}", markup=False)
        return open_index(settings, fresh=True)


def _iso_date(value: str | None, flag: str) -> str:
    if not value:
        return ""
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise fail(f"{flag} needs a date like 2024-03-15, got {value!r}", 2) from None


def _read_history(path: Path) -> list[dict]:
    """The `--history` file: a JSON list of {"role", "content"} messages."""
    try:
        history = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}", 2) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise fail(f"{path} is not UTF-8 JSON: {exc}", 2) from None
    if not isinstance(history, list) or not all(
        isinstance(m, dict)
        and m.get("role") in ("user", "assistant", "system")
        and isinstance(m.get("content"), str)
        for m in history
    ):
        raise fail(
            f'{path} must hold a JSON list of {{"role": "user"|"assistant"|"system", '
            '"content": "…"}',
            2,
        )
    return history


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question, in Chinese or English")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    k: Annotated[int | None, typer.Option("--k", help="passages the answer may quote")] = None,
    since: Annotated[
        str | None, typer.Option(help="only documents dated on/after YYYY-MM-DD")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="only documents dated on/before YYYY-MM-DD")
    ] = None,
    source: Annotated[str | None, typer.Option(help="only documents from this source")] = None,
    history_file: Annotated[
        Path | None,
        typer.Option(
            "--history",
            help='earlier turns: a JSON list of {"role": "user"|"assistant", "content": "…"}',
        ),
    ] = None,
    kb: Annotated[
        list[str] | None, typer.Option("--kb", help="knowledge base to search (repeatable)")
    ] = None,
) -> None:
    """Answer a question from the index, citing the passages used. When a running
    `rag serve` owns the data dir, the question goes to it."""
    from rag.chain import QuestionError, build_assistant, check_k, check_kbs, check_question
    from rag.index import Filters
    from rag.owner import DataDirOwned

    settings = load_settings()
    filters = Filters(
        since=_iso_date(since, "--since"), until=_iso_date(until, "--until"), source=source or ""
    )
    started = time.perf_counter()
    try:
        question = check_question(question, settings.max_question_chars)
        k = check_k(settings.k if k is None else k)
    except QuestionError as exc:
        raise fail(str(exc), 2) from None
    history = _read_history(history_file) if history_file else []
    try:
        with _sharing(settings):
            assistant = build_assistant(settings)
            filters = replace(filters, kbs=check_kbs(assistant.retriever.index, kb))
            empty = assistant.retriever.index.count() == 0
            answer = None if empty else assistant.ask(question, k, filters, history).to_json()
    except DataDirOwned:
        answer = _ask_server(
            settings.data_dir, question, k, filters, history, kb or [], settings.api_key
        )
    except QuestionError as exc:
        raise fail(str(exc), 2) from None
    except (RuntimeError, OSError) as exc:
        raise fail(str(exc)) from None
    if answer is None:
        raise fail("the index is empty; run `rag ingest` first")
    answer["timings_ms"]["process_ms"] = round((time.perf_counter() - PROCESS_START) * 1000, 1)
    answer["timings_ms"]["command_ms"] = round((time.perf_counter() - started) * 1000, 1)

    if as_json:
        out.print(json.dumps(answer, ensure_ascii=False), markup=False)
        return
    if answer["notice"]:
        out.print(answer["notice"], markup=False)
    out.print(answer["answer"], markup=False)
    for sentence in answer["unverified"]:
        out.print(f"⚠ 未能在所引资料中核实的数字：{sentence}", markup=False)
    if answer["citations"]:
        out.print("\n来源：", markup=False)
    for c in answer["citations"]:
        out.print(
            f"[{c['n']}] {c['title']}（{c['date'] or '日期不详'}，{c['source'] or '来源不详'}）",
            markup=False,
        )
        for quote in c["quotes"]:
            out.print(f"    “{quote}”", markup=False)
    if answer.get("related"):  # a server of an older version sends none
        out.print("\n相关条款：", markup=False)
    for r in answer.get("related", []):
        where = "，".join(x for x in (r["title"] or r["doc_id"], r["article"]) if x)
        out.print(f"- {r['text']}（{where}）", markup=False)


def _ask_server(data_dir: Path, question, k, filters, history, kbs, key="") -> dict | None:
    """Ask the server that owns the data dir (its embedded store is not ours to open)."""
    import httpx

    from rag.owner import owned_message, owner_url

    url = owner_url(data_dir)
    if not url:
        raise fail(owned_message(data_dir))
    body = {
        "question": question,
        "k": k,
        "history": history,
        "kb": kbs,
        "filters": {
            key: value
            for key, value in (
                ("since", filters.since),
                ("until", filters.until),
                ("source", filters.source),
            )
            if value
        },
    }
    try:
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        response = httpx.post(f"{url}/api/ask", json=body, headers=auth, timeout=120)
    except httpx.HTTPError as exc:
        raise fail(f"the server at {url} owns {data_dir} but did not answer: {exc}") from None
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status_code}"
        if response.status_code == 401:
            message += (
                " (the server signs callers in: set RAG_API_KEY to a key from `rag keys create`)"
            )
        raise fail(f"{url}: {message}", 2 if response.status_code < 500 else 1)
    return response.json()


@app.command(name="eval")
def eval_(
    eval_set: Annotated[
        Path,
        typer.Argument(
            metavar="SET", help="questions JSONL, or a folder with questions.jsonl and docs.jsonl"
        ),
    ],
    as_json: Annotated[
        bool,
        typer.Option("--json", help="print the report (metrics, questions) as one JSON object"),
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="write report.json, questions.jsonl, report.html here"),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(
            "--junit",
            metavar="FILE",
            help="write a JUnit XML report: a test case per question and per gate",
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="an earlier run's --json output or report.json: print each metric's change "
            "and the questions that flipped"
        ),
    ] = None,
    allow_regressions: Annotated[
        int,
        typer.Option(
            "--allow-regressions",
            min=0,
            metavar="N",
            help="with --baseline: pass while at most N questions went from right to wrong",
        ),
    ] = 0,
    k: Annotated[int | None, typer.Option("--k", help="passages an answer may quote")] = None,
    kb: Annotated[
        list[str] | None, typer.Option("--kb", help="knowledge base to search (repeatable)")
    ] = None,
    min_hit1: Annotated[float | None, typer.Option("--min-hit@1")] = None,
    min_hit5: Annotated[float | None, typer.Option("--min-hit@5")] = None,
    min_mrr10: Annotated[float | None, typer.Option("--min-mrr@10")] = None,
    min_answer_acc: Annotated[float | None, typer.Option("--min-answer_acc")] = None,
    min_answer_first_acc: Annotated[float | None, typer.Option("--min-answer_first_acc")] = None,
    min_citation_precision: Annotated[
        float | None, typer.Option("--min-citation_precision")
    ] = None,
    min_refusal_acc: Annotated[float | None, typer.Option("--min-refusal_acc")] = None,
    min_scope_acc: Annotated[float | None, typer.Option("--min-scope_acc")] = None,
) -> None:
    """Run an evaluation set; exit 1 when a metric is under its threshold or a question
    regressed against the baseline.

    Thresholds: `--min-METRIC` flags and the `min` table of the set's TOML file
    (evals/project.jsonl → evals/project.toml); flags win.
    Regressions: with `--baseline`, a question right there and wrong now;
    more than `--allow-regressions` (default 0) fail the run.

    Exit status:
    0  every threshold and the regression gate passed;
    1  a threshold or regression failure
       (or the run failed: an empty index, a store error);
    2  bad input: a set file (the message names the wrong line),
       a thresholds file, a baseline (missing, not a report, of another set).
    """
    from rag.chain import QuestionError, build_assistant, check_k, check_kbs
    from rag.evaluate import EvalSetError, load_questions, open_set_index, run, summarise
    from rag.index import Filters
    from rag.report import (
        SUMMARY,
        BaselineError,
        ThresholdError,
        deltas,
        flips,
        load_baseline,
        load_thresholds,
        regression_gate,
        set_config_path,
        threshold_gates,
        write_reports,
    )

    settings = load_settings()
    questions_path = eval_set / "questions.jsonl" if eval_set.is_dir() else eval_set
    try:
        questions = load_questions(questions_path)
        thresholds = load_thresholds(set_config_path(eval_set))
        baseline_report = (
            load_baseline(baseline, eval_set, [q.id for q in questions]) if baseline else None
        )
        k = check_k(settings.k if k is None else k)
        if junit is not None and junit.is_dir():  # found now, not after the whole run
            raise ValueError(f"--junit {junit} is a folder; give the file to write")
    except FileNotFoundError as exc:
        raise fail(f"no such file: {exc.filename}", 2) from None
    except (EvalSetError, ThresholdError, BaselineError, ValueError) as exc:
        raise fail(str(exc), 2) from None
    flags = {
        "hit@1": min_hit1,
        "hit@5": min_hit5,
        "mrr@10": min_mrr10,
        "answer_acc": min_answer_acc,
        "answer_first_acc": min_answer_first_acc,
        "citation_precision": min_citation_precision,
        "refusal_acc": min_refusal_acc,
        "scope_acc": min_scope_acc,
    }
    thresholds.update({name: v for name, v in flags.items() if v is not None})

    try:
        with _sharing(settings):
            bar = _Bar("embedding the set's corpus")
            try:
                index, report = open_set_index(settings, eval_set, progress=bar)
            finally:
                bar.stop()
            if report is not None:
                err.print(
                    f"set corpus: {report.added + report.updated} embedded, {report.unchanged} cached",
                    markup=False,
                )
            empty = index.count() == 0
            if not empty:
                assistant = build_assistant(settings, index)
                scope = Filters(kbs=check_kbs(index, kb)) if kb else None
                bar = _Bar("asking")
                bar.start(len(questions))
                try:
                    rows = run(
                        lambda q: assistant.ask(q, k=k, filters=scope),
                        questions,
                        progress=bar.advance,
                    )
                finally:
                    bar.stop()
    except QuestionError as exc:
        raise fail(str(exc), 2) from None
    except (EvalSetError, RuntimeError, OSError) as exc:
        raise fail(str(exc)) from None
    if empty:
        raise fail(
            "the index is empty; run `rag ingest` first (or give a folder set with docs.jsonl)"
        )
    # The report: the metrics object of the contract, then what a later run compares with.
    result = summarise(rows)
    result["set"] = str(eval_set)
    result["questions"] = [r.outcome() for r in rows]
    gates = threshold_gates(result, thresholds)
    regression = None
    if baseline_report is not None:
        result["flipped"] = flips(rows, baseline_report)
        if result["flipped"] is not None:
            regression = regression_gate(result["flipped"], allow_regressions)
            gates.append(regression)
    set_name = eval_set.name.split(".", 1)[0] or "eval"
    try:
        if out_dir:
            write_reports(out_dir, result, rows, eval_set.name)
        if junit:
            from rag.junit import junit_xml, write_junit

            write_junit(junit, junit_xml(set_name, result, rows, gates))
    except OSError as exc:
        raise fail(f"cannot write the report: {exc}") from None

    if as_json:
        out.print(json.dumps(result, ensure_ascii=False), markup=False)
    else:
        for name in SUMMARY:
            out.print(f"{name:20s} {result[name]}", markup=False)
    if baseline_report is not None:
        for name, change in deltas(result, baseline_report).items():
            err.print(f"Δ {name:22s} {change:+.4f}", markup=False)
        _print_flips(result["flipped"], err if as_json else out)
    below = [g.failure for g in gates if g.failure and g is not regression]
    if below:
        err.print("below threshold:\n  " + "\n  ".join(below), markup=False)
    if regression is not None and regression.failure:
        err.print(f"regression: {regression.failure}", markup=False)
    if any(g.failure for g in gates):
        raise typer.Exit(1)


def _print_flips(flipped: dict | None, console: Console) -> None:
    """The questions that flipped since the baseline, by id (on stdout with the metrics;
    on stderr when stdout is the JSON object)."""
    if flipped is None:
        console.print(
            "the baseline lists no questions (an older report): metric changes only",
            markup=False,
        )
        return
    for label, ids in (
        ("regressed (right → wrong)", flipped["regressed"]),
        ("fixed (wrong → right)", flipped["fixed"]),
    ):
        console.print(f"{label}: {len(ids)}" + (f"  {' '.join(ids)}" if ids else ""), markup=False)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on (RAG_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (RAG_PORT)")] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="listen on a non-loopback address without sign-in (the network is the protection)",
        ),
    ] = False,
) -> None:
    """The web app: the chat at /, the HTTP API (/api/ask, /v1/chat/completions, /healthz,
    /widget.js) beside it."""
    settings = load_settings()
    try:
        # The web edge lives in ui.py, the one module that owns Gradio; the CLI is an edge
        # too, so it may start the other one.
        import ui
    except ImportError as exc:
        raise fail(
            f"`rag serve` needs the web extra ({exc.name} is missing): "
            "pip install 'policy-rag[web]'"
        ) from None
    try:
        ui.serve(settings, host or settings.host, port or settings.port, insecure_no_auth)
    except (ui.Unprotected, ValueError) as exc:  # ValueError: a grants file that is not valid
        raise fail(str(exc), 2) from None
    except RuntimeError as exc:  # a broken prompt template, a missing extra …
        raise fail(str(exc)) from None


keys_app = typer.Typer(
    no_args_is_help=True,
    help="API keys for programs and portals (sent as Authorization: Bearer KEY).",
)
app.add_typer(keys_app, name="keys")


def _key_store():
    from rag.keys import KEYS_FILE, KeyStore

    return KeyStore(load_settings().data_dir / KEYS_FILE)


def _audit(action: str, target: str) -> None:
    """A key's creation or revocation in the audit log, by whoever ran the command."""
    import getpass

    from rag.audit import AUDIT_FILE, AuditLog, Event

    log = AuditLog(load_settings().data_dir / AUDIT_FILE)
    log.record(Event(f"cli:{getpass.getuser()}", "cli", action, target))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="who or what holds the key, e.g. portal")],
    role: Annotated[str, typer.Option("--role", help="reader, editor or admin")] = "reader",
    kb: Annotated[
        list[str] | None,
        typer.Option("--kb", help="knowledge base it may touch (repeatable; default all)"),
    ] = None,
    origin: Annotated[
        list[str] | None,
        typer.Option(
            "--origin",
            help="browser origin it may be used from, e.g. http://portal.intra (repeatable)",
        ),
    ] = None,
    rate: Annotated[
        str, typer.Option("--rate", help="its rate limit, e.g. 60/min (default: RAG_RATE_LIMIT)")
    ] = "",
    expires: Annotated[
        str,
        typer.Option(
            "--expires",
            help="lifetime as a number and a unit: d (days), h (hours) or m (minutes, the smallest), e.g. 90d, 12h, 30m (default: never expires)",
        ),
    ] = "",
    as_json: Annotated[
        bool, typer.Option("--json", help='print {"name", "key", "role", "kbs"}')
    ] = False,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    from rag.access import Role
    from rag.keys import parse_duration, parse_rate

    try:
        key, secret = _key_store().create(
            name,
            Role.named(role),
            frozenset(k.strip() for k in kb) if kb else None,
            tuple(origin or ()),
            parse_rate(rate) if rate else "",
            parse_duration(expires) if expires else None,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    _audit("key create", key.name)
    if as_json:
        out.print_json(data={**key.to_json(), "key": secret})
        return
    out.print(f"key {key.name} ({key.role.name.lower()}, kbs: {', '.join(key.to_json()['kbs'])})")
    out.print(secret, markup=False)
    err.print("shown once: store it now (only its hash is kept)", markup=False)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The keys, with role, knowledge bases, origins, expiry and when each was last used."""
    keys = [k.to_json() for k in _key_store().list()]
    if as_json:
        out.print_json(data=keys)
        return
    from rich.table import Table

    table = Table("name", "role", "kbs", "origins", "rate", "expires", "last used", "revoked")
    for k in keys:
        table.add_row(
            k["name"],
            k["role"],
            ", ".join(k["kbs"]),
            ", ".join(k["origins"]) or "any",
            k["rate"] or "default",
            k["expires"] or "never",
            k["last_used"] or "never",
            k["revoked"] or "",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Revoke a key at once (and the embed tokens it issued), on every server sharing the data dir."""
    from rag.keys import UnknownKey

    try:
        _key_store().revoke(name)
    except UnknownKey as exc:
        raise fail(str(exc), 2) from None
    _audit("key revoke", name)
    out.print(f"revoked {name}", markup=False)


@app.command()
def audit(
    limit: Annotated[int, typer.Option(min=1, max=10000, help="latest events")] = 50,
    user: Annotated[str, typer.Option(help="only this user's events")] = "",
    action: Annotated[str, typer.Option(help="only actions containing this, e.g. DELETE")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Who asked, uploaded, edited, deleted, issued or revoked what, and when; and who
    was refused (the server's audit log, newest first)."""
    from rag.audit import AUDIT_FILE, AuditLog

    events = [
        e.to_json()
        for e in AuditLog(load_settings().data_dir / AUDIT_FILE).read(limit, user, action)
    ]
    if as_json:
        out.print_json(data=events)
        return
    for e in events:
        line = f"{e['ts']}  {e['user']} ({e['via']})  {e['action']}  {e['target']}"
        out.print(
            line + (f"  kb={e['kb']}" if e["kb"] else "") + f"  → {e['status'] or 'ok'}",
            markup=False,
        )


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="the checks as JSON")] = False,
) -> None:
    """Check this installation: versions, installed files against their recorded sums,
    the model, the index, free disk, sign-in and the LLM endpoint; print what to fix.
    Exits 1 when a check fails."""
    from rag import doctor as checks

    settings = load_settings()
    results = checks.run(settings)
    if as_json:
        out.print_json(data=[asdict(c) for c in results])
    else:
        marks = {checks.Status.OK: "✓", checks.Status.WARN: "!", checks.Status.FAIL: "✗"}
        for c in results:
            line = Text(f"{marks[c.status]} {c.name}: ") + Text(c.detail)
            if c.fix:
                line += Text(f"\n    → {c.fix}")
            out.print(line)
    if any(c.status is checks.Status.FAIL for c in results):
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except OSError as exc:  # most often the output itself: a full disk, a closed pipe
        with contextlib.suppress(OSError):
            err.print(f"error: {exc.strerror or exc}", markup=False)
        sys.exit(1)
