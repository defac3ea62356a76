"""The web chat (Gradio) and the HTTP API in one app: `python ui.py` or `rag serve`.

Thin: the `rag` library answers; this file lays out the page, streams the answer into the
chat, renders its sources beside it (escaped by rag.render) and stores 👍/👎 feedback.
"""

from __future__ import annotations

import argparse
import re
import threading
from collections import OrderedDict
from datetime import date
from pathlib import Path

import gradio as gr
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response

from rag.api import create_app
from rag.chain import Assistant, QuestionError, build_assistant
from rag.config import Settings
from rag.feedback import FeedbackStore
from rag.index import Filters
from rag.llm import LLMAnswerer
from rag.render import answer_markdown, escape_markdown, sources_html

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
.rag-empty{background:#fff8e1;border:1px solid #f0c36d;border-radius:6px;padding:12px}
.rag-idle{color:#656d76}
"""


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


def build_blocks(assistant: Assistant, sources: list[str], feedback: FeedbackStore) -> gr.Blocks:
    answers = AnswerLog()
    intro = (
        "答案由大模型依据知识库原文写成，每句后的 [n] 指向右侧的来源段落；"
        "⚠️ 标出数字未能在来源中核实的句子。"
        if isinstance(assistant.answerer, LLMAnswerer)
        else "答案逐句摘自知识库原文，每句后的 [n] 指向右侧的来源段落。"
    )

    def respond(message, history, since, until, source, k, request: gr.Request):
        written, session = "", request.session_hash or ""
        try:
            filters = Filters(
                since=parse_date(since, "起始日期"),
                until=parse_date(until, "截止日期"),
                source="" if source in (None, "", ALL_SOURCES) else source,
            )
            for item in assistant.stream(message, int(k), filters, answers.plain(session, history)):
                if isinstance(item, str):  # an LLM's words as they come, sources after
                    written += item
                    yield escape_markdown(written), sources_html(None)
                else:
                    answer = item.to_json()
        except QuestionError as exc:
            yield f"⚠️ {exc}", sources_html(None)
            return
        text = answer_markdown(answer)
        if not written:  # an extractive answer: shown a sentence at a time
            for marker in list(SENTENCE_END.finditer(text))[:-1]:
                yield text[: marker.end()], sources_html(None)
        answers.put(session, len(history) + 1, answer)
        yield text, sources_html(answer)

    def on_like(data: gr.LikeData, request: gr.Request):
        answer = answers.get(request.session_hash or "", data.index)
        if answer is not None:
            feedback.add(1 if data.liked else -1, answer, request.session_hash or "")

    with gr.Blocks(title="招商政策问答") as blocks:
        gr.Markdown(f"## 招商政策问答\n{intro}")
        panel = gr.HTML(sources_html(None), render=False, elem_id="rag-sources")
        with gr.Row():
            with gr.Column(scale=3):
                since = gr.Textbox(label="起始日期", placeholder="2024-01-01", render=False)
                until = gr.Textbox(label="截止日期", placeholder="2025-12-31", render=False)
                source = gr.Dropdown(
                    [ALL_SOURCES, *sources], value=ALL_SOURCES, label="来源", render=False
                )
                k = gr.Slider(1, 10, value=assistant.k, step=1, label="引用段落数 k", render=False)
                chat = gr.ChatInterface(
                    respond,
                    chatbot=gr.Chatbot(
                        height=520, label="对话", feedback_options=("Like", "Dislike")
                    ),
                    textbox=gr.Textbox(
                        placeholder="请输入问题…", max_length=500, submit_btn="提问"
                    ),
                    additional_inputs=[since, until, source, k],
                    additional_inputs_accordion=gr.Accordion(
                        "筛选：日期、来源、k", open=False, render=False
                    ),
                    additional_outputs=[panel],
                    api_name="chat",
                    fill_height=False,
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
    return blocks


def create_server_app(settings: Settings) -> FastAPI:
    """The API with the chat mounted at `/` and the web-component loader at `/gradio.js`."""
    assistant = build_assistant(settings)
    index = assistant.retriever.index

    def health() -> dict:
        return {"chunks": index.count(), "documents": len(index.manifest.docs)}

    app = create_app(lambda: assistant, settings.allowed_origins, health)

    @app.get("/gradio.js")
    def gradio_loader() -> Response:
        """Gradio's own web-component loader, served here so `<gradio-app>` embedding
        works with no CDN (its assets come from this server's /assets/)."""
        return Response(GRADIO_LOADER.read_text("utf-8"), media_type="text/javascript")

    sources = sorted({s for s in index.lexical.fields["source"].tolist() if s})
    blocks = build_blocks(assistant, sources, FeedbackStore(settings.data_dir / "feedback.sqlite"))
    return gr.mount_gradio_app(
        app,
        blocks,
        path="/",
        root_path=settings.root_path or None,
        css=CSS,
        footer_links=[],
        ssr_mode=False,
    )


def serve(settings: Settings, host: str, port: int) -> None:
    uvicorn.run(
        create_server_app(settings),
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        root_path=settings.root_path,
    )


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(description="招商政策问答: web chat and HTTP API")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    args = parser.parse_args(argv)
    serve(settings, args.host, args.port)


if __name__ == "__main__":
    main()
