"""Browser tests: Debian chromium driven by playwright against `rag serve` subprocesses.

One server (and one portal page on a second port) is shared by the module; a second
server runs behind a real nginx under a sub-path. Waits are on selectors, never on
network idle (Gradio keeps a connection open).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.conftest import CORPUS, RAG, REPO, free_port, start_server, wait_healthy
from tests.llm_server import LLMServer, Reply, cite

CHROMIUM = "/usr/bin/chromium"
HOSTILE = """---
title: 恶意标题<script>alert("title")</script>
date: 2024-05-01
source: 测试来源
---
防注入测试条款
第一条 防注入测试条款规定：<script>alert(1)</script>本条款用于检验页面是否转义。
第二条 防注入测试条款还包括图片标签<img src=x onerror="alert(2)">，它必须原样显示为文字。
第三条 防注入测试条款规定，页面中的链接标签<a href="javascript:alert(3)">点我</a>也只能作为文字出现，不得变成可点击的链接，并且不得执行任何脚本。
第四条 防注入测试条款规定，样式标签<style>body{display:none}</style>同样只能作为文字出现，不得改变页面的样式，也不得隐藏页面中的任何内容。
第五条 防注入测试条款规定，表单标签<form action="https://example.invalid">提交</form>只能作为文字出现，不得向任何外部地址提交数据。
第六条 防注入测试条款规定，框架标签<iframe src="https://example.invalid"></iframe>只能作为文字出现，不得在页面中嵌入任何外部页面。
"""
HOSTILE_QUESTION = "防注入测试条款规定了什么？"


@contextlib.contextmanager
def serving(data_dir: Path, env: dict):
    """`rag serve` on a free port until the block ends; yields its base URL."""
    port = free_port()
    proc = start_server(data_dir, port, env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(60)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, e5_dir) -> Path:
    root = tmp_path_factory.mktemp("web")
    corpus = root / "corpus"
    shutil.copytree(CORPUS, corpus)
    (corpus / "hostile.md").write_text(HOSTILE, "utf-8")
    env = {**os.environ, "RAG_DATA_DIR": str(root / "data"), "RAG_EMBEDDING_MODEL": str(e5_dir)}
    subprocess.run([RAG, "ingest", str(corpus)], env=env, check=True, capture_output=True)
    # Each further server gets its own copy: a data dir has one server (its only writer).
    shutil.copytree(root / "data", root / "pristine")
    return root / "data"


def own_copy(data_dir: Path, name: str) -> Path:
    target = data_dir.parent / name
    shutil.copytree(data_dir.parent / "pristine", target)
    return target


@pytest.fixture(scope="module")
def portal_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(data_dir, e5_dir, portal_port):
    env = {
        "RAG_EMBEDDING_MODEL": str(e5_dir),
        "RAG_ALLOWED_ORIGINS": f"http://127.0.0.1:{portal_port}",
    }
    with serving(data_dir, env) as url:
        yield url


@pytest.fixture(scope="module")
def portal(server, portal_port, tmp_path_factory):
    """examples/intranet.html served from a second origin, pointed at the server."""
    root = tmp_path_factory.mktemp("portal")
    page = (REPO / "examples" / "intranet.html").read_text("utf-8")
    (root / "index.html").write_text(page.replace("http://localhost:7860", server), "utf-8")
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **kw)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", portal_port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{portal_port}/index.html"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Page:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.dialogs = []  # every alert() a hostile document manages to run lands here
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()


def ask_in_chat(page: Page, question: str) -> None:
    page.wait_for_selector("textarea", timeout=60_000)
    page.fill("textarea", question)
    page.keyboard.press("Enter")


def test_chat_page_answers_shows_sources_and_stores_feedback(page, server, data_dir):
    """Under its Content-Security-Policy: nothing is loaded from or sent to anywhere else."""
    csp = page.goto(server + "/").headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "default-src 'self'" in csp
    ask_in_chat(page, "莱芜区上半年实际使用外资多少？")
    first = page.locator("#rag-sources #rag-src-1")
    first.wait_for(timeout=60_000)
    assert "莱芜区集中签约23个“双招双引”项目" in first.inner_text()
    assert "3227万美元" in first.locator("mark").first.inner_text()
    bot = page.locator("[data-testid='bot']").last
    assert "3227万美元" in bot.inner_text()
    bot.locator("a[href='#rag-src-1']").first.click()
    assert page.url.endswith("#rag-src-1")
    page.get_by_label("Like").last.click()
    deadline = time.monotonic() + 15
    rows = []
    while time.monotonic() < deadline and not rows:
        db = data_dir / "feedback.sqlite"
        if db.exists():
            rows = (
                sqlite3.connect(db)
                .execute("SELECT rating, question, citations FROM feedback")
                .fetchall()
            )
        time.sleep(0.3)
    assert rows and rows[0][0] == 1 and rows[0][1] == "莱芜区上半年实际使用外资多少？"
    assert "news/2022-08-04-laiwu-signing.txt" in rows[0][2]


def test_a_follow_up_in_the_chat_keeps_its_subject(page, server):
    page.goto(server + "/")
    ask_in_chat(page, "莱芜区上半年实际使用外资多少？")
    page.locator("#rag-sources #rag-src-1").wait_for(timeout=60_000)
    ask_in_chat(page, "那欧美资金呢？")
    bots = page.locator("[data-testid='bot']")
    bots.nth(1).filter(has_text="3008万美元").wait_for(timeout=60_000)
    assert "3008万美元" in page.locator("#rag-sources").inner_text()


def test_nothing_relevant_found_has_its_own_state(page, server):
    page.goto(server + "/")
    ask_in_chat(page, "红烧肉怎么做才不腻？")
    page.locator("#rag-sources .rag-empty").wait_for(timeout=60_000)
    assert "知识库中没有找到" in page.locator("[data-testid='bot']").last.inner_text()


def test_portal_widget_asks_and_shows_an_answer_with_sources(page, portal):
    page.goto(portal)
    widget = page.locator("[data-policy-rag-widget]")
    widget.locator(".bubble").click()
    widget.locator("input").fill("飞地项目投产后前三年按多大比例奖励？")
    widget.locator("form button").click()
    sources = widget.locator(".sources li")
    sources.first.wait_for(timeout=60_000)
    assert "明川区促进飞地经济发展的若干政策" in sources.first.inner_text()
    assert widget.locator(".bot").last.locator(".marker").count() >= 1
    page.screenshot(path=str(Path(os.environ.get("RAG_SCREENSHOTS", "/tmp")) / "portal-widget.png"))
    # A follow-up is asked with the page's history, so it stays on 飞地 projects.
    widget.locator("input").fill("那第四年和第五年呢？")
    widget.locator("form button").click()
    follow_up_sources = widget.locator(".sources").nth(1)  # none if it were refused
    follow_up_sources.wait_for(timeout=60_000)
    assert "6:4" in follow_up_sources.inner_text()


def test_portal_embeds_the_chat_in_an_iframe_and_as_a_web_component(page, portal):
    page.goto(portal)
    page.frame_locator("#iframe-embed iframe").locator("textarea").wait_for(timeout=90_000)
    component = page.locator("gradio-app")
    component.scroll_into_view_if_needed()  # the web component renders once it is in view
    component.locator("textarea").wait_for(timeout=90_000)
    component.locator("textarea").fill("莱芜区上半年实际使用外资多少？")
    component.locator("textarea").press("Enter")
    component.locator("#rag-src-1").wait_for(timeout=60_000)
    assert "3227万美元" in component.locator("#rag-src-1").inner_text()


def test_hostile_document_is_shown_as_text_and_runs_nothing(page, server, portal):
    page.goto(server + "/")
    ask_in_chat(page, HOSTILE_QUESTION)
    panel = page.locator("#rag-sources")
    panel.locator(".rag-source").first.wait_for(timeout=60_000)
    assert "<script>alert(1)</script>" in panel.inner_text()
    assert '<img src=x onerror="alert(2)">' in panel.inner_text()
    bot = page.locator("[data-testid='bot']").last
    assert "<script>alert(1)</script>" in bot.inner_text() or "<img" in bot.inner_text()
    assert page.locator("img[src='x']").count() == 0
    # What the answer left out waits, collapsed, under 相关条款, and is text there too.
    related = panel.locator("details.rag-related")
    assert related.count() == 1 and related.get_attribute("open") is None
    assert not related.locator("ol").is_visible()
    related.locator("summary").click()
    assert "防注入测试条款" in related.locator("ol").inner_text()
    assert "<" in related.inner_text() and related.locator("a, style, form, iframe").count() == 0

    page.goto(portal)
    widget = page.locator("[data-policy-rag-widget]")
    widget.locator(".bubble").click()
    widget.locator("input").fill(HOSTILE_QUESTION)
    widget.locator("form button").click()
    widget.locator(".sources li").first.wait_for(timeout=60_000)
    assert "<script>alert(1)</script>" in widget.locator(".log").inner_text()
    assert widget.locator("img").count() == 0
    clauses = widget.locator("details.related")
    assert clauses.count() == 1 and clauses.get_attribute("open") is None
    assert not clauses.locator("ol").is_visible()
    clauses.locator("summary").click()
    assert "防注入测试条款" in clauses.locator("ol").inner_text()
    assert "<" in clauses.inner_text()
    assert clauses.locator("a, style, form, iframe").count() == 0
    page.wait_for_timeout(1000)
    assert page.dialogs == []


@contextlib.contextmanager
def nginx_in_front(site: str, app_port: int, app: subprocess.Popen, work: Path):
    """A real nginx serving `site` (an examples/ server block, pointed at `app_port` and a
    free port of its own); yields the app's URL through it, /rag."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proxy_port = free_port()
    conf = site.replace("listen 80;", f"listen 127.0.0.1:{proxy_port};").replace(
        "http://127.0.0.1:7860/", f"http://127.0.0.1:{app_port}/"
    )
    (work / "site.conf").write_text(conf, "utf-8")
    # As root, nginx's workers would run as nobody, who cannot read pytest's private tmp.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(
        f"{user}worker_processes 1; pid {work}/nginx.pid; error_log {work}/error.log;\n"
        "events {}\n"
        f"http {{ access_log {work}/access.log; client_body_temp_path {work}/body;"
        f" proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fcgi;"
        f" uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;"
        f" include {work}/site.conf; }}\n",
        "utf-8",
    )
    proxy = subprocess.Popen([nginx, "-c", str(work / "nginx.conf"), "-g", "daemon off;"])
    try:
        wait_healthy(f"http://127.0.0.1:{app_port}/healthz", app)
        wait_healthy(f"http://127.0.0.1:{proxy_port}/rag/healthz", proxy)
        yield f"http://127.0.0.1:{proxy_port}/rag"
    finally:
        proxy.terminate()
        app.terminate()
        app.wait(60)


