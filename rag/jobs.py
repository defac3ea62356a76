"""Ingest jobs inside `rag serve`: a bounded queue, one job at a time, states a person can
trust, cancel that cancels, and nothing lost on a crash.

Every change to the index made through the server is a job: an uploaded file, a delete,
a metadata edit, a re-index. Jobs are kept in SQLite, so a restarted server resumes
the ones that were queued or running (the uploaded originals are kept under the data dir).
The worker is the index's only writer in this process; answers keep being served from
the published generation meanwhile, and get the CPU first (`Index.give_way`).
"""

from __future__ import annotations

import enum
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rag.index import Cancelled, Index, Writer
from rag.ingest import (
    DEFAULT_KB,
    discard_original,
    doc_entry,
    make_chunks,
    remove_kept,
    settings_key,
    source_hash,
    with_corrections,
)
from rag.load import LoadFailure, NoTextError, UnreadableError, iter_records, parse_file, raw_hash
from rag.manifest import now
from rag.telemetry import kv

log = logging.getLogger("rag.jobs")

# Jobs waiting; beyond it a request gets 503 + Retry-After. A waiting job is a row here and
# its original on disk (already bounded per upload), so the bound can hold "re-index every
# document" of a large knowledge base, which is queued whole or not at all.
MAX_QUEUED = 5000
# A job running when the server stopped runs again at the next start; one that was running
# at this many stops (a file that takes the server down, say) fails instead.
MAX_INTERRUPTIONS = 2
KEEP_FINISHED = 2000  # finished jobs remembered for the page
ORPHAN_SECONDS = 600  # a kept upload no job names, this old, was left by a crash
# Answers first: before each embedding batch (a short one, ~0.6 s on 2 cores) a job waits
# up to this long for the questions in flight; under a constant stream of questions it
# still advances, at about half speed (bench/README.md).
GIVE_WAY_SECONDS = 0.5
JOB_EMBED_BATCH = 16


class Status(enum.StrEnum):
    QUEUED = "queued"
    READING = "reading"
    EMBEDDING = "embedding"
    INDEXED = "indexed"
    FAILED = "failed"
    NO_TEXT = "no_text"
    CANCELLED = "cancelled"


ACTIVE = (Status.QUEUED, Status.READING, Status.EMBEDDING)


class Kind(enum.StrEnum):
    UPLOAD = "upload"  # a file kept under the data dir → one document (or JSONL records)
    DELETE = "delete"
    EDIT = "edit"  # title, date, source, doc_type corrected by hand
    REINDEX = "reindex"  # read the document's original again and embed it anew


class QueueFull(RuntimeError):
    """Too many jobs waiting; the caller should retry later."""


class JobError(ValueError):
    """A request about jobs that cannot be granted; the message is for the user."""


@dataclass
class Job:
    id: str
    kind: str
    filename: str
    kb: str
    doc_id: str
    status: str
    progress: float
    error: str
    created: str
    updated: str
    payload: str = "{}"  # JSON: the original's path, the edited fields …

    def to_json(self) -> dict:
        out = asdict(self)
        del out["payload"]
        out["progress"] = round(self.progress, 3)
        return out

    @property
    def data(self) -> dict:
        return json.loads(self.payload)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT, filename TEXT, kb TEXT, doc_id TEXT, status TEXT,
    progress REAL, error TEXT, created TEXT, updated TEXT, payload TEXT, seq INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
