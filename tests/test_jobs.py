"""The server as an office runs it: documents uploaded, edited and deleted through the
HTTP API while people keep asking — over real HTTP (uvicorn on a free port, httpx), with
the real model, a real embedded Chroma and the real job worker."""

from __future__ import annotations

import io
import json
import logging
import shutil
import threading
import time
import zipfile

import httpx
import pytest

from rag.chain import open_index
from rag.config import Settings
from rag.ingest import ingest
from rag.jobs import JobQueue, Kind, QueueFull
from tests.conftest import CORPUS, serving
from ui import create_server_app

FINISHED = ("indexed", "failed", "no_text", "cancelled")
CLOUD_V1 = """---
title: 明川区云计算产业扶持办法（示例）
source: 青禾市明川区人民政府（虚构）
---
本文件为本项目编写的示例政策，所述地区为虚构。
第一条 甲版条款：新落户的云计算企业，给予一次性落户奖励二百六十万元。
第二条 甲版条款：云计算企业租用数据中心机柜的，按实际费用的30%给予补贴。
"""
CLOUD_V2 = CLOUD_V1.replace("甲版", "乙版").replace("二百六十万元", "四百一十万元")
CLOUD_QUESTION = "新落户的云计算企业一次性落户奖励多少？"


@pytest.fixture(scope="module")
def live(tmp_path_factory, e5_dir):
    """`rag serve`'s app over the shipped corpus (knowledge base "default")."""
    root = tmp_path_factory.mktemp("live")
    corpus = root / "corpus"
    shutil.copytree(CORPUS, corpus)
    settings = Settings(data_dir=root / "data", embedding_model=str(e5_dir))
    ingest([corpus], open_index(settings), settings.chunk_size, settings.chunk_overlap)
    with serving(create_server_app(settings)) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.2)
        client.data_dir = root / "data"  # for the tests that look at the kept originals
        yield client


def upload(client, files: dict[str, bytes], kb: str = "default", status: int = 202) -> list[dict]:
    r = client.post(
        "/api/documents", files=[("files", (n, d)) for n, d in files.items()], data={"kb": kb}
    )
    assert r.status_code == status, r.text
    return r.json()["jobs"] if status == 202 else r.json()


