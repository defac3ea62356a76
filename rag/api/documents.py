"""Routes for the people who keep the corpus: upload, jobs, documents, knowledge bases, a
retrieval test, and the management page at /admin. Thin: each parses, calls the job queue
or the index, and formats.

Every change goes through the job queue (the index's one writer); the routes answer at
once with the job, and the page polls it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag.access import Forbidden, Principal
from rag.chain import Assistant, QuestionError, check_k, check_question, granted_filters
from rag.ingest import DEFAULT_KB
from rag.jobs import JobError, JobQueue, Kind, QueueFull, Status
from rag.load import MAX_FILE_BYTES, LoadFailure, supported, unpack_zip
from rag.manifest import check_kb_name

log = logging.getLogger("rag.api")

STATIC = Path(__file__).resolve().parent.parent / "static"


def kb_name(name: str) -> str:
    try:
        return check_kb_name(name)
    except ValueError as exc:
        raise QuestionError(str(exc)) from None


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=200)
    date: str | None = Field(None, max_length=10)
    source: str | None = Field(None, max_length=200)
    doc_type: str | None = Field(None, max_length=50)

    @field_validator("date")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value:
            date.fromisoformat(value)  # ValueError → 422 with pydantic's message
        return value


class ReindexIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kb: str | None = None


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(max_length=2000)
    kb: str | list[str] | None = None
    k: int | None = Field(None, ge=1, le=50, strict=True)


def _accepted(jobs: list) -> JSONResponse:
    return JSONResponse({"jobs": [j.to_json() for j in jobs]}, status_code=202)


# Bytes a stored file name may take: file systems allow 255, and ".part" is added while
# it is written. An official document's title as its name runs past that in 85 characters.
MAX_NAME_BYTES = 200


def fit_name(name: str) -> str:
    """`name`, its stem cut (at a character) so that it fits in MAX_NAME_BYTES with its
    suffix; the document keeps the whole name as its id."""
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    path = Path(name)
    room = MAX_NAME_BYTES - len(path.suffix.encode())
    stem = path.stem.encode()[:room].decode("utf-8", "ignore")
    return stem + path.suffix


def busy(reason: str) -> HTTPException:
    """The queue is full: come back later."""
    return HTTPException(503, reason, headers={"Retry-After": "30"})


def name_problem(filename: str) -> str:
    """Why a file name cannot be taken ("" if it can): a control character (NUL, a newline)
    would end up in a document id, a path and a log line."""
    bad = next((c for c in filename if ord(c) < 32 or 0x7F <= ord(c) <= 0x9F), None)
    return f"contains the control character {bad!r}" if bad is not None else ""


def _safe_name(filename: str) -> str:
    """The file's own name: browsers may send a path, Windows ones with backslashes."""
    return re.split(r"[/\\]", filename or "")[-1].strip()