@pytest.fixture(scope="module")
def behind_nginx(data_dir, e5_dir, tmp_path_factory):
    """The app under /rag/ behind a real nginx, as an intranet would run it."""
    app_port = free_port()
    app = start_server(
        own_copy(data_dir, "nginx-data"),
        app_port,
        {"RAG_EMBEDDING_MODEL": str(e5_dir), "RAG_ROOT_PATH": "/rag"},
    )
    site = (REPO / "examples" / "nginx.conf").read_text("utf-8")
    with nginx_in_front(site, app_port, app, tmp_path_factory.mktemp("nginx")) as url:
        yield url


def test_everything_works_behind_a_reverse_proxy_under_a_sub_path(page, behind_nginx):
    answer = httpx.post(
        behind_nginx + "/api/ask", json={"question": "莱芜区上半年实际使用外资多少？"}, timeout=60
    )
    assert answer.status_code == 200 and "3227万美元" in answer.json()["answer"]
    assert "api/ask" in httpx.get(behind_nginx + "/widget.js").text
    page.goto(behind_nginx + "/")
    ask_in_chat(page, "莱芜区上半年实际使用外资多少？")
    page.locator("#rag-sources #rag-src-1").wait_for(timeout=60_000)
    assert "3227万美元" in page.locator("[data-testid='bot']").last.inner_text()