def wait(client, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in FINISHED:
            return job
        assert time.monotonic() < deadline, f"job stuck: {job}"
        time.sleep(0.1)


def finished(client, jobs: list[dict]) -> dict[str, dict]:
    return {j["filename"]: wait(client, j["id"]) for j in jobs}


def ask(client, question: str, **body) -> dict:
    r = client.post("/api/ask", json={"question": question, **body})
    assert r.status_code == 200, r.text
    return r.json()


def test_answers_while_jobs_add_edit_replace_and_delete_each_come_from_one_generation(live):
    """A reader loop asks while jobs change a document four times: every citation of it
    is the version published in the answer's generation, never a mix or a dangling one."""
    base = live.get("/healthz").json()["generation"]
    answers: list[dict] = []
    stop = threading.Event()

    def reader() -> None:
        with httpx.Client(base_url=live.base_url, timeout=60) as own:
            for n in range(2000):  # bounded; stops when the jobs are done
                if stop.is_set():
                    return
                question = CLOUD_QUESTION if n % 2 else "莱芜区上半年实际使用外资多少？"
                answers.append(ask(own, question))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        published = [base]
        steps = [
            lambda: upload(live, {"cloud.md": CLOUD_V1.encode()}, kb="云计算"),
            lambda: live.patch(
                "/api/documents/云计算/cloud.md", json={"title": "云计算办法（改）"}
            ).json()["jobs"],
            lambda: upload(live, {"cloud.md": CLOUD_V2.encode()}, kb="云计算"),
            lambda: live.delete("/api/documents/云计算/cloud.md").json()["jobs"],
        ]
        for step in steps:
            time.sleep(0.5)  # let the reader ask at the generation before
            (job,) = step()
            assert wait(live, job["id"])["status"] == "indexed"
            published.append(live.get("/healthz").json()["generation"])
            if len(published) == 4:  # the second version is answered once published
                assert "四百一十万元" in ask(live, CLOUD_QUESTION)["answer"]
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(60)

    assert published == list(range(base, base + 5))  # one generation per job
    expected = {  # generation → (marker in every cited passage, title) of cloud.md
        base + 1: ("甲版", "明川区云计算产业扶持办法（示例）"),
        base + 2: ("甲版", "云计算办法（改）"),
        base + 3: ("乙版", "明川区云计算产业扶持办法（示例）"),
    }
    seen = set()
    for answer in answers:
        gen = answer["generation"]
        seen.add(gen)
        for c in answer["citations"]:
            if c["doc_id"] != "云计算/cloud.md":
                continue
            assert gen in expected, f"generation {gen} cites a document it does not hold"
            marker, title = expected[gen]
            assert marker in c["text"] and c["title"] == title, (gen, c)
            assert {"甲版", "乙版"} - {marker} & set(answer["answer"]) == set()
    assert len(seen) >= 4, f"the reader saw only generations {sorted(seen)}"
    cited_at = {a["generation"] for a in answers for c in a["citations"] if "cloud" in c["doc_id"]}
    assert len(cited_at) >= 2, "the reader never saw the document change"
    after = ask(live, CLOUD_QUESTION)
    assert after["generation"] == base + 4
    assert all(c["doc_id"] != "云计算/cloud.md" for c in after["citations"])


def test_a_knowledge_base_scopes_the_search_inside_the_index(live):
    (job,) = upload(live, {"scope.md": CLOUD_V1.replace("云计算", "区块链").encode()}, kb="区块链")
    assert wait(live, job["id"])["status"] == "indexed"
    scoped = ask(live, "区块链企业一次性落户奖励多少？", kb="default")
    assert scoped["citations"] and all(
        not c["doc_id"].startswith("区块链/") for c in scoped["citations"]
    )
    inside = ask(live, "区块链企业一次性落户奖励多少？", kb=["区块链"])
    assert {c["doc_id"] for c in inside["citations"]} == {"区块链/scope.md"}
    r = live.post("/api/ask", json={"question": "外资", "kb": "没有这个库"})
    assert r.status_code == 400 and "unknown knowledge base" in r.json()["error"]["message"]
    chat = live.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "区块链企业落户奖励多少？"}],
            "kb": "区块链",
        },
    ).json()
    assert {c["doc_id"] for c in chat["citations"]} == {"区块链/scope.md"}
    kbs = {k["name"]: k for k in live.get("/api/kbs").json()}
    assert kbs["区块链"]["documents"] == 1 and kbs["default"]["documents"] == 7


def test_bad_uploads_are_refused_with_a_reason_never_a_500(live):
    # Nothing acceptable in the request: a 4xx naming each file and why.
    r = live.post("/api/documents", files=[("files", ("notes.xyz", b"?"))])
    assert r.status_code == 400 and "unsupported format" in r.json()["error"]["message"]
    r = live.post("/api/documents", files=[("files", ("empty.txt", b""))])
    assert r.status_code == 400 and "empty file" in r.json()["error"]["message"]
    r = live.post("/api/documents", files=[("files", ("big.txt", b"a" * (50 * 2**20 + 1)))])
    assert r.status_code == 413 and "larger than" in r.json()["error"]["message"]
    r = live.post("/api/documents", data={"kb": "x"})
    assert r.status_code == 400 and "files" in r.json()["error"]["message"]
    r = live.post("/api/documents", files=[("files", ("a.txt", b"x"))], data={"kb": "../etc"})
    assert r.status_code == 400 and "knowledge base name" in r.json()["error"]["message"]

    # Beside good files, a refused one is a failed job the page shows; a broken file
    # fails when read; a PDF without a text layer is "no text", not indexed.
    jobs = upload(
        live,
        {
            "fine.txt": "示例文件\n第一条 好文件的条款内容。".encode("gbk"),
            "fake.pdf": b"this is not a pdf",
            "table.xls": b"\xd0\xcf\x11\xe0",
            "scan.pdf": scanned_pdf(),
        },
        kb="上传测试",
    )
    outcome = finished(live, jobs)
    assert outcome["fine.txt"]["status"] == "indexed"
    assert outcome["fake.pdf"]["status"] == "failed"
    assert "not a readable PDF" in outcome["fake.pdf"]["error"]
    assert outcome["table.xls"]["status"] == "failed"
    assert "unsupported format" in outcome["table.xls"]["error"]
    assert outcome["scan.pdf"]["status"] == "no_text" and "OCR" in outcome["scan.pdf"]["error"]
    docs = {d["doc_id"] for d in live.get("/api/documents", params={"kb": "上传测试"}).json()}
    assert docs == {"上传测试/fine.txt"}  # GBK read, and nothing half-indexed


