"""The management page (/admin) driven by Debian chromium, as the person who keeps the
corpus uses it: upload a .docx, a text PDF and a broken PDF into a new knowledge base,
follow their jobs, find the documents listed, ask the chat about the new file without a
restart, delete it, and see the chat stop citing it.

One `rag serve` subprocess on a freshly ingested data dir is shared by the module; the
tests run in order, each step building on the one before. Waits are on selectors and
conditions, never on network idle (Gradio keeps a connection open).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from tests.conftest import CORPUS, RAG, free_port, start_server, wait_healthy

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("RAG_SCREENSHOTS", "/tmp"))
KB = "数字经济"
TERMINAL = ("indexed", "failed", "no_text", "cancelled")

# Illustrative samples about the fictional 明川区; their facts exist nowhere in the corpus.
DOCX_NAME = "明川区数字经济扶持办法.docx"
DOCX_TITLE = "青禾市明川区数字经济扶持办法（示例）"
DOCX_FACT = (
    "第五条 对新落户明川区的数据标注企业，按其首年研发投入的17%给予补助，"
    "单家企业最高不超过三百六十五万元。"
)
DOCX_QUESTION = "数据标注企业首年研发投入补助比例是多少？"
DOCX_FIGURE = "17%"
DOCX_CAP = "三百六十五万元"

PDF_NAME = "mingchuan-low-altitude.pdf"
PDF_TITLE = "明川区低空经济试点扶持细则（示例）"
PDF_FACT = "第三条 对在明川区开通无人机物流航线的企业，每条航线一次性奖励七十二万元。"
PDF_QUESTION = "开通无人机物流航线每条奖励多少？"
PDF_FIGURE = "七十二万元"

FAKE_NAME = "fake.pdf"
NOTICE = "【示例文本】本文件为测试编写的示例，所述青禾市明川区及其机构均为虚构，不是真实政策。"


def make_docx(path: Path) -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = DOCX_TITLE
    document.add_heading(DOCX_TITLE, level=1)
    document.add_paragraph(NOTICE)
    document.add_paragraph(
        "第一条 为培育数字经济新业态，吸引数据要素企业集聚，结合明川区实际，制定本办法。"
    )
    document.add_paragraph("第二条 本办法适用于在明川区办理登记注册的数字经济企业。")
    document.add_paragraph(DOCX_FACT)
    document.add_paragraph("第六条 本办法由明川区数据资源局负责解释，自印发之日起施行。")
    document.save(str(path))


def make_pdf(path: Path) -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    pdf = canvas.Canvas(str(path))
    pdf.setTitle(PDF_TITLE)
    pdf.setFont("STSong-Light", 12)
    lines = [
        PDF_TITLE,
        "【示例文本】所述青禾市明川区及其机构均为虚构，不是真实政策。",
        "第一条 为促进低空经济发展，结合明川区实际，制定本细则。",
        PDF_FACT,
        "第四条 本细则自印发之日起施行。",
    ]
    for n, line in enumerate(lines):
        pdf.drawString(40, 800 - 24 * n, line)
    pdf.save()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from pypdf import PdfReader

    root = tmp_path_factory.mktemp("uploads")
    docx_path, pdf_path, fake = root / DOCX_NAME, root / PDF_NAME, root / FAKE_NAME
    make_docx(docx_path)
    make_pdf(pdf_path)
    fake.write_bytes(b"this is not a pdf")
    # The PDF really has a text layer the server can read.
    assert PDF_FACT in PdfReader(str(pdf_path)).pages[0].extract_text()
    return {"docx": docx_path, "pdf": pdf_path, "fake": fake}


@pytest.fixture(scope="module")
def server(tmp_path_factory, e5_dir):
    """A fresh data dir with the shipped corpus ingested, served by `rag serve`; yields its
    base URL and the file its stdout and stderr go to."""
    root = tmp_path_factory.mktemp("admin")
    corpus = root / "corpus"
    shutil.copytree(CORPUS, corpus)
    env = {**os.environ, "RAG_DATA_DIR": str(root / "data"), "RAG_EMBEDDING_MODEL": str(e5_dir)}
    subprocess.run([RAG, "ingest", str(corpus)], env=env, check=True, capture_output=True)
    port = free_port()
    proc = start_server(root / "data", port, {"RAG_EMBEDDING_MODEL": str(e5_dir)})
    log = proc.log_path
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
        yield {"url": f"http://127.0.0.1:{port}", "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def page(server):
    """One browser tab for the whole story; confirm() dialogs are accepted and recorded."""
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.dialogs = []
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.accept()))
        yield page
        context.close()
        browser.close()


def job_row(page: Page, filename: str, kind: str = "upload"):
    return page.locator(f"#jobs tr[data-job-id][data-kind='{kind}']").filter(
        has=page.locator("td.file", has_text=filename)
    )


def finished_status(page: Page, filename: str, kind: str = "upload", timeout: float = 180_000):
    """The raw status of the file's job once it has finished; its row's text."""
    row = job_row(page, filename, kind)
    done = ",".join(f"td.status[data-status='{s}']" for s in TERMINAL)
    row.locator(done).first.wait_for(timeout=timeout)
    assert row.count() == 1, f"{row.count()} job rows for {filename}"
    return row.locator("td.status").get_attribute("data-status"), row.inner_text()


def doc_row(page: Page, doc_id: str):
    return page.locator(f"#documents tr[data-doc-id='{doc_id}']")


def ask_in_chat(page: Page, server_url: str, question: str):
    """A fresh chat page, the question asked; returns (answer text, sources panel text)
    once the answer is complete (the panel is filled last)."""
    page.goto(server_url + "/")
    page.wait_for_selector("textarea", timeout=60_000)
    page.fill("textarea", question)
    page.keyboard.press("Enter")
    page.locator("#rag-sources .rag-source, #rag-sources .rag-empty").first.wait_for(timeout=60_000)
    bot = page.locator("[data-testid='bot']").last
    return bot.inner_text(), page.locator("#rag-sources").inner_text()


def test_upload_into_a_new_knowledge_base_shows_each_files_job_and_the_documents(
    page, server, files
):
    page.goto(server["url"] + "/admin")
    page.locator("#upload-kb").fill(KB)
    assert f"将新建知识库「{KB}」" in page.locator("#upload-kb-hint").inner_text()
    page.locator("input[type=file]#file-input").set_input_files(
        [str(files["docx"]), str(files["pdf"]), str(files["fake"])]
    )
    # Choosing only lists the files; nothing is sent until the button is clicked.
    assert page.locator("#selected-files li").count() == 3
    assert page.locator("#jobs tr[data-job-id]").count() == 0
    page.locator("#upload-button").click()

    status, text = finished_status(page, DOCX_NAME)
    assert status == "indexed", text
    status, text = finished_status(page, PDF_NAME)
    assert status == "indexed", text
    status, text = finished_status(page, FAKE_NAME)
    assert status == "failed", text
    assert "失败：" in text and "not a readable PDF" in text, text
    for name in (DOCX_NAME, PDF_NAME, FAKE_NAME):
        assert KB in job_row(page, name).locator("td.kb").inner_text()

    # The new knowledge base appears in the filter; it lists the two readable files only.
    page.locator(f"#kb-select option[value='{KB}']").wait_for(state="attached", timeout=30_000)
    page.locator("#kb-select").select_option(KB)
    docx_row, pdf_row = doc_row(page, f"{KB}/{DOCX_NAME}"), doc_row(page, f"{KB}/{PDF_NAME}")
    docx_row.wait_for(timeout=30_000)
    pdf_row.wait_for(timeout=30_000)
    assert docx_row.locator("td.title").inner_text() == DOCX_TITLE
    assert pdf_row.locator("td.title").inner_text() == PDF_TITLE
    for row in (docx_row, pdf_row):
        assert row.locator("td.kb").inner_text() == KB
        assert row.locator("td.status").get_attribute("data-status") == "indexed"
        assert int(row.locator("td.chunks").inner_text()) >= 1
    rows = page.locator("#documents tr[data-doc-id]")
    assert rows.count() == 2, rows.all_inner_texts()
    assert FAKE_NAME not in page.locator("#documents").inner_text()
    assert page.locator("#error").is_hidden(), page.locator("#error .banner-text").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "admin.png"), full_page=True)


def test_the_chat_answers_from_the_uploaded_files_without_a_restart(page, server):
    answer, sources = ask_in_chat(page, server["url"], DOCX_QUESTION)
    page.screenshot(path=str(SCREENSHOTS / "admin-chat.png"))
    assert DOCX_FIGURE in answer, answer
    assert DOCX_TITLE in sources, sources

    answer, sources = ask_in_chat(page, server["url"], PDF_QUESTION)
    assert PDF_FIGURE in answer, answer
    assert PDF_TITLE in sources, sources


def test_an_impossible_date_is_refused_in_chinese_and_chunks_count_from_one(page, server):
    page.goto(server["url"] + "/admin")
    row = doc_row(page, f"{KB}/{PDF_NAME}")
    row.wait_for(timeout=30_000)
    row.locator(".edit").click()
    form = page.locator(f"tr[data-edit-for='{KB}/{PDF_NAME}'] form")
    form.locator("input[name=date]").fill("2024-02-30")
    form.locator(".save").click()
    banner = page.locator("#error .banner-text")
    banner.wait_for(timeout=10_000)
    assert "真实日期" in banner.inner_text(), banner.inner_text()
    form.locator(".cancel-edit").click()
    row.locator(".preview").click()
    first = page.locator("#preview-chunks .chunk-n").first
    first.wait_for(timeout=30_000)
    assert first.inner_text() == "第 1 段"


def test_a_deleted_document_is_no_longer_cited(page, server):
    page.goto(server["url"] + "/admin")
    doc_id = f"{KB}/{DOCX_NAME}"
    row = doc_row(page, doc_id)
    row.wait_for(timeout=30_000)
    row.locator(".delete").click()
    assert page.dialogs and DOCX_TITLE in page.dialogs[-1], page.dialogs
    row.wait_for(state="detached", timeout=120_000)
    status, text = finished_status(page, DOCX_NAME, kind="delete", timeout=60_000)
    assert status == "indexed" and "已删除" in text, text
    assert doc_row(page, f"{KB}/{PDF_NAME}").count() == 1  # only the one file went
    assert page.locator("#error").is_hidden(), page.locator("#error .banner-text").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "admin-deleted.png"), full_page=True)

    answer, sources = ask_in_chat(page, server["url"], DOCX_QUESTION)
    page.screenshot(path=str(SCREENSHOTS / "admin-chat-deleted.png"))
    assert DOCX_TITLE not in sources, sources
    assert DOCX_FIGURE not in answer and DOCX_CAP not in answer, answer

    # The other uploaded file is still answered from.
    answer, sources = ask_in_chat(page, server["url"], PDF_QUESTION)
    assert PDF_FIGURE in answer and PDF_TITLE in sources, (answer, sources)


def test_the_server_logged_no_traceback(server):
    log = server["log"].read_text("utf-8", "replace")
    assert "Traceback" not in log, log