@pytest.fixture(scope="module")
def llm():
    """A local OpenAI-compatible server standing in for the site's LLM (tests/llm_server.py)."""
    with LLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def llm_web(data_dir, e5_dir, llm):
    env = {
        "RAG_EMBEDDING_MODEL": str(e5_dir),
        "RAG_LLM_BASE_URL": llm.base_url,
        "RAG_LLM_MODEL": "qwen-test",
        "RAG_PROMPTS_DIR": str(REPO / "prompts"),
    }
    with serving(own_copy(data_dir, "llm-data"), env) as url:
        yield url


def test_llm_answers_in_the_chat_mark_unverified_figures_and_keep_the_subject(page, llm_web, llm):
    def reply(messages):
        prompt = messages[-1]["content"]
        if "改写后的问题" in prompt:
            return Reply("莱芜区上半年实际使用欧美资金多少？")
        if "欧美资金多少" in prompt:
            return Reply(f"实际使用欧美资金3008万美元[{cite(messages, '3008万美元')}]。")
        n = cite(messages, "3227万美元")
        return Reply(f"上半年实际使用外资3227万美元[{n}]。全年目标为5000万美元[{n}]。")

    llm.reply = reply
    page.goto(llm_web + "/")
    ask_in_chat(page, "莱芜区上半年实际使用外资多少？")
    assert "由大模型依据知识库原文写成" in page.locator("body").inner_text()
    page.locator("#rag-sources .rag-source").first.wait_for(timeout=60_000)
    bot = page.locator("[data-testid='bot']").last
    text = bot.inner_text()
    assert "3227万美元" in text and "全年目标为5000万美元" in text
    assert text.count("⚠️") == 2  # after the invented sentence, and the note below
    assert "未能在所引资料中核实" in text
    ask_in_chat(page, "那欧美资金呢？")
    page.locator("[data-testid='bot']").nth(1).filter(has_text="3008万美元").wait_for(
        timeout=60_000
    )
    page.screenshot(path=str(Path(os.environ.get("RAG_SCREENSHOTS", "/tmp")) / "chat-llm.png"))
    condense = [r for r in llm.requests if "改写后的问题" in r["messages"][-1]["content"]]
    assert "用户：莱芜区上半年实际使用外资多少？" in condense[-1]["messages"][-1]["content"]