def test_a_zip_of_folders_becomes_one_job_per_file(live):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("政策/楼宇.md", "楼宇示例\n第一条 压缩包里的楼宇条款，补贴七十七万元。")
        z.writestr("政策/附件/说明.txt", "说明示例\n第一条 压缩包里的说明条款。")
        z.writestr("../evil.txt", "zip slip")
    jobs = upload(live, {"bundle.zip": buffer.getvalue()}, kb="压缩包")
    outcome = finished(live, jobs)
    assert outcome["政策/楼宇.md"]["status"] == outcome["政策/附件/说明.txt"]["status"] == "indexed"
    assert [j["status"] for name, j in outcome.items() if "evil" in name] == ["failed"]
    answer = ask(live, "压缩包里的楼宇条款补贴多少？", kb="压缩包")
    assert "七十七万元" in answer["answer"]
    assert answer["citations"][0]["doc_id"] == "压缩包/政策/楼宇.md"


def test_cancel_stops_a_running_and_a_queued_job_and_retry_runs_it_again(live):
    long_text = "长文件示例\n" + "".join(
        f"第{n}条 长文件第{n}项条款规定，企业引进第{n}类人才给予{n}万元奖励。\n"
        for n in range(1, 400)
    )
    jobs = upload(
        live,
        {"long.txt": long_text.encode(), "next.txt": "下一个\n第一条 排队文件。".encode()},
        kb="取消测试",
    )
    running, queued = jobs
    cancelled_queued = live.post(f"/api/jobs/{queued['id']}/cancel").json()
    assert cancelled_queued["status"] in ("cancelled", "queued", "reading", "embedding")
    deadline = time.monotonic() + 60
    while live.get(f"/api/jobs/{running['id']}").json()["status"] != "embedding":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    live.post(f"/api/jobs/{running['id']}/cancel")
    assert wait(live, running["id"])["status"] == "cancelled"
    assert wait(live, queued["id"])["status"] == "cancelled"
    assert live.get("/api/documents", params={"kb": "取消测试"}).json() == []
    assert live.post(f"/api/jobs/{running['id']}/cancel").status_code == 409

    (again,) = live.post(f"/api/jobs/{queued['id']}/retry").json()["jobs"]
    assert wait(live, again["id"])["status"] == "indexed"
    assert [d["doc_id"] for d in live.get("/api/documents", params={"kb": "取消测试"}).json()] == [
        "取消测试/next.txt"
    ]


