"""A local OpenAI-compatible chat server for the tests: real HTTP, real SSE streaming.

No hosted LLM can run here, so the tests talk to this instead. It speaks the part of the
protocol langchain-openai uses (`POST /v1/chat/completions`, with and without
`"stream": true`); what it replies is decided by a test-supplied `reply` function of the
request's messages, and every request is recorded for the tests to inspect.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    text: str = ""
    status: int = 200  # anything else: an error body instead of an answer
    delay: float = 0.0  # seconds before the first byte (to provoke timeouts)
    drop_after: int | None = None  # streamed pieces sent before the connection is cut
    piece_delay: float = 0.0  # seconds between streamed pieces (a slow, rambling model)


ReplyFn = Callable[[list[dict]], Reply]


def passages(messages: list[dict]) -> dict[int, str]:
    """The numbered passages in the answer prompt: {n: text}."""
    prompt = messages[-1]["content"]
    found = re.findall(r"^\[(\d+)\] .*?\n(.*?)(?=\n\n\[\d+\] |\n\n问题：)", prompt, re.S | re.M)
    return {int(n): text for n, text in found}


def cite(messages: list[dict], fact: str) -> int:
    """The number of the first passage containing `fact` (0 if none)."""
    return next((n for n, text in passages(messages).items() if fact in text), 0)


class LLMServer:
    def __init__(self):
        self.requests: list[dict] = []
        self.reply: ReplyFn = lambda messages: Reply("")
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked streaming, as real servers do

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                reply = server.reply(body["messages"])
                time.sleep(reply.delay)
                try:
                    if reply.status != 200:
                        self._send(reply.status, {"error": {"message": "model overloaded"}})
                    elif body.get("stream"):
                        self._stream(body, reply)
                    else:
                        self._send(200, completion(body, reply.text))
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to do

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict, reply: Reply) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                text = reply.text
                pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
                for sent, piece in enumerate(["", *pieces]):
                    if sent == reply.drop_after:
                        self.close_connection = True
                        return  # no terminating chunk: the client sees a broken body
                    self._event(chunk(body, {"content": piece}))
                    time.sleep(reply.piece_delay)
                self._event(chunk(body, {}, "stop"))
                self._write(b"data: [DONE]\n\n")
                self._write(b"")  # the last chunk of the chunked body

            def _event(self, payload: dict) -> None:
                self._write(f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode())

            def _write(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> LLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up
            super().handle_error(request, client_address)


def completion(body: dict, text: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "test"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chunk(body: dict, delta: dict, finish: str | None = None) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "test"),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
