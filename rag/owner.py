"""Who owns a data dir: a running `rag serve` holds a lock on it for its whole life.

Chroma's embedded store is not safe across processes (a second process's reads go stale
and a stale writer can overwrite another's rows), so with an embedded store the server is
the data dir's only writer: `rag ingest` and `rag eval` see the lock and say what to do
instead of writing beside it. The server also leaves its address, so a command can point
the user at it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = "serve.lock"
INFO = "serve.json"


class DataDirOwned(RuntimeError):
    """Another process (a running `rag serve`) owns the data dir."""


@contextmanager
def _locked(data_dir: Path, mode: int) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / LOCK, "a+") as lock:
        try:
            fcntl.flock(lock, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirOwned(owned_message(data_dir)) from None
        yield


@contextmanager
def own(data_dir: Path, url: str) -> Iterator[None]:
    """Hold the data dir for a server's lifetime; `DataDirOwned` if another one does."""
    with _locked(data_dir, fcntl.LOCK_EX):
        info = data_dir / INFO
        info.write_text(json.dumps({"pid": os.getpid(), "url": url}), "utf-8")
        try:
            yield
        finally:
            info.unlink(missing_ok=True)


def sharing(data_dir: Path):
    """For a command that opens the embedded store (ingest, ask, eval): it may run beside
    other commands but not beside a server; `DataDirOwned` says what to do instead."""
    return _locked(data_dir, fcntl.LOCK_SH)


def owned_message(data_dir: Path) -> str:
    try:
        info = json.loads((data_dir / INFO).read_text("utf-8"))
    except (OSError, ValueError):  # a command is using it, or a server is starting
        return f"another process is using {data_dir} (a `rag ingest`?); wait for it to finish"
    url = info.get("url", "?")
    return (
        f"a running `rag serve` (pid {info.get('pid', '?')}, {url}) owns {data_dir}: upload "
        f"documents at {url}/admin or with `curl -F files=@FILE {url}/api/documents`, ask at "
        f"{url}, or stop the server first (or use another RAG_DATA_DIR)"
    )


def owner_url(data_dir: Path) -> str:
    """The local address of the server that owns `data_dir` ("" if unknown)."""
    try:
        url = json.loads((data_dir / INFO).read_text("utf-8")).get("url", "")
    except (OSError, ValueError):
        return ""
    # A server listening on every address is reached here through loopback.
    return url.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//127.0.0.1:")
