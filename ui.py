"""The web chat (Gradio) and the HTTP API in one app: `python ui.py` or `rag serve`.

Thin: the `rag` library answers; this file lays out the page, streams the answer into the
chat, renders its sources beside it (escaped by rag.render) and stores 👍/👎 feedback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import re
import threading
from collections import OrderedDict
from datetime import date
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

from rag.access import Forbidden, Grants, Principal
from rag.api import create_app
from rag.api.auth import AuthConfig, EmbedTokens, embed_secret
from rag.audit import AUDIT_FILE, AuditLog, Event
from rag.chain import Assistant, QuestionError, build_assistant, granted_filters, open_index
from rag.config import Settings
from rag.decompose import segment
from rag.feedback import FeedbackStore
from rag.index import Filters
from rag.jobs import JobQueue
from rag.keys import KEYS_FILE, KeyStore
from rag.llm import LLMAnswerer
from rag.owner import own
from rag.render import answer_markdown, escape_markdown, sources_html
from rag.telemetry import answer_fields, configure_logging, kv
from rag.watchdog import Heartbeat, Watchdog

log = logging.getLogger("rag.ui")
request_log = logging.getLogger("rag.request")  # a chat answer's line, beside the API's
GRADIO_LOADER = Path(gr.__file__).parent / "templates" / "frontend" / "gradio.js"
ALL_SOURCES = "全部来源"
SENTENCE_END = re.compile(r"\]\(#rag-src-\d+\)")  # the link after each quoted sentence
EXAMPLES = [
    "莱芜区上半年实际使用外资多少？",
    "在明川区写字楼租办公室，第一年租金补贴多少？",
    "飞地项目投产后前三年按多大比例奖励？",
    "招商项目评审打分看哪些方面？",
]
CSS = """
.rag-sources{list-style:none;padding:0;margin:0;font-size:14px;line-height:1.6}
.rag-source{border-left:3px solid #d0d7de;padding:6px 10px;margin:0 0 12px 0}
.rag-source:target{border-color:#0969da;background:#eef6ff}
.rag-source-title{font-weight:600}.rag-source-meta{color:#656d76;font-size:12.5px}
.rag-source-text mark{background:#fff3b0;padding:0 1px}
.rag-related{margin:4px 0 12px 0;font-size:14px}.rag-related summary{cursor:pointer;color:#0969da}
.rag-related ol{padding-left:20px}.rag-related-item{margin:6px 0}
.rag-empty{background:#fff8e1;border:1px solid #f0c36d;border-radius:6px;padding:12px}
.rag-idle{color:#656d76}
"""


def question_box() -> gr.Textbox:
    """The chat's textbox. A null sent through Gradio's API becomes "": Gradio's
    ChatInterface would fail on None before our function could say what is wrong.
    (Patched on the instance: a subclass would make Gradio write a .pyi stub beside us.)"""
    box = gr.Textbox(placeholder="请输入问题…", max_length=500, submit_btn="提问")
    preprocess = box.preprocess
    box.preprocess = lambda payload: "" if payload is None else preprocess(payload)
    return box


def principal_of(request: gr.Request | None) -> Principal:
    """Who is chatting, as the sign-in layer in front of the app found (rag.api.auth):
    the live request of the queued event carries it. Never a default."""
    live = getattr(request, "request", None) if request is not None else None
    principal = live.scope.get("state", {}).get("principal") if live is not None else None
    if principal is None:
        raise Forbidden("未登录：请先登录")
    return principal


def session_of(request: gr.Request | None) -> str:
    """The chat session's key: Gradio's session hash comes from the browser, so it is
    bound to the signed-in user; another user's hash names nothing of theirs."""
    try:
        user = principal_of(request).name
    except Forbidden:
        user = ""
    return f"{user}\x00{(request.session_hash if request else '') or ''}"


def parse_date(value: str, label: str) -> str:
    value = (value or "").strip()
    if not value:
        return ""
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise QuestionError(f"{label}请写成 2024-03-15 这样的日期") from None


class AnswerLog:
    """The answers each browser session was given, by chatbot message index, so that a
    👍/👎 can be stored with its question and citations. Bounded: old sessions fall off."""

    def __init__(self, sessions: int = 1000):
        self.sessions = sessions
        self._log: OrderedDict[str, dict[int, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, session: str, index: int, answer: dict) -> None:
        with self._lock:
            self._log.setdefault(session, {})[index] = answer
            self._log.move_to_end(session)
            while len(self._log) > self.sessions:
                self._log.popitem(last=False)

    def get(self, session: str, index: int) -> dict | None:
        with self._lock:
            return self._log.get(session, {}).get(index)

    def plain(self, session: str, history: list[dict]) -> list[dict]:
        """The chat history with each answer as its plain text rather than the rendered
        markdown the chatbot holds (links, escapes, notices)."""
        return [
            {**m, "content": answer["answer"]}
            if m.get("role") == "assistant" and (answer := self.get(session, i))
            else m
            for i, m in enumerate(history)
        ]


def build_blocks(assistant: Assistant, feedback: FeedbackStore, concurrency: int = 8) -> gr.Blocks:
    """The chat page. Up to `concurrency` answers are worked on at once (Gradio's default
    is one); more people wait in a bounded queue."""
    answers = AnswerLog()
    index = assistant.retriever.index

    def choices(request: gr.Request):
        """Sources and knowledge bases as they are now, of those this user may read:
        documents come and go while the server runs, so the page asks on every load."""
        lexical = index.snapshot().lexical
        try:
            principal = principal_of(request)
        except Forbidden:
            return gr.Dropdown(choices=[ALL_SOURCES]), gr.Dropdown(choices=[])
        shown = Filters(readable=principal.readable()).mask(lexical)
        sources = [s for s in lexical.fields["source"].among(shown) if s]
        kbs = [name for name, _, _ in index.manifest.kbs() if principal.may_read(name)]
        return (
            gr.Dropdown(choices=[ALL_SOURCES, *sources], value=ALL_SOURCES),
            gr.Dropdown(choices=kbs, value=[]),
        )

    intro = (
        "答案由大模型依据知识库原文写成，每句后的 [n] 指向右侧的来源段落；"
        "⚠️ 标出数字未能在来源中核实的句子。"
        if isinstance(assistant.answerer, LLMAnswerer)
        else "答案逐句摘自知识库原文，每句后的 [n] 指向右侧的来源段落。"
    )

    def respond(message, history, since, until, source, k, kbs=None, request: gr.Request = None):
        written, session = "", session_of(request)
        history = history if isinstance(history, list) else []
        try:
            if not isinstance(message, str) or not message.strip():
                raise QuestionError("问题不能为空")  # also what a null from the API becomes
            filters = granted_filters(
                index,
                principal_of(request),
                kbs if isinstance(kbs, list | str) else None,
                Filters(
                    since=parse_date(since, "起始日期"),
                    until=parse_date(until, "截止日期"),
                    source="" if source in (None, "", ALL_SOURCES) else source,
                ),
            )
            if filters.since and filters.until and filters.since > filters.until:
                raise QuestionError("起始日期晚于截止日期")  # not "nothing found": say why
            for item in assistant.stream(message, int(k), filters, answers.plain(session, history)):
                if isinstance(item, str):  # an LLM's words as they come, sources after
                    written += item
                    yield escape_markdown(written), sources_html(None)
                else:
                    answer, fallback = item.to_json(), item.fallback
        except (QuestionError, Forbidden) as exc:
            yield f"⚠️ {escape_markdown(str(exc))}", sources_html(None)
            return
        request_log.info(
            kv(
                {
                    "route": "chat",
                    "kb": ",".join(sorted(filters.kbs)) or "*",
                    **answer_fields(answer, fallback),
                }
            )
        )
        text = answer_markdown(answer)
        if not written:  # an extractive answer: shown a sentence at a time
            for marker in list(SENTENCE_END.finditer(text))[:-1]:
                yield text[: marker.end()], sources_html(None)
        answers.put(session, len(history) + 1, answer)
        yield text, sources_html(answer)

    def on_like(data: gr.LikeData, request: gr.Request):
        answer = answers.get(session_of(request), data.index)
        if answer is not None:
            feedback.add(1 if data.liked else -1, answer, request.session_hash or "")

    with gr.Blocks(title="招商政策问答") as blocks:
        gr.Markdown(f"## 招商政策问答\n{intro}")
        panel = gr.HTML(sources_html(None), render=False, elem_id="rag-sources")
        with gr.Row():
            with gr.Column(scale=3):
                since = gr.Textbox(label="起始日期", placeholder="2024-01-01", render=False)
                until = gr.Textbox(label="截止日期", placeholder="2025-12-31", render=False)
                source = gr.Dropdown([ALL_SOURCES], value=ALL_SOURCES, label="来源", render=False)
                kb = gr.Dropdown(
                    [], value=[], multiselect=True, label="知识库（不选 = 全部）", render=False
                )
                k = gr.Slider(1, 10, value=assistant.k, step=1, label="引用段落数 k", render=False)
                chat = gr.ChatInterface(
                    respond,
                    chatbot=gr.Chatbot(
                        height=520, label="对话", feedback_options=("Like", "Dislike")
                    ),
                    textbox=question_box(),
                    additional_inputs=[since, until, source, k, kb],
                    additional_inputs_accordion=gr.Accordion(
                        "筛选：知识库、日期、来源、k", open=False, render=False
                    ),
                    additional_outputs=[panel],
                    api_name="chat",
                    fill_height=False,
                    concurrency_limit=concurrency,
                )
                with gr.Row():
                    for question in EXAMPLES:  # example questions: a click fills the box
                        gr.Button(question, size="sm", variant="secondary").click(
                            lambda q=question: q, None, chat.textbox
                        )
            with gr.Column(scale=2):
                gr.Markdown("### 来源")
                panel.render()
        chat.chatbot.like(on_like, inputs=None, outputs=None)
        blocks.load(choices, None, [source, kb], api_name=False, queue=False)
    # Bounded: beyond this many waiting, Gradio tells the user the queue is full.
    blocks.queue(default_concurrency_limit=concurrency, max_size=8 * concurrency)
    return blocks


def create_server_app(settings: Settings, host: str | None = None) -> FastAPI:
    """The API with the chat mounted at `/`, the management page at `/admin`, the ingest
    job worker, and the web-component loader at `/gradio.js`."""
    index = open_index(settings, writer_model=True)
    assistant = build_assistant(settings, index)
    jobs = JobQueue(index, settings.data_dir, settings.chunk_size, settings.chunk_overlap)
    warm = threading.Event()

    def warm_up() -> None:
        """Load the model and the index before the first question needs them."""
        try:
            index.embeddings.embed_query("预热")
            index.snapshot()
            segment("预热")  # jieba's dictionary (~1 s): comparisons and the scope check
        except Exception:
            log.exception("warming up failed; the first question will try again")
        warm.set()

    def health() -> dict:
        snap = index.current  # what was loaded last: no query, no lock
        return {
            "generation": snap.generation if snap else None,
            "chunks": snap.chunks if snap else None,
            "documents": snap.documents if snap else None,
            "jobs_queued": jobs.queued_cached,
        }

    heartbeat = Heartbeat()
    ages = {"a call of the embedding model": index.embeddings.calls.oldest}
    if index.writer_embeddings is not index.embeddings:
        ages["an ingest call of the embedding model"] = index.writer_embeddings.calls.oldest
    watchdog = Watchdog({**ages, "the event loop": heartbeat.age}, settings.stall_seconds)

    async def beat() -> None:
        while True:
            heartbeat.tick()
            await asyncio.sleep(1)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        heartbeat.tick()
        ticking = asyncio.create_task(beat())
        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
        jobs.start()
        watchdog.start()
        yield
        watchdog.stop()
        ticking.cancel()
        jobs.stop()  # after uvicorn has let in-flight requests finish

    audit = AuditLog(settings.data_dir / AUDIT_FILE)
    app = create_app(
        lambda: assistant,
        settings.allowed_origins,
        health,
        jobs=jobs,
        data_dir=settings.data_dir,
        ready=warm.is_set,
        stuck=watchdog.problem,
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
        auth=auth_config(settings, audit, host or settings.host),
        audit=audit,
    )

    @app.get("/gradio.js")
    def gradio_loader() -> Response:
        """Gradio's own web-component loader, served here so `<gradio-app>` embedding
        works with no CDN (its assets come from this server's /assets/)."""
        return Response(GRADIO_LOADER.read_text("utf-8"), media_type="text/javascript")

    blocks = build_blocks(
        assistant, FeedbackStore(settings.data_dir / "feedback.sqlite"), settings.concurrency
    )
    return gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        root_path=settings.root_path or None,
        css=CSS,
        footer_links=[],
        ssr_mode=False,
        # Gradio would keep each answer in the browser (and offer to upload them to a
        # Hugging Face bucket): on a shared office PC the next user would read them.
        run_history=False,
    )


def auth_config(settings: Settings, audit: AuditLog, host: str) -> AuthConfig:
    """How callers sign in, from the settings (`host`: where the server listens); a grants
    file that is not valid stops the start (ValueError naming the line)."""
    data = settings.data_dir
    grants_file = settings.grants_file or data / "grants.toml"

    def granted(summary: str) -> None:  # who edited the file: its owner, as far as known
        try:
            owner = grants_file.owner()
        except (OSError, KeyError):
            owner = "?"
        audit.record(Event(f"file:{owner}", "file", "grants change", summary))

    if (
        settings.auth == "header"
        and not settings.auth_proxy_secret
        and "forwarded_allow_ips" not in settings.model_fields_set
    ):
        # The default (127.0.0.1) would believe any process on this machine that sends
        # X-Remote-User: the proxy must be named, or prove itself with a secret.
        raise ValueError(
            "RAG_AUTH=header needs to know which requests come from your proxy: set "
            "RAG_AUTH_PROXY_SECRET (the proxy adds it in X-Rag-Proxy-Secret) and/or "
            "RAG_FORWARDED_ALLOW_IPS (the proxy's own address, e.g. 127.0.0.2 with nginx "
            "proxy_bind); see README 'Sign-in through the portal'"
        )
    signed_in = settings.auth != "none"
    secret = embed_secret(data / "embed.secret") if signed_in else b""
    oidc = None
    if settings.auth == "oidc":
        from rag.api.oidc import OidcConfig

        oidc = OidcConfig(
            settings.oidc_issuer,
            settings.oidc_client_id,
            settings.oidc_client_secret,
            settings.oidc_scopes,
            settings.oidc_user_claim,
            settings.oidc_groups_claim,
            int(settings.session_hours * 3600),
        )
    return AuthConfig(
        mode=settings.auth,
        grants=Grants(grants_file, on_change=granted),
        keys=KeyStore(data / KEYS_FILE) if signed_in else None,
        trusted=settings.forwarded_allow_ips,
        user_header=settings.auth_user_header,
        groups_header=settings.auth_groups_header,
        proxy_secret=settings.auth_proxy_secret,
        proxy_secret_header=settings.auth_proxy_secret_header,
        percent_encoded=settings.auth_headers_encoded,
        allowed_origins=settings.allowed_origins,
        rate=settings.rate_limit,
        tokens=EmbedTokens(secret) if signed_in else None,
        oidc=oidc,
        secret=secret,
        secure_cookie=settings.secure_cookie,
        loopback_only=settings.auth == "none" and is_loopback(host),
        allowed_hosts=frozenset(h.lower() for h in settings.allowed_hosts),
    )


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: only this one is known to stay on this machine
        return host == "localhost"


class Unprotected(RuntimeError):
    """Asked to listen beyond this machine with nothing that signs users in."""


def check_exposure(host: str, insecure_no_auth: bool, auth: str = "none") -> None:
    """Anyone who reaches the port can read every document and manage the knowledge base:
    without sign-in (`RAG_AUTH=none`), listen on loopback only (a reverse proxy on this
    machine may sign users in and forward), unless told otherwise on purpose."""
    if auth != "none":
        return
    if not is_loopback(host) and not insecure_no_auth:
        raise Unprotected(
            f"refusing to listen on {host}: this server has no sign-in, so anyone who can "
            "reach it could read and change every document. Let the portal's proxy sign "
            "users in (RAG_AUTH=header, RAG_FORWARDED_ALLOW_IPS=its address), listen on "
            "127.0.0.1 behind it, or pass --insecure-no-auth if the network itself is the "
            "protection."
        )


INSECURE_HELP = "listen on a non-loopback address without sign-in (the network is the protection)"


def serve(settings: Settings, host: str, port: int, insecure_no_auth: bool = False) -> None:
    """Serve until SIGTERM/SIGINT: in-flight answers finish, the running ingest job stops
    after its current batch and resumes at the next start."""
    check_exposure(host, insecure_no_auth, settings.auth)
    configure_logging()
    if not settings.chroma_url:  # an embedded store has one writer: this server
        owning = own(settings.data_dir, f"http://{host}:{port}{settings.root_path}")
    else:
        owning = contextlib.nullcontext()
    with owning:
        app = create_server_app(settings, host)
        uvicorn.run(
            app,
            host=host,
            port=port,
            proxy_headers=False,  # applied inside the app, behind the sign-in layer
            forwarded_allow_ips=settings.forwarded_allow_ips,
            root_path=settings.root_path,
            log_level="warning",  # our own access line per request is in rag.request
            timeout_graceful_shutdown=10,  # in-flight answers; then open streams are cut
        )


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description="招商政策问答: web chat and HTTP API")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--insecure-no-auth", action="store_true", help=INSECURE_HELP)
    args = parser.parse_args(argv)
    try:
        serve(settings, args.host, args.port, args.insecure_no_auth)
    except (Unprotected, ValueError) as exc:  # ValueError: a grants file that is not valid
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    main()
