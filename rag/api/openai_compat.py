"""The OpenAI-compatible API under /v1, as chat apps use it (Open WebUI, LobeChat, Cherry
Studio, ChatBox, NextChat, the `openai` SDKs): `GET /v1/models`, `GET /v1/models/{id}`
and `POST /v1/chat/completions`, in OpenAI's shapes for models, completions, stream
chunks, usage and errors.

Models are scopes: `policy-rag` searches every knowledge base the caller may read,
`policy-rag:<kb>` (飞地经济 → `policy-rag:飞地经济`, percent-encoded in a path) only that
one, so a client picks the scope by picking the model. A model naming a knowledge base
the caller may not read is a 403, as asking with `"kb"` is; any other unknown model a 404
`model_not_found`.

Usage is counted in characters (Unicode code points), not tokens: `prompt_tokens` is the
text of every message the client sent (all of it is read: the earlier turns make
follow-ups standalone), `completion_tokens` the text of the content returned (answer,
notices and the 来源 list). The default answerer runs no language model, so it has no
tokens to count; the embedding model's tokenizer would give a number that changes with
RAG_EMBEDDING_MODEL, matches no LLM's bill and would take that model's one-caller lock on
every answer. Characters mean the same whichever answerer a site runs.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Literal, NoReturn

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag.access import Forbidden, Principal, as_seen_by
from rag.api.errors import ApiError
from rag.chain import Assistant, QuestionError, kb_names
from rag.history import text_of
from rag.index import Filters, Index
from rag.render import sources_text, unverified_text

MODEL_NAME = "policy-rag"
MODEL_PREFIX = f"{MODEL_NAME}:"  # + a knowledge base's name
MAX_TEXT = 20_000  # characters of any one message: far beyond a question, bounds the body


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str = Field(max_length=MAX_TEXT)

    @field_validator("content", mode="before")
    @classmethod
    def _parts_to_text(cls, value):
        """OpenAI clients may send content as a list of parts (Open WebUI always does for
        the last message, to mark it for caching); keep the text parts. An assistant
        turn that called tools has none (null)."""
        if value is None:
            return ""
        return text_of(value) if isinstance(value, list) else value


KbField = str | list[str] | None  # a knowledge base name, or several; none = all


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")  # include_obfuscation … change nothing here

    include_usage: bool = Field(False, strict=True)


class ChatRequest(BaseModel):
    # Parameters not declared here are accepted and ignored, unless `refuse_misleading`
    # says otherwise (see there for which and why).
    model_config = ConfigDict(extra="allow")

    model: str = Field(MODEL_NAME, max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=100)
    stream: bool = Field(False, strict=True)
    # Only read when streaming: a complete answer always carries its usage.
    stream_options: StreamOptions | None = None
    kb: KbField = None


def refuse_misleading(extra: dict) -> None:
    """A 400 for a parameter whose request we could only seem to honour.

    The rest are ignored on purpose: temperature, top_p, seed, penalties, logit_bias and
    stop tune a model's sampling, and answers here are extracted from the documents or
    written by the site's configured model with the site's settings; max_tokens and
    max_completion_tokens are not applied because cutting an answer would cut its 来源
    list (its length is bounded by RAG_ANSWER_MAX_CHARS anyway); user, metadata, store,
    service_tier and reasoning settings are bookkeeping; `tools` alone (tool_choice
    auto) lets a model answer in text, which is what it gets.
    """
    n = extra.get("n")
    if n is not None and n != 1:
        # The client would look for n choices and find one.
        _refuse("n", "n must be 1: there is one answer per question, built from the documents")
    tool_choice = extra.get("tool_choice")
    if tool_choice not in (None, "auto", "none"):
        # "required" or a named function: the client waits for a tool call that never comes.
        _refuse("tool_choice", "this assistant calls no tools: tool_choice must be auto or none")
    if isinstance(extra.get("function_call"), dict):  # the same, in the older API
        _refuse("function_call", "this assistant calls no functions")
    response_format = extra.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in (None, "text"):
        # The answer is prose with [n] markers and a 来源 list: a JSON parse would fail.
        _refuse("response_format", f"response_format {kind!r} is not available: answers are text")
    if extra.get("logprobs") or extra.get("top_logprobs"):
        # Extracted sentences have no token probabilities to return.
        _refuse("logprobs", "logprobs are not available: answers are not sampled token by token")
    modalities = extra.get("modalities")
    if extra.get("audio") or (
        isinstance(modalities, list) and any(m != "text" for m in modalities)
    ):
        _refuse("modalities", "answers are text only")


def _refuse(param: str, message: str) -> NoReturn:
    raise ApiError(400, message, param=param, code="unsupported_parameter")


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404,
        f"no model {model!r}: the models are {MODEL_NAME} and {MODEL_PREFIX}<knowledge base>, "
        "as GET /v1/models lists them",
        param="model",
        code="model_not_found",
    )


def kb_of_model(model: str) -> str | None:
    """The knowledge base a model id picks (None: all the caller may read), or a 404."""
    if model == MODEL_NAME:
        return None
    kb = model.removeprefix(MODEL_PREFIX) if model.startswith(MODEL_PREFIX) else ""
    if not kb.strip():
        raise model_not_found(model)
    return kb


def check_model(index: Index, principal: Principal, model: str) -> str | None:
    """The knowledge base `model` picks, if the caller may ask it: a 403 for one not
    granted (existing or not, as with `"kb"`), a 404 for one that does not exist."""
    kb = kb_of_model(model)
    try:
        principal.check_read(frozenset([kb] if kb else []))
    except Forbidden as exc:
        raise ApiError(403, str(exc), "permission_error", param="model") from None
    if kb is not None and kb not in {name for name, _, _ in index.manifest.kbs()}:
        raise model_not_found(model)
    return kb


def scope_of(model: str, model_kb: str | None, body_kb: KbField) -> KbField:
    """What to search: the model's knowledge base, or with `policy-rag` the request's
    `"kb"`; a `"kb"` that contradicts the model is a 400, not a silent choice."""
    if model_kb is None:
        return body_kb
    if kb_names(body_kb) not in ([], [model_kb]):
        raise ApiError(
            400,
            f'model {model!r} searches knowledge base {model_kb!r} only; drop "kb" or pick '
            f"model {MODEL_NAME}",
            param="kb",
        )
    return model_kb


def model_object(kb: str | None, created: int) -> dict:
    """One entry of GET /v1/models. `name` is what Open WebUI and others show."""
    return {
        "id": MODEL_NAME if kb is None else MODEL_PREFIX + kb,
        "object": "model",
        "created": created,
        "owned_by": MODEL_NAME,
        "name": "招商政策问答" if kb is None else f"招商政策问答 · {kb}",
        "kb": kb,
    }


def usage(prompt_chars: int, completion_chars: int) -> dict:
    """OpenAI's usage object, counted in characters (see the module's docstring)."""
    return {
        "prompt_tokens": prompt_chars,
        "completion_tokens": completion_chars,
        "total_tokens": prompt_chars + completion_chars,
    }


def prompt_chars(messages: list[Message]) -> int:
    return sum(len(m.content) for m in messages)


def last_user_message(messages: list[Message]) -> str:
    if messages[-1].role != "user":
        raise QuestionError("the last message must come from the user")
    return messages[-1].content


def fingerprint(answer: dict) -> str:
    """What the answer was computed from: the index generation all its citations come
    from (a changed corpus is a changed backend, as OpenAI means the field)."""
    return f"{MODEL_NAME}-gen{answer['generation']}"


def answer_text(answer: dict) -> str:
    """The answer as chat clients show it: the notice first, when there is one."""
    return (f"{answer['notice']}\n" if answer["notice"] else "") + answer["answer"]


def ours(answer: dict) -> dict:
    """Our fields beside OpenAI's: the structured sources and what to make of the answer."""
    return {
        "citations": answer["citations"],
        "refused": answer["refused"],
        "unverified": answer["unverified"],
        "notice": answer["notice"],
    }