"""


class JobQueue:
    """The server's ingest queue and its one worker thread."""

    def __init__(
        self,
        index: Index,
        data_dir: Path,
        chunk_size: int,
        chunk_overlap: int,
        max_queued: int = MAX_QUEUED,
    ):
        self.index = index
        self.data_dir = data_dir
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.max_queued = max_queued
        self._db = sqlite3.connect(
            data_dir / "jobs.sqlite", check_same_thread=False, isolation_level=None
        )
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()  # guards the connection and the job table
        self._wake = threading.Condition(self._lock)
        self._cancel: set[str] = set()
        self._stopping = False
        self._running: str | None = None
        self._thread: threading.Thread | None = None
        self._seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()[0]
        self.queued_cached = 0  # for /healthz: read without taking the lock
        self._resume_interrupted()
        self.sweep_originals()

    def _resume_interrupted(self) -> None:
        """Queue again the jobs that were running when the server stopped, from the start;
        fail those that were running at MAX_INTERRUPTIONS stops."""
        rows = self._db.execute(
            "SELECT id, payload FROM jobs WHERE status IN ('reading', 'embedding')"
        ).fetchall()
        for job_id, payload in rows:
            data = json.loads(payload)
            data["interrupted"] = data.get("interrupted", 0) + 1
            status, error = Status.QUEUED, ""
            if data["interrupted"] >= MAX_INTERRUPTIONS:
                status = Status.FAILED
                error = (
                    f"the server stopped {data['interrupted']} times while running this job; "
                    "retry it once the cause is found"
                )
                log.warning("job=%s failed: %s", job_id, error)
            self._db.execute(
                "UPDATE jobs SET status = ?, progress = 0, error = ?, payload = ? WHERE id = ?",
                (status.value, error, json.dumps(data, ensure_ascii=False), job_id),
            )

    def sweep_originals(self, older_than: float = ORPHAN_SECONDS) -> int:
        """Remove kept uploads that neither a document nor a job names: an upload whose
        jobs were never recorded (the server was killed between keeping the files and
        queueing them). Only files older than `older_than` seconds: a replica sharing the
        data dir may be between the two steps right now."""
        folder = self.data_dir / "originals"
        if not folder.is_dir():
            return 0
        named = {e.original for e in self.index.manifest.docs().values()}
        for (payload,) in self._db.execute("SELECT payload FROM jobs"):
            named.add(json.loads(payload).get("original", ""))
        cutoff = time.time() - older_than
        swept = 0
        for path in [p for p in folder.rglob("*") if p.is_file()]:
            relative = path.relative_to(self.data_dir).as_posix()
            if relative not in named and path.stat().st_mtime < cutoff:
                remove_kept(path, folder)
                swept += 1
        if swept:
            log.warning("removed %d kept uploads that no document or job names", swept)
        return swept

    # -- the queue ------------------------------------------------------------------------

    def submit(self, kind: Kind, **spec) -> Job:
        """One job: `kind`, then the fields `_insert` takes and the job's payload."""
        return self.submit_many([{"kind": kind, **spec}])[0]

    def submit_many(self, specs: list[dict]) -> list[Job]:
        """Jobs, each given as `_insert`'s arguments, queued all together or none: a batch (a
        zip, "re-index all") that does not fit is refused whole, never half queued."""
        with self._lock:
            waiting = sum(spec.get("status", Status.QUEUED) == Status.QUEUED for spec in specs)
            active = self._count(ACTIVE)
            if waiting and active + waiting > self.max_queued:
                raise QueueFull(
                    f"{active} jobs are waiting (at most {self.max_queued}); try again later"
                    if len(specs) == 1
                    else f"{waiting} jobs do not fit: {active} of at most {self.max_queued} are "
                    "waiting; nothing was queued, try again later or with fewer files"
                )
            # One transaction: a kill half way through a 1,000-file zip leaves all of its
            # jobs recorded or none (each insert committed alone left 66 of 200 untraced).
            self._db.execute("BEGIN IMMEDIATE")
            try:
                jobs = [self._insert(**spec) for spec in specs]
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._prune()
            self.queued_cached = self._count((Status.QUEUED,))
            self._wake.notify_all()
        for j in jobs:
            log.info(
                kv({"job": j.id, "kind": j.kind, "kb": j.kb, "doc": j.doc_id, "status": j.status})
            )
        return jobs

    def _insert(
        self,
        kind: Kind,
        filename: str = "",
        kb: str = DEFAULT_KB,
        doc_id: str = "",
        status: Status = Status.QUEUED,
        error: str = "",
        **payload,
    ) -> Job:
        self._seq += 1
        stamp = now()
        job = Job(
            id=uuid.uuid4().hex[:16],
            kind=kind.value,
            filename=filename,
            kb=kb,
            doc_id=doc_id,
            status=status.value,
            progress=0.0,
            error=error,
            created=stamp,
            updated=stamp,
            payload=json.dumps(payload, ensure_ascii=False),
        )
        self._db.execute(
            "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (*_row(job), self._seq)
        )
        return job

    def has_room(self, waiting: int) -> bool:
        """Whether `waiting` more jobs fit in the queue now (`submit_many` decides)."""
        with self._lock:
            return self._count(ACTIVE) + waiting <= self.max_queued

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return Job(*row) if row else None

    def list(self, active: bool = False, limit: int = 200) -> list[Job]:
        where = f"WHERE status IN ({','.join('?' * len(ACTIVE))})" if active else ""
        args = [s.value for s in ACTIVE] if active else []
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY seq DESC LIMIT ?", (*args, limit)
            ).fetchall()
        return [Job(*r) for r in rows]

    def pending_for(self) -> dict[str, str]:
        """{doc_id: status} of documents an active job is about to change."""
        active = self.list(active=True, limit=self.max_queued)
        return {j.doc_id: j.status for j in reversed(active) if j.doc_id}

    def counts(self) -> dict[str, int]:
        """{status: jobs} over the jobs remembered, every status present."""
        with self._lock:
            rows = dict(self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"))
        return {s.value: int(rows.get(s.value, 0)) for s in Status}

    def cancel(self, job_id: str) -> Job:
        with self._lock:
            job = self._get(job_id)
            if job.status not in ACTIVE:
                raise JobError(
                    f"job {job_id} is {job.status}; only a queued or running job can be cancelled"
                )
            if job.status == Status.QUEUED and self._running != job_id:
                self._set(job, status=Status.CANCELLED)
            else:
                self._cancel.add(job_id)  # the worker stops before its next batch
        log.info("job=%s cancel requested", job_id)
        return self.get(job_id)  # type: ignore[return-value]

    def retry(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if job.status in ACTIVE or job.status == Status.INDEXED:
            raise JobError(
                f"job {job_id} is {job.status}; only a finished, unsuccessful job can be retried"
            )
        original = job.data.get("original")
        if original and not (self.data_dir / original).is_file():
            raise JobError(
                f"job {job_id}'s file is not kept (one that cannot be read is not); upload it again"
            )
        data = {k: v for k, v in job.data.items() if k != "interrupted"}  # a fresh start
        return self.submit(
            Kind(job.kind), filename=job.filename, kb=job.kb, doc_id=job.doc_id, **data
        )

    def _get(self, job_id: str) -> Job:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return Job(*row)

    def _count(self, statuses) -> int:
        marks = ",".join("?" * len(statuses))
        return self._db.execute(
            f"SELECT COUNT(*) FROM jobs WHERE status IN ({marks})", [s.value for s in statuses]
        ).fetchone()[0]

    def _set(self, job: Job, **changes) -> None:
        for key, value in changes.items():
            setattr(job, key, value.value if isinstance(value, enum.Enum) else value)
        job.updated = now()
        self._db.execute(
            "UPDATE jobs SET status = ?, progress = ?, error = ?, updated = ?, doc_id = ? WHERE id = ?",
            (job.status, job.progress, job.error, job.updated, job.doc_id, job.id),
        )
        if "status" in changes:
            self.queued_cached = self._count((Status.QUEUED,))

    def _update(self, job: Job, **changes) -> None:
        with self._lock:
            self._set(job, **changes)

    def _prune(self) -> None:
        self._db.execute(
            "DELETE FROM jobs WHERE seq <= (SELECT seq FROM jobs ORDER BY seq DESC LIMIT 1 OFFSET ?)"
            f" AND status NOT IN ({','.join('?' * len(ACTIVE))})",
            (KEEP_FINISHED, *[s.value for s in ACTIVE]),
        )

    # -- the worker -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="ingest-jobs", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current embedding batch; an unfinished job is queued again and
        resumes with the next start."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        if self._thread:
            self._thread.join(timeout)

    def _next(self) -> Job | None:
        with self._lock:
            while not self._stopping:
                row = self._db.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1"
                ).fetchone()
                if row:
                    self._running = row[0]
                    return Job(*row)
                self._wake.wait(timeout=5)
        return None

    def _work(self) -> None:
        while (job := self._next()) is not None:
            started = time.perf_counter()
            try:
                self._settle(job)
            except Exception:  # recording the outcome failed: the queue must keep its worker
                log.exception("job=%s: its outcome could not be recorded", job.id)
            with self._lock:
                self._running = None
                self._cancel.discard(job.id)
            fields = {"job": job.id, "kind": job.kind, "kb": job.kb, "doc": job.doc_id}
            fields |= {"status": job.status, "ms": round((time.perf_counter() - started) * 1000)}
            log.info(kv({**fields, "error": job.error}))

    def _settle(self, job: Job) -> None:
        """Run `job` and record how it ended."""
        try:
            self._run(job)
        except Cancelled:
            if self._stopping:  # the server is stopping: do it again next time
                self._update(job, status=Status.QUEUED, progress=0.0)
            else:
                self._update(job, status=Status.CANCELLED)
        # The file goes before the outcome is shown: a retry asked the moment the job
        # reads "failed" must find it gone, not queue it again.
        except NoTextError as err:
            self._discard_upload(job)
            self._update(job, status=Status.NO_TEXT, error=str(err))
        except (UnreadableError, JobError, KeyError) as err:
            self._discard_upload(job)
            self._update(job, status=Status.FAILED, error=_reason(err))
        except Exception as err:  # a bug or a broken store: say so on the page and in the log
            log.exception("job=%s failed", job.id)
            self._update(
                job, status=Status.FAILED, error=f"internal error: {type(err).__name__}: {err}"
            )

    def _discard_upload(self, job: Job) -> None:
        """An upload that can never be indexed as it is takes its kept file with it (a
        cancelled one, or one a bug stopped, keeps it for a retry)."""
        if job.kind == Kind.UPLOAD:
            self.discard_original(job.data.get("original", ""))

    def _cancelled(self, job: Job) -> Callable[[], bool]:
        return lambda: self._stopping or job.id in self._cancel

    def _run(self, job: Job) -> None:
        cancelled = self._cancelled(job)
        if cancelled():
            raise Cancelled()
        replaced: set[str] = set()  # the kept originals of the versions the job replaces
        with self.index.writer(
            wait=True,
            before_batch=lambda: self.index.give_way(GIVE_WAY_SECONDS),
            batch=JOB_EMBED_BATCH,
        ) as writer:
            if job.kind == Kind.DELETE:
                entry = self.index.manifest.get(job.doc_id)
                if entry is None:
                    raise JobError(f"no document {job.doc_id!r}")
                writer.remove([job.doc_id])
                replaced.add(entry.original)
            elif job.kind == Kind.EDIT:  # the original stays what it was
                if self.index.manifest.get(job.doc_id) is None:
                    raise JobError(f"no document {job.doc_id!r}")
                writer.edit(job.doc_id, job.data["changes"])
            elif job.kind in (Kind.UPLOAD, Kind.REINDEX):
                replaced = self._read_and_embed(job, writer, cancelled)
            else:
                raise JobError(f"unknown job kind {job.kind!r}")
            writer.commit(cancelled)
        # The job's own file is what its documents now name: only the others may be unused.
        for original in replaced - {job.data.get("original", "")}:
            self.discard_original(original)
        self._update(job, status=Status.INDEXED, progress=1.0, error=job.error)

    def discard_original(self, original: str) -> None:
        """Delete a kept original (under data_dir/originals) that no document names any more.
        Each upload is kept under its own path (`api.documents.keep`), so this is the only
        way one goes; a file `rag ingest` read stays where it is."""
        discard_original(self.data_dir, self.index.manifest, original)

    def _read_and_embed(self, job: Job, writer: Writer, cancelled: Callable[[], bool]) -> set[str]:
        """Stage the document (or JSONL records) of `job`; returns the originals of the
        versions it replaces."""
        self._update(job, status=Status.READING)
        original = self.data_dir / job.data["original"]
        try:
            data = original.read_bytes()
        except OSError as err:
            raise JobError(f"the original file is gone ({err.strerror or err})") from None
        origin = job.data.get("origin") or f"upload:{job.kb}"
        key = settings_key(self.index, self.chunk_size, self.chunk_overlap)
        digest = source_hash(raw_hash(data), key)
        skipped: list[str] = []
        if job.filename.lower().endswith((".jsonl", ".jsonl.gz")):
            docs = []
            for item in iter_records(original):  # one bad record does not sink the rest
                try:
                    if isinstance(item, LoadFailure):
                        raise UnreadableError(f"{item.path}: {item.reason}")
                    doc = item.load()
                    if not doc.doc_id.startswith(f"{job.kb}/"):  # as an uploaded file's
                        doc = replace(doc, doc_id=f"{job.kb}/{doc.doc_id}")
                    docs.append((doc, source_hash(item.raw_hash, key)))
                except UnreadableError as err:  # named by the file's name, not the server's path
                    skipped.append(str(err).replace(str(original), job.filename))
            if not docs:
                raise UnreadableError(
                    f"no readable record ({skipped[0] if skipped else 'the file is empty'})"
                )
        else:
            docs = [(parse_file(Path(job.filename), job.doc_id, data), digest)]
        known = self.index.manifest.docs()
        # Twins are looked for within this knowledge base only: naming a document of
        # another would tell an editor what a knowledge base they may not read holds.
        texts = {e.text_hash: d for d, e in known.items() if e.kb == job.kb}
        total = 0
        planned = []
        seen: set[str] = set()
        notes: list[str] = []
        for doc, doc_digest in docs:
            if doc.doc_id in seen:  # as `rag ingest` does: the first record is kept
                skipped.append(f"{doc.doc_id}: duplicate id")
                continue
            seen.add(doc.doc_id)
            entry = known.get(doc.doc_id)
            if entry is not None and entry.kb != job.kb:
                # A record's id is the uploader's to choose (JSONL "id"): it must not
                # replace a document of another knowledge base.
                if len(docs) == 1:
                    raise JobError(f"{doc.doc_id!r} is taken by another knowledge base")
                skipped.append(f"{doc.doc_id}: the id is taken by another knowledge base")
                continue
            if (
                job.kind == Kind.UPLOAD
                and entry is not None
                and entry.source_hash == doc_digest
                and entry.kb == job.kb
            ):
                continue  # the same file again: nothing to do
            twin = texts.get(doc.content_hash)
            if twin is not None and twin != doc.doc_id:
                if len(docs) == 1:
                    raise JobError(f"same text as the indexed document {twin!r}")
                skipped.append(f"{doc.doc_id}: same text as {twin!r}")
                continue
            texts[doc.content_hash] = doc.doc_id
            notes += [f"{doc.doc_id}: {note}" for note in doc.notes]  # indexed all the same
            corrected = ""
            if job.kind == Kind.REINDEX:  # the same original read again: corrections stand
                doc, corrected = with_corrections(doc, entry)
            chunks = make_chunks(doc, self.chunk_size, self.chunk_overlap)
            planned.append((doc, doc_digest, chunks, corrected))
            total += len(chunks)
        said = [f"{len(skipped)} skipped, e.g. {skipped[0]}"] if skipped else []
        if said or notes:  # shown with the job; the job itself succeeds
            job.error = "; ".join(said + notes[:5])
        self._update(job, status=Status.EMBEDDING, progress=0.0)
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            self._update(job, progress=min(done / max(total, 1), 0.99))

        for doc, doc_digest, chunks, corrected in planned:
            entry = doc_entry(doc, job.kb, origin, doc_digest, job.data["original"])
            writer.put(replace(entry, corrected=corrected), chunks, advance, cancelled)
        return {known[doc.doc_id].original for doc, *_ in planned if doc.doc_id in known}


_COLUMNS = "id, kind, filename, kb, doc_id, status, progress, error, created, updated, payload"


def _row(job: Job) -> tuple:
    return (
        job.id,
        job.kind,
        job.filename,
        job.kb,
        job.doc_id,
        job.status,
        job.progress,
        job.error,
        job.created,
        job.updated,
        job.payload,
    )


def _reason(err: Exception) -> str:
    return f"no document {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