def test_edit_preview_and_original_of_a_document(live):
    (job,) = upload(live, {"edit.md": CLOUD_V1.replace("云计算", "人工智能").encode()}, kb="编辑")
    wait(live, job["id"])
    doc = "/api/documents/编辑/edit.md"
    r = live.patch(doc, json={"date": "2024-13-01"})
    assert r.status_code == 422 and "error" in r.json()
    (edit,) = live.patch(doc, json={"title": "人工智能办法", "date": "2024-06-01"}).json()["jobs"]
    assert wait(live, edit["id"])["status"] == "indexed"
    (listed,) = live.get("/api/documents", params={"kb": "编辑"}).json()
    assert (listed["title"], listed["has_original"]) == ("人工智能办法", True)
    answer = ask(live, "人工智能企业一次性落户奖励多少？", kb="编辑")
    assert answer["citations"][0]["title"] == "人工智能办法"
    assert answer["citations"][0]["date"] == "2024-06-01"
    assert ask(live, "人工智能企业落户奖励", kb="编辑", filters={"since": "2024-05-01"})[
        "citations"
    ]
    chunks = live.get(f"{doc}/chunks").json()
    assert chunks and "甲版条款" in "".join(c["text"] for c in chunks)
    original = live.get(f"{doc}/original")
    assert original.content == CLOUD_V1.replace("云计算", "人工智能").encode()
    assert original.headers["content-disposition"].startswith("attachment")
    assert live.get("/api/documents/没有/这个.md/chunks").status_code == 404
    assert live.delete("/api/documents/没有/这个.md").json()["error"]["message"]

    hits = live.post("/api/search", json={"question": "人工智能企业落户奖励", "kb": "编辑"}).json()
    top = hits["hits"][0]
    assert top["doc_id"] == "编辑/edit.md" and top["lexical"] > 0 and top["dense"] > 0
    assert top["fused"] >= hits["hits"][-1]["fused"]