@dataclass(frozen=True)
class Head:
    """What every object of one completion repeats."""

    id: str
    created: int
    model: str

    @classmethod
    def new(cls, model: str) -> Head:
        return cls(f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), model)


def completion(head: Head, answer: dict, prompt: int) -> dict:
    """The whole answer as one `chat.completion`: the citations are both in the text (the
    来源 list, for clients that show only `content`) and in `citations`."""
    content = answer_text(answer) + unverified_text(answer) + sources_text(answer)
    return {
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "system_fingerprint": fingerprint(answer),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage(prompt, len(content)),
        **ours(answer),
    }


def stream_events(
    head: Head,
    pieces: Iterator,
    prompt: int,
    include_usage: bool,
    seen: Callable[[dict], dict] = lambda answer: answer,
) -> Iterator[str]:
    """OpenAI's streaming format: chunks of `delta` content, then a last chunk with the
    finish reason and our `citations` (as `seen` shows the caller the answer object), with
    `include_usage` a chunk with no choices and the usage, then `[DONE]`. A generated
    answer streams as the model writes it; an extractive one (or a fallback) in small
    pieces once it is ready."""
    written = 0

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        nonlocal written
        written += len(delta.get("content", ""))
        payload = {
            "id": head.id,
            "object": "chat.completion.chunk",
            "created": head.created,
            "model": head.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **({"usage": None} if include_usage else {}),  # as OpenAI: null until the last
            **extra,
        }
        return _event(payload)

    yield chunk({"role": "assistant", "content": ""})
    streamed = False
    for item in pieces:
        if isinstance(item, str):
            streamed = True
            yield chunk({"content": item})
            continue
        answer = seen(item.to_json())
        if streamed and item.fallback:  # the model failed part-way: void what it wrote
            rest = f"\n\n（以上回答未完成，作废。）{answer_text(answer)}"
        elif streamed:  # the model's text is out: a caveat follows it, a refusal is flagged
            rest = (f"\n\n{answer['notice']}" if answer["notice"] else "") + unverified_text(answer)
        else:
            rest = answer_text(answer) + unverified_text(answer)
        for piece in _pieces(rest + sources_text(answer)):
            yield chunk({"content": piece})
        yield chunk({}, "stop", system_fingerprint=fingerprint(answer), **ours(answer))
        if include_usage:
            yield _event(
                {
                    "id": head.id,
                    "object": "chat.completion.chunk",
                    "created": head.created,
                    "model": head.model,
                    "system_fingerprint": fingerprint(answer),
                    "choices": [],
                    "usage": usage(prompt, written),
                }
            )
    yield "data: [DONE]\n\n"


