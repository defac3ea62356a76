"""The `rag` command line. Thin: parse, call one `rag` function, format the result."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from rag.config import Settings

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="招商政策问答: offline, cited answers."
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", markup=True)
    return typer.Exit(code)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"RAG_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
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


@app.callback()
def _root() -> None:
    """招商政策问答: offline, cited answers over investment-promotion documents."""


@app.command()
def ingest(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="files or folders; default: the corpus dir")
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="drop the index and build it anew")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the counts as one JSON object")
    ] = False,
) -> None:
    """Index documents (.txt .md .html .pdf .docx, .jsonl[.gz] records), incrementally."""
    from rag.chain import open_index
    from rag.ingest import ingest as run_ingest

    settings = load_settings()
    roots = paths or [settings.corpus_dir]
    bar = _Bar("embedding")
    try:
        report = run_ingest(
            roots,
            open_index(settings),
            settings.chunk_size,
            settings.chunk_overlap,
            rebuild=rebuild,
            progress=bar,
        )
    except (RuntimeError, OSError) as exc:
        raise fail(str(exc)) from None
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