def test_commands_beside_a_running_server_never_write_its_data_dir(server, data_dir, e5_dir):
    """The server is the data dir's only writer: `rag ingest` says in one line what to do
    instead, `rag ask` is answered by the server, and the index is left as it was."""
    from tests.conftest import run_rag

    env = {"RAG_DATA_DIR": str(data_dir), "RAG_EMBEDDING_MODEL": str(e5_dir)}
    deadline = time.monotonic() + 120
    while not (before := httpx.get(server + "/healthz").json())["ready"]:  # index loaded
        assert time.monotonic() < deadline
        time.sleep(0.2)
    ingest = run_rag("ingest", str(CORPUS), env=env)
    assert ingest.returncode == 1 and "Traceback" not in ingest.stderr
    (line,) = ingest.stderr.strip().splitlines()
    assert "a running `rag serve`" in line and f"{server}/admin" in line
    asked = run_rag("ask", "--json", "莱芜区上半年实际使用外资多少？", env=env)
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "3227万美元" in answer["answer"] and answer["generation"] == before["generation"]
    assert httpx.get(server + "/healthz").json() == before


def test_the_chat_api_refuses_a_null_message_in_words(server):
    """A client of Gradio's API can send anything; it gets a message, not a Python error."""
    from gradio_client import Client

    client = Client(server + "/", verbose=False)
    reply = client.predict(None, "", "", "全部来源", 5, [], api_name="/chat")
    text = json.dumps(reply, ensure_ascii=False)
    assert "问题不能为空" in text and "NoneType" not in text
    # Dates the wrong way round are said so, not answered with "nothing found".
    reply = client.predict(
        "莱芜区上半年实际使用外资多少？",
        "2024-06-01",
        "2024-01-01",
        "全部来源",
        5,
        [],
        api_name="/chat",
    )
    assert "起始日期晚于截止日期" in json.dumps(reply, ensure_ascii=False)


HEADER_GRANTS = """
[users."wangwu"]
role = "reader"

[groups."信息中心"]
role = "admin"
"""


@pytest.fixture(scope="module")
def header_auth(data_dir, e5_dir, tmp_path_factory):
    """RAG_AUTH=header behind a real nginx that signs users in (examples/nginx-header-
    auth.conf, with a password file): wangwu may read, zhangsan is an admin through his
    group, zhaoliu signs in but has no grant. nginx connects from 127.0.0.2, the one
    address the app believes; this test connects straight from 127.0.0.1."""
    work = tmp_path_factory.mktemp("nginx-header")
    app_data = own_copy(data_dir, "header-data")
    (app_data / "grants.toml").write_text(HEADER_GRANTS, "utf-8")
    (work / "htpasswd").write_text(
        "".join(f"{user}:{{PLAIN}}pw\n" for user in ("wangwu", "zhangsan", "zhaoliu")), "utf-8"
    )
    app_port = free_port()
    env = {
        "RAG_EMBEDDING_MODEL": str(e5_dir),
        "RAG_ROOT_PATH": "/rag",
        "RAG_AUTH": "header",
        "RAG_FORWARDED_ALLOW_IPS": "127.0.0.2",
        "RAG_AUTH_PROXY_SECRET": "change-me-to-a-long-random-secret",  # as the example says
    }
    app = start_server(app_data, app_port, env)
    site = (REPO / "examples" / "nginx-header-auth.conf").read_text("utf-8")
    site = site.replace("/etc/nginx/rag.htpasswd", str(work / "htpasswd"))
    with nginx_in_front(site, app_port, app, work) as url:
        yield url, f"http://127.0.0.1:{app_port}"