def _event(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _pieces(text: str, size: int = 24) -> Iterator[str]:
    """The answer in small pieces, never splitting a `[n]` marker."""
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        bracket = text.rfind("[", start, end)
        if bracket > start and "]" not in text[bracket:end]:
            end = bracket
        yield text[start:end]
        start = end


def openai_router(
    assistant: Callable[[], Assistant],
    caller: Callable[[Request], Principal],
    scope: Callable[[KbField, Request], Filters],
    note: Callable[[Request, dict, str], None],
) -> APIRouter:
    """The /v1 routes. `scope` narrows a request to the knowledge bases asked for within
    the caller's grant; `note` puts what an answer was like into the request's log line."""
    router = APIRouter()
    started = int(time.time())  # the models' `created`: they exist while the server runs

    def index() -> Index:
        return assistant().retriever.index

    @router.get("/v1/models")
    def list_models(request: Request) -> dict:
        principal = caller(request)
        principal.check_read()  # nobody without a grant is shown a list to ask in vain
        kbs = [name for name, _, _ in index().manifest.kbs() if principal.may_read(name)]
        models = [model_object(kb, started) for kb in [None, *kbs]]
        return {"object": "list", "data": models}

    @router.get("/v1/models/{model_id:path}")
    def retrieve_model(model_id: str, request: Request) -> dict:
        return model_object(check_model(index(), caller(request), model_id), started)

    @router.post("/v1/chat/completions", response_model=None)
    def chat_completions(body: ChatRequest, request: Request) -> dict | StreamingResponse:
        refuse_misleading(body.model_extra or {})
        model_kb = check_model(index(), caller(request), body.model)
        question = last_user_message(body.messages)
        history = [m.model_dump() for m in body.messages[:-1]]
        filters = scope(scope_of(body.model, model_kb, body.kb), request)
        head, prompt = Head.new(body.model), prompt_chars(body.messages)
        if not body.stream:
            answer = assistant().ask(question, filters=filters, history=history)
            out = as_seen_by(caller(request), answer.to_json())
            note(request, out, answer.fallback)
            return completion(head, out, prompt)
        pieces = assistant().stream(question, filters=filters, history=history)
        first = next(pieces)  # a bad question fails here, as a 400, before streaming
        request.state.log["stream"] = True
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            stream_events(
                head,
                itertools.chain([first], pieces),
                prompt,
                include_usage,
                partial(as_seen_by, caller(request)),
            ),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def unknown(path: str, request: Request) -> None:
        """Any other /v1 path: OpenAI's 404, not the web chat's page (it is mounted at /)."""
        raise ApiError(404, f"Invalid URL ({request.method} /v1/{path})", code="unknown_url")

    return router