def documents_router(
    jobs: JobQueue, assistant: Assistant, data_dir: Path, caller: Callable[[Request], Principal]
) -> APIRouter:
    """The routes; `caller(request)` is who asks. Readers see the documents of the
    knowledge bases granted them, editors manage those, and a document outside the grant
    is a 404 like one that does not exist (its id reveals nothing)."""
    index = assistant.retriever.index
    router = APIRouter()
    originals = data_dir / "originals"

    def entry_or_404(doc_id: str, request: Request, edit: bool = False):
        principal = caller(request)
        entry = index.manifest.get(doc_id)
        if entry is None or not principal.may_read(entry.kb):
            raise HTTPException(404, f"no document {doc_id!r}")
        request.state.log["kb"] = entry.kb
        if edit:
            principal.check_edit(entry.kb)
        return entry

    def job_or_404(job_id: str, request: Request):
        job = jobs.get(job_id)
        if job is None or not caller(request).may_edit(job.kb):
            raise HTTPException(404, f"no job {job_id!r}")
        return job

    def editor(request: Request) -> Principal:
        """The caller, if they may manage the documents of some knowledge base."""
        principal = caller(request)
        if principal.editable() == frozenset():
            raise Forbidden(f"{principal.name} may not manage documents")
        return principal

    def queue(kind: Kind, **kw):
        return queue_many([dict(kind=kind, **kw)])[0]

    def queue_many(specs: list[dict]) -> list:
        try:
            return jobs.submit_many(specs)
        except QueueFull as exc:
            raise busy(str(exc)) from None

    # -- uploads --------------------------------------------------------------------------

    def keep(kb: str, relpath: str, data: bytes) -> str:
        """Store an uploaded original under the data dir; returns its path there. Each
        content gets its own folder (named by its hash), so an upload that fails never
        replaces the original of the version being served; the job that replaces or
        removes a document deletes the original it no longer needs."""
        digest = hashlib.blake2b(data, digest_size=8).hexdigest()
        parts = [fit_name(p) for p in Path(relpath).parts]
        target = (originals / kb / Path(*parts[:-1]) / digest / parts[-1]).resolve()
        if not target.is_relative_to(originals.resolve()):
            raise JobError(f"{relpath}: not a plain file name")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)
        return target.relative_to(data_dir.resolve()).as_posix()

    def refusal(relpath: str, data: bytes) -> str:
        """Why a file is refused at the door ("" if it is not)."""
        if not supported(Path(relpath)):
            return f"unsupported format '{Path(relpath).suffix or relpath}'"
        if not data.strip():
            return "empty file"
        if len(data) > MAX_FILE_BYTES:
            return f"larger than {MAX_FILE_BYTES // 2**20} MiB"
        return ""

    @router.post("/api/documents", status_code=202)
    async def upload(request: Request) -> JSONResponse:
        """Multipart `files` (one or more; a .zip of folders is unpacked) and an optional
        `kb` → a job per file. Refused files become failed jobs beside the others; a
        request in which no file is accepted is a 4xx."""
        principal = editor(request)
        form = await request.form(max_files=1000)
        kb = kb_name(str(form.get("kb") or DEFAULT_KB))
        request.state.log["kb"] = kb
        principal.check_edit(kb)
        uploads = [f for f in form.getlist("files") if hasattr(f, "read")]
        if not uploads:
            raise QuestionError("no files: send them as multipart form field 'files'")
        accepted, refused, too_big = [], [], False
        for upload in uploads:
            if problem := name_problem(upload.filename or ""):
                raise QuestionError(f"file name {upload.filename!r}: {problem}")
            name = _safe_name(upload.filename or "")
            data = await upload.read(MAX_FILE_BYTES + 1)
            await upload.close()
            if not name or name.startswith("."):
                refused.append((name or "(no name)", "no file name"))
                continue
            if len(data) > MAX_FILE_BYTES:  # read no further than the limit, zips included
                too_big = True
                refused.append((name, f"larger than {MAX_FILE_BYTES // 2**20} MiB"))
                continue
            members = (
                await run_in_threadpool(lambda d=data: list(unpack_zip(d)))
                if name.lower().endswith(".zip")
                else [(name, data)]
            )
            for member in members:
                if isinstance(member, LoadFailure):
                    refused.append((f"{name}/{member.path}".rstrip("/"), member.reason))
                    continue
                relpath, content = member
                if problem := name_problem(relpath):
                    refused.append((ascii(relpath), problem))
                elif reason := refusal(relpath, content):
                    too_big |= reason.startswith("larger")
                    refused.append((relpath, reason))
                else:
                    accepted.append((relpath, content))
        if not accepted:
            raise HTTPException(
                413 if too_big else 400,
                "; ".join(f"{name}: {reason}" for name, reason in refused),
            )
        if not jobs.has_room(len(accepted)):  # before anything is written
            raise busy(f"{len(accepted)} files do not fit in the queue now; try again later")
        kept = [
            (relpath, await run_in_threadpool(keep, kb, relpath, content))
            for relpath, content in accepted
        ]
        specs = [
            dict(kind=Kind.UPLOAD, filename=rel, kb=kb, doc_id=f"{kb}/{rel}", original=original)
            for rel, original in kept
        ]
        specs += [
            dict(kind=Kind.UPLOAD, filename=name, kb=kb, status=Status.FAILED, error=reason)
            for name, reason in refused
        ]
        try:
            created = jobs.submit_many(specs)
        except QueueFull as exc:  # it filled up meanwhile: leave nothing behind
            for _, original in kept:
                jobs.discard_original(original)
            raise busy(str(exc)) from None
        request.state.audit_target = ", ".join(f"{kb}/{relpath}" for relpath, _ in kept)
        return _accepted(created)

    # -- jobs -----------------------------------------------------------------------------

    @router.get("/api/jobs")
    def list_jobs(request: Request, active: bool = False) -> list[dict]:
        principal = editor(request)
        return [j.to_json() for j in jobs.list(active=active) if principal.may_edit(j.kb)]

    @router.get("/api/jobs/{job_id}")
    def get_job(job_id: str, request: Request) -> dict:
        return job_or_404(job_id, request).to_json()

    @router.post("/api/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, request: Request) -> dict:
        job_or_404(job_id, request)
        try:
            return jobs.cancel(job_id).to_json()
        except KeyError:
            raise HTTPException(404, f"no job {job_id!r}") from None
        except JobError as exc:
            raise HTTPException(409, str(exc)) from None

    @router.post("/api/jobs/{job_id}/retry", status_code=202)
    def retry_job(job_id: str, request: Request) -> JSONResponse:
        job_or_404(job_id, request)
        try:
            return _accepted([jobs.retry(job_id)])
        except KeyError:
            raise HTTPException(404, f"no job {job_id!r}") from None
        except JobError as exc:
            raise HTTPException(409, str(exc)) from None
        except QueueFull as exc:
            raise busy(str(exc)) from None

    # -- documents ------------------------------------------------------------------------

    @router.get("/api/kbs")
    def list_kbs(request: Request) -> list[dict]:
        principal = caller(request)
        return [
            {
                "name": name,
                "documents": docs,
                "chunks": chunks,
                "editable": principal.may_edit(name),
            }
            for name, docs, chunks in index.manifest.kbs()
            if principal.may_read(name)
        ]

    @router.get("/api/documents")
    def list_documents(
        request: Request, kb: Annotated[str | None, Query(max_length=50)] = None
    ) -> list[dict]:
        principal = caller(request)
        if kb is not None:
            principal.check_read(frozenset([kb]))
        pending = jobs.pending_for()
        return [
            {
                "doc_id": e.doc_id,
                "title": e.title,
                "kb": e.kb,
                "chunks": e.chunks,
                "status": pending.get(e.doc_id, "indexed"),
                "updated": e.updated,
                "date": e.date,
                "source": e.source,
                "doc_type": e.doc_type,
                "has_original": bool(e.original),
            }
            for e in index.manifest.docs(kb).values()
            if principal.may_read(e.kb)
        ]

    @router.get("/api/documents/{doc_id:path}/chunks")
    def document_chunks(doc_id: str, request: Request) -> list[dict]:
        entry = entry_or_404(doc_id, request)
        rows = index.snapshot().document_rows(entry.doc_id)
        return [{"chunk_id": r.chunk_id, "n": n, "text": r.text} for n, r in enumerate(rows)]

    @router.get("/api/documents/{doc_id:path}/original")
    def document_original(doc_id: str, request: Request) -> Response:
        entry = entry_or_404(doc_id, request)
        path = data_dir / entry.original if entry.original else None
        if path is None or not path.is_file():
            raise HTTPException(404, f"the original of {doc_id!r} is not kept")
        name = Path(entry.doc_id).name  # the name it was uploaded with (kept shortened)
        if name.lower().endswith(".pdf"):  # shown by the browser's viewer, at #page=N
            return FileResponse(
                path, media_type="application/pdf", filename=name, content_disposition_type="inline"
            )
        # Anything else a download: an HTML original shown inline would run in this origin.
        return FileResponse(path, media_type="application/octet-stream", filename=name)

    @router.post("/api/documents/{doc_id:path}/reindex", status_code=202)
    def reindex_document(doc_id: str, request: Request) -> JSONResponse:
        entry = entry_or_404(doc_id, request, edit=True)
        if not entry.original:
            raise HTTPException(409, f"{doc_id!r} has no original file to read again")
        return _accepted([queue(Kind.REINDEX, **_reindex_args(entry))])

    @router.post("/api/reindex", status_code=202)
    def reindex_all(body: ReindexIn, request: Request) -> JSONResponse:
        principal = editor(request)
        if body.kb is not None:
            principal.check_edit(body.kb)
            if body.kb not in {name for name, *_ in index.manifest.kbs()}:
                raise QuestionError(f"no knowledge base {body.kb!r}")
        entries = [
            e
            for e in index.manifest.docs(body.kb).values()
            if e.original and principal.may_edit(e.kb)
        ]
        if not entries:
            raise HTTPException(409, "no document with an original file to read again")
        return _accepted(queue_many([dict(kind=Kind.REINDEX, **_reindex_args(e)) for e in entries]))

    @router.patch("/api/documents/{doc_id:path}", status_code=202)
    def edit_document(doc_id: str, body: EditIn, request: Request) -> JSONResponse:
        entry = entry_or_404(doc_id, request, edit=True)
        changes = {k: " ".join(v.split()) for k, v in body.model_dump().items() if v is not None}
        if not changes:
            raise QuestionError("nothing to change: give title, date, source or doc_type")
        return _accepted(
            [
                queue(
                    Kind.EDIT,
                    filename=Path(doc_id).name,
                    kb=entry.kb,
                    doc_id=doc_id,
                    changes=changes,
                )
            ]
        )

    @router.delete("/api/documents/{doc_id:path}", status_code=202)
    def delete_document(doc_id: str, request: Request) -> JSONResponse:
        entry = entry_or_404(doc_id, request, edit=True)
        return _accepted(
            [queue(Kind.DELETE, filename=Path(doc_id).name, kb=entry.kb, doc_id=doc_id)]
        )

    # -- retrieval test (命中测试) -----------------------------------------------------------

    @router.post("/api/search")
    def search(body: SearchIn, request: Request) -> dict:
        principal = caller(request)
        question = check_question(body.question, assistant.max_question_chars)  # as /api/ask
        k = check_k(body.k or 10)
        filters = granted_filters(index, principal, body.kb)
        # BM25's term statistics are the whole index's: a caller who may not read every
        # knowledge base could read off them how often a word occurs in the others.
        scored = principal.readable() is None
        with index.reading() as snapshot:
            hits = assistant.retriever.search(question, k, filters, snapshot=snapshot)
        return {
            "question": question,
            "generation": snapshot.generation,
            "hits": [
                {
                    "rank": rank,
                    "chunk_id": h.chunk.chunk_id,
                    "doc_id": h.chunk.doc_id,
                    "title": h.chunk.meta.get("title", ""),
                    "kb": h.chunk.meta.get("kb", ""),
                    "text": h.chunk.text,
                    "dense": round(h.dense_score, 4) if scored else None,
                    "lexical": round(h.lexical_score, 4) if scored else None,
                    "fused": round(h.score, 4) if scored else None,
                }
                for rank, h in enumerate(hits, 1)
            ],
        }

    # -- the page -------------------------------------------------------------------------

    @router.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request) -> HTMLResponse:
        editor(request)
        return HTMLResponse((STATIC / "admin.html").read_text("utf-8"))

    @router.get("/admin/{name}")
    def admin_asset(name: str) -> Response:
        types = {"admin.js": "text/javascript", "admin.css": "text/css"}
        if name not in types:
            raise HTTPException(404, "not found")
        return Response(
            (STATIC / name).read_text("utf-8"), media_type=types[name] + "; charset=utf-8"
        )

    return router


def _reindex_args(entry) -> dict:
    return {
        "filename": Path(entry.doc_id).name,
        "kb": entry.kb,
        "doc_id": entry.doc_id,
        "original": entry.original,
        "origin": entry.origin,
    }