def test_header_mode_behind_nginx_honours_its_user_and_not_a_forged_header(header_auth):
    through_nginx, straight = header_auth
    question = {"question": "莱芜区上半年实际使用外资多少？"}
    assert httpx.post(through_nginx + "/api/ask", json=question).status_code == 401  # nginx's
    wangwu, zhangsan = ("wangwu", "pw"), ("zhangsan", "pw")
    answer = httpx.post(through_nginx + "/api/ask", json=question, auth=wangwu, timeout=60)
    assert answer.status_code == 200 and "3227万美元" in answer.json()["answer"]
    # wangwu claims to be zhangsan: nginx replaces the header, so he is still wangwu.
    forged = {"X-Remote-User": "zhangsan", "X-Remote-Groups": "信息中心".encode()}
    assert httpx.get(through_nginx + "/metrics", auth=wangwu, headers=forged).status_code == 403
    assert httpx.get(through_nginx + "/metrics", auth=zhangsan).status_code == 200
    # Straight to the port, not through nginx: the same headers are nobody's.
    direct = httpx.post(straight + "/api/ask", json=question, headers=forged)
    assert direct.status_code == 401 and "3227" not in direct.text
    no_grant = httpx.post(through_nginx + "/api/ask", json=question, auth=("zhaoliu", "pw"))
    assert no_grant.status_code == 403


def test_the_chat_behind_the_portals_sign_in_answers_a_granted_user_only(browser, header_auth):
    through_nginx, _ = header_auth
    for user, expected in (("wangwu", "3227万美元"), ("zhaoliu", "no access")):
        context = browser.new_context(http_credentials={"username": user, "password": "pw"})
        page = context.new_page()
        page.goto(through_nginx + "/")
        ask_in_chat(page, "莱芜区上半年实际使用外资多少？")
        page.locator("[data-testid='bot']").last.filter(has_text=expected).wait_for(timeout=60_000)
        assert ("3227万美元" in page.locator("body").inner_text()) == (user == "wangwu")
        context.close()


class PortalHandler(http.server.BaseHTTPRequestHandler):
    """A portal's page with the widget, and the portal's own /token route: its server asks
    the assistant for an embed token for the user signed in to the portal (here always
    wangwu) with the portal's API key, which never reaches the page."""

    page = ""  # set per portal
    mint: Callable[[], dict]  # → the assistant's answer to POST /api/embed-tokens

    def do_GET(self):
        if self.path == "/token":
            body, kind = json.dumps(type(self).mint()).encode(), "application/json"
        else:
            body, kind = type(self).page.encode(), "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def portal_at(port: int, page: str, mint: Callable[[], dict]):
    handler = type("Portal", (PortalHandler,), {"page": page, "mint": staticmethod(mint)})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}/index.html"
    finally:
        httpd.shutdown()