def test_requests_with_wrong_types_or_broken_json_get_an_error_object(live):
    for body in ({"question": "外资", "k": "5"}, {"question": "外资", "k": True}):
        r = live.post("/api/ask", json=body)
        assert r.status_code == 422 and r.json()["error"]["message"].startswith("k:")
    chat = {"messages": [{"role": "user", "content": "外资"}], "stream": "yes"}
    assert live.post("/v1/chat/completions", json=chat).status_code == 400  # as OpenAI
    for raw in (b"\xff\xfe{", b"[" * 100_000, b'{"question": '):
        r = live.post("/api/ask", content=raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500 and "message" in r.json()["error"], (raw[:10], r.text)
    assert live.get("/api/jobs/nope").json()["error"]["message"] == "no job 'nope'"


def test_metrics_and_one_log_line_per_request(live, caplog):
    caplog.set_level(logging.INFO, logger="rag.request")
    ask(live, "莱芜区上半年实际使用外资多少？", kb="default")
    lines = [r.getMessage() for r in caplog.records if r.name == "rag.request"]
    assert len([line for line in lines if "route=/api/ask" in line]) == 1
    (line,) = [line for line in lines if "route=/api/ask" in line]
    assert "status=200" in line and "kb=default" in line and "refused=False" in line
    assert "外资" not in line  # questions are not logged
    metrics = live.get("/metrics").text
    assert 'rag_requests_total{route="/api/ask",status="200"}' in metrics
    assert 'rag_request_duration_seconds_bucket{le="0.5",route="/api/ask"}' in metrics
    assert 'rag_documents{kb="default"} 7.0' in metrics
    assert 'rag_ingest_jobs{state="queued"}' in metrics
    health = live.get("/healthz").json()
    assert health["ready"] is True and health["documents"] >= 7


def scanned_pdf() -> bytes:
    """A PDF page with a drawing and no text layer, as a scan has."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    page = canvas.Canvas(buffer)
    page.rect(100, 100, 300, 400, fill=1)
    page.showPage()
    page.save()
    return buffer.getvalue()


def test_json_of_jobs_is_what_the_readme_says(live):
    (job,) = upload(live, {"shape.txt": "形状示例\n第一条 条款。".encode()}, kb="形状")
    assert set(job) >= {"id", "filename", "status"}
    done = wait(live, job["id"])
    assert set(done) >= {"id", "status", "progress", "error"} and done["progress"] == 1.0
    (listed,) = live.get("/api/documents", params={"kb": "形状"}).json()
    assert set(listed) >= {"doc_id", "title", "kb", "chunks", "status", "updated"}
    json.dumps(live.get("/api/jobs").json())


def test_an_upload_never_replaces_or_names_a_document_of_another_knowledge_base(live):
    """An uploaded file's id, or a JSONL record's own "id", may collide with a document
    of another knowledge base (one indexed from the command line, say): the upload is
    refused, the document stays. A text equal to one in another knowledge base is no
    twin: the editor is not told what a knowledge base they may not read holds."""
    laiwu = "news/2022-08-04-laiwu-signing.txt"  # in knowledge base "default"
    before = live.get(f"/api/documents/{laiwu}/chunks").json()
    record = json.dumps({"id": "2022-08-04-laiwu-signing.txt", "text": "第一条 改写。"})
    for name, data in [
        ("records.jsonl", record.encode()),
        ("2022-08-04-laiwu-signing.txt", "第一条 改写。".encode()),
    ]:
        (job,) = upload(live, {name: data}, kb="news")
        done = wait(live, job["id"])
        assert done["status"] == "failed" and "another knowledge base" in done["error"]
    assert live.get(f"/api/documents/{laiwu}/chunks").json() == before
    text = (CORPUS / laiwu).read_bytes()
    (job,) = upload(live, {"copy.txt": text}, kb="其他")
    copied = wait(live, job["id"])
    assert copied["status"] == "indexed" and laiwu not in (copied["error"] or "")
    r = live.delete("/api/documents/其他/copy.txt")
    wait(live, r.json()["jobs"][0]["id"])


def test_a_jsonl_upload_that_repeats_an_id_keeps_the_first_record_and_says_so(live):
    """Two records with one "id" are one document twice: the first is indexed, the second
    is skipped and named in the job (as `rag ingest` reports it), never a failed job."""
    records = [
        {"id": "twice.txt", "text": "第一条 重复编号测试：首个记录的补贴为七十七万元。"},
        {"id": "twice.txt", "text": "第一条 重复编号测试：第二个记录的补贴为八十八万元。"},
    ]
    data = "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()
    (job,) = upload(live, {"twice.jsonl": data}, kb="dup")
    done = wait(live, job["id"])
    assert done["status"] == "indexed", done
    assert "twice.txt" in done["error"] and "duplicate id" in done["error"]
    chunks = live.get("/api/documents/dup/twice.txt/chunks").json()
    texts = " ".join(c["text"] for c in chunks)
    assert "七十七万元" in texts and "八十八万元" not in texts
    r = live.delete("/api/documents/dup/twice.txt")
    wait(live, r.json()["jobs"][0]["id"])


def kept_files(live, kb: str) -> list[str]:
    folder = live.data_dir / "originals" / kb
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_a_failed_re_upload_leaves_the_served_original_and_replaced_ones_are_removed(live):
    """Each upload is kept under its own path: an upload that fails never touches the
    original of the version being served, and the job that replaces or deletes a
    document removes the original it no longer needs (nothing piles up on disk)."""
    v1, v2 = CLOUD_V1.encode(), CLOUD_V2.encode()
    (job,) = upload(live, {"policy.md": v1}, kb="originals")
    assert wait(live, job["id"])["status"] == "indexed"
    (job,) = upload(live, {"policy.md": bytes(range(256)) * 8}, kb="originals")
    assert wait(live, job["id"])["status"] == "failed"
    retried = live.post(f"/api/jobs/{job['id']}/retry")  # its file is gone with it
    assert retried.status_code == 409 and "upload it again" in retried.text
    doc = "/api/documents/originals/policy.md"
    assert live.get(f"{doc}/original").content == v1
    assert kept_files(live, "originals") == ["policy.md"]  # the failed one's file went too
    (job,) = upload(live, {"policy.md": v2}, kb="originals")
    assert wait(live, job["id"])["status"] == "indexed"
    assert live.get(f"{doc}/original").content == v2
    assert kept_files(live, "originals") == ["policy.md"]
    (job,) = live.post(f"{doc}/reindex").json()["jobs"]
    assert wait(live, job["id"])["status"] == "indexed"
    assert live.get(f"{doc}/original").content == v2
    (job,) = live.delete(doc).json()["jobs"]
    assert wait(live, job["id"])["status"] == "indexed"
    assert kept_files(live, "originals") == []


def test_a_file_named_by_a_long_official_title_is_indexed_under_its_whole_name(live):
    """File systems allow 255 bytes a name: 85 Chinese characters. The stored copy's name
    is shortened; the document keeps the whole name."""
    name = "青禾市明川区人民政府办公室关于印发" + "促进楼宇经济高质量发展" * 8 + "的通知.txt"
    assert len(name.encode()) > 255
    (job,) = upload(live, {name: "第一条 长标题测试：入驻奖励六十六万元。".encode()}, kb="long")
    done = wait(live, job["id"])
    assert done["status"] == "indexed", done
    original = live.get(f"/api/documents/long/{name}/original")
    assert original.status_code == 200 and "六十六万元".encode() in original.content
    (stored,) = kept_files(live, "long")
    assert len(stored.encode()) <= 200
    assert stored.startswith("青禾市明川区人民政府") and stored.endswith(".txt")
    live.delete(f"/api/documents/long/{name}")


def test_a_batch_that_does_not_fit_in_the_queue_is_refused_whole(index, tmp_path):
    """A zip of many files or "re-index all" is queued whole or not at all: a 503 after
    half of it was queued would leave the rest undoable by retrying."""
    queue = JobQueue(index, tmp_path, 300, 60, max_queued=3)  # not started: jobs wait
    queue.submit(Kind.DELETE, filename="a", doc_id="default/a")
    specs = [dict(kind=Kind.DELETE, filename=n, doc_id=f"default/{n}") for n in "bcd"]
    with pytest.raises(QueueFull, match="nothing was queued"):
        queue.submit_many(specs)
    assert [j.filename for j in queue.list()] == ["a"]
    assert not queue.has_room(3) and queue.has_room(2)
    queue.submit_many(specs[:2])
    assert queue.counts()["queued"] == 3


def test_a_job_running_at_two_stops_fails_instead_of_taking_the_server_down_again(index, tmp_path):
    """A file that kills the server (out of memory, say) must not kill it at every start:
    the job runs again after one stop, and fails after the second."""
    queue = JobQueue(index, tmp_path, 300, 60)
    job = queue.submit(Kind.DELETE, filename="a", doc_id="default/a")

    def crash_while_running():
        queue._db.execute("UPDATE jobs SET status = 'embedding' WHERE id = ?", (job.id,))
        return JobQueue(index, tmp_path, 300, 60)  # the next start

    queue = crash_while_running()
    assert queue.get(job.id).status == "queued"
    queue = crash_while_running()
    failed = queue.get(job.id)
    assert failed.status == "failed" and "stopped 2 times" in failed.error
    retried = queue.retry(job.id)
    assert retried.status == "queued" and "interrupted" not in retried.data


def test_a_re_index_keeps_the_metadata_a_person_corrected(live):
    """Re-indexing reads the same original again (a new pipeline, "re-index all"): the
    title and date a clerk corrected stay; what was not corrected is read anew."""
    (job,) = upload(live, {"corrected.md": CLOUD_V1.encode()}, kb="更正")
    wait(live, job["id"])
    doc = "/api/documents/更正/corrected.md"
    (edit,) = live.patch(doc, json={"title": "更正后的标题", "date": "2024-05-06"}).json()["jobs"]
    assert wait(live, edit["id"])["status"] == "indexed"
    (job,) = live.post(doc + "/reindex").json()["jobs"]
    assert wait(live, job["id"])["status"] == "indexed"
    (listed,) = live.get("/api/documents", params={"kb": "更正"}).json()
    assert (listed["title"], listed["date"]) == ("更正后的标题", "2024-05-06")
    assert listed["source"] == "青禾市明川区人民政府（虚构）"  # the file's own, not corrected
    found = ask(live, CLOUD_QUESTION, kb="更正", filters={"since": "2024-05-01"})
    assert found["citations"] and found["citations"][0]["title"] == "更正后的标题"
    live.delete(doc)


def test_the_retrieval_test_takes_the_questions_the_chat_takes(live):
    too_long = live.post("/api/search", json={"question": "外资" * 251})
    assert too_long.status_code == 400 and "limit is 500" in too_long.text
    assert live.post("/api/search", json={"question": "  "}).status_code == 400


def test_a_records_file_is_kept_while_a_record_of_it_is_served(live):
    def records(**texts) -> bytes:
        rows = [{"id": rid, "text": f"第一条 记录文件测试：{text}"} for rid, text in texts.items()]
        return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()

    def put(data: bytes) -> None:
        (job,) = upload(live, {"records.jsonl": data}, kb="records")
        assert wait(live, job["id"])["status"] == "indexed"

    put(records(a="甲一", b="乙一"))
    put(records(a="甲二", b="乙二"))  # replaces both: the first file goes
    assert kept_files(live, "records") == ["records.jsonl"]
    put(records(a="甲三"))  # b is still served from the second file
    assert kept_files(live, "records") == ["records.jsonl", "records.jsonl"]
    for doc in ("records/a", "records/b"):
        wait(live, live.delete(f"/api/documents/{doc}").json()["jobs"][0]["id"])
    assert kept_files(live, "records") == []


def test_the_worker_outlives_a_job_whose_outcome_cannot_be_recorded(index, tmp_path, caplog):
    """Whatever goes wrong after a job ran, the queue keeps its one worker: a job left
    queued behind a dead thread would wait forever."""
    queue = JobQueue(index, tmp_path, 300, 60)
    failing = queue.submit(Kind.DELETE, filename="a", doc_id="default/gone")
    after = queue.submit(Kind.DELETE, filename="b", doc_id="default/also-gone")
    updates = queue._update

    def broken_once(job, **changes):
        if job.id == failing.id:
            queue._update = updates
            raise OSError("disk full")
        updates(job, **changes)

    queue._update = broken_once
    queue.start()
    try:
        deadline = time.monotonic() + 60
        while queue.get(after.id).status not in FINISHED:
            assert time.monotonic() < deadline, "the worker died"
            time.sleep(0.1)
    finally:
        queue.stop()
    assert queue.get(after.id).status == "failed"  # no such document: it ran
    assert "outcome could not be recorded" in caplog.text
    queue.discard_original("originals/x/0123456789abcdef/gone.txt")  # already gone: no error


def raw_upload(client, filename: bytes, content: bytes = "第一条 补贴十万元。".encode()):
    """A multipart upload written by hand: clients escape odd names, an attacker does not."""
    body = (
        b'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="'
        + filename
        + b'"\r\nContent-Type: text/plain\r\n\r\n'
        + content
        + b"\r\n--b0undary--\r\n"
    )
    return client.post(
        "/api/documents",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
    )


@pytest.mark.parametrize("name", [b"nul\x00name.txt", b"two\nlines.txt"])
def test_a_file_name_with_a_control_character_is_a_400_naming_it(live, name):
    refused = raw_upload(live, name)
    assert refused.status_code == 400, refused.text
    assert "control character" in refused.json()["error"]["message"]
    assert live.get("/healthz").status_code == 200  # the connection goes on
    assert not [d for d in live.get("/api/documents").json() if "name" in d["doc_id"]]


def test_re_indexing_a_knowledge_base_that_does_not_exist_is_a_400(live):
    r = live.post("/api/reindex", json={"kb": "不存在"})
    assert r.status_code == 400 and "不存在" in r.json()["error"]["message"]


def test_kept_uploads_that_no_job_or_document_names_are_swept_once_old(index, tmp_path):
    """The files of an upload killed before its jobs were recorded; a fresh one may be a
    replica's upload in progress, so only old ones go."""
    orphan = tmp_path / "originals" / "kb" / "0123456789abcdef" / "lost.txt"
    named = tmp_path / "originals" / "kb" / "fedcba9876543210" / "queued.txt"
    for path in (orphan, named):
        path.parent.mkdir(parents=True)
        path.write_text("第一条 补贴。", "utf-8")
    queue = JobQueue(index, tmp_path, 300, 60)  # not started: its job waits
    queue.submit(
        Kind.UPLOAD, filename="queued.txt", original=named.relative_to(tmp_path).as_posix()
    )
    assert queue.sweep_originals() == 0 and orphan.exists()  # too fresh to tell
    assert queue.sweep_originals(older_than=0) == 1
    assert not orphan.parent.exists() and named.exists()