def test_the_widget_on_a_portal_answers_its_signed_in_user_and_nothing_on_another_origin(
    browser, data_dir, e5_dir
):
    """RAG_AUTH=header with nobody's proxy trusted: the widget signs in only with the
    embed token the portal's server obtained. The same page on a non-allowed origin,
    holding a token the real portal was given, gets nothing."""
    from tests.conftest import run_rag

    portal_port, evil_port, app_port = free_port(), free_port(), free_port()
    portal_origin = f"http://127.0.0.1:{portal_port}"
    app_data = own_copy(data_dir, "widget-token-data")
    (app_data / "grants.toml").write_text('[users."wangwu"]\nrole = "reader"\n', "utf-8")
    env = {"RAG_DATA_DIR": str(app_data), "RAG_EMBEDDING_MODEL": str(e5_dir)}
    created = run_rag(
        "keys", "create", "--name", "portal", "--origin", portal_origin, "--json", env=env
    )
    key = json.loads(created.stdout)["key"]
    env = {
        "RAG_EMBEDDING_MODEL": str(e5_dir),
        "RAG_AUTH": "header",
        "RAG_FORWARDED_ALLOW_IPS": "127.0.0.2",
        "RAG_ALLOWED_ORIGINS": portal_origin,
    }
    app = start_server(app_data, app_port, env)
    server = f"http://127.0.0.1:{app_port}"

    def mint() -> dict:  # the portal's backend, for its signed-in user
        return httpx.post(
            server + "/api/embed-tokens",
            json={"user": "wangwu", "origin": portal_origin},
            headers={"Authorization": f"Bearer {key}"},
        ).json()

    page_html = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><h1>门户</h1>"
        f"<script src='{server}/widget.js' data-token-url='/token' defer></script></body></html>"
    )
    try:
        wait_healthy(server + "/healthz", app)
        with (
            portal_at(portal_port, page_html, mint) as portal,
            portal_at(evil_port, page_html, mint) as evil,
        ):
            for url, answered in ((portal, True), (evil, False)):
                context = browser.new_context()
                page = context.new_page()
                page.goto(url)
                widget = page.locator("[data-policy-rag-widget]")
                widget.locator(".bubble").click()
                widget.locator("input").fill("莱芜区上半年实际使用外资多少？")
                widget.locator("form button").click()
                done = widget.locator(".sources li") if answered else widget.locator(".bot")
                done.filter(has_text="3227万美元" if answered else "出错了").first.wait_for(
                    timeout=60_000
                )
                assert ("3227万美元" in widget.locator(".log").inner_text()) == answered
                context.close()
        assert "rag_" not in page_html  # the key never reached a page
    finally:
        app.terminate()
        app.wait(60)


def test_a_pdf_citation_opens_the_original_at_the_cited_page(browser, data_dir, e5_dir):
    """A two-page scan uploaded in the browser's server is OCR'd by the job; a question
    about page 2 cites page 2, and the citation's link opens the kept PDF at #page=2, in
    the chat and in the widget on a portal."""
    from tests.scans import scanned_pdf
    from tests.test_ocr import PAGE_1, PAGE_2

    portal_port = free_port()
    env = {
        "RAG_EMBEDDING_MODEL": str(e5_dir),
        "RAG_ALLOWED_ORIGINS": f"http://127.0.0.1:{portal_port}",
    }
    with serving(own_copy(data_dir, "pdf-data"), env) as url:
        files = {"files": ("数字经济措施.pdf", scanned_pdf([PAGE_1, PAGE_2]))}
        (job,) = httpx.post(url + "/api/documents", files=files, timeout=60).json()["jobs"]
        deadline = time.monotonic() + 180
        while (state := httpx.get(f"{url}/api/jobs/{job['id']}").json())["status"] != "indexed":
            assert state["status"] not in ("failed", "no_text") and time.monotonic() < deadline
            time.sleep(0.5)
        context = browser.new_context()
        page = context.new_page()
        page.goto(url + "/")
        ask_in_chat(page, "新认定的数字经济龙头企业奖励多少？")
        link = page.locator("#rag-sources a.rag-source-original").first
        link.wait_for(timeout=60_000)
        assert link.inner_text() == "原文第2页"
        href = link.get_attribute("href")
        assert href.endswith("/original#page=2")
        with context.expect_page() as opened:
            link.click()
        assert opened.value.url == f"{url}/{href}"
        original = httpx.get(f"{url}/{href.split('#')[0]}")
        assert original.status_code == 200 and original.content.startswith(b"%PDF")
        assert original.headers["content-type"] == "application/pdf"
        assert original.headers["content-disposition"].startswith("inline")

        page_html = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
            f"<script src='{url}/widget.js' defer></script></body></html>"
        )
        with portal_at(portal_port, page_html, dict) as portal:
            page.goto(portal)
            widget = page.locator("[data-policy-rag-widget]")
            widget.locator(".bubble").click()
            widget.locator("input").fill("新认定的数字经济龙头企业奖励多少？")
            widget.locator("form button").click()
            link = widget.locator(".sources a.original").first
            link.wait_for(timeout=60_000)
            assert link.inner_text() == "原文第2页"
            with context.expect_page() as opened:
                link.click()
            assert opened.value.url == f"{url}/{href}"
        context.close()
