"""The HTTP API (FastAPI): `POST /api/ask`, the OpenAI-compatible `/v1` routes (models and
chat completions, rag.api.openai_compat), `GET /healthz`, `/readyz`, `/metrics` and
`GET /widget.js`; with a job queue, the corpus keepers' routes and `/admin`
(rag.api.documents). The web chat (ui.py) is mounted beside it.

Bad requests get a 4xx with a JSON body `{"error": {"message", "type", "param", "code"}}`
(rag.api.errors), never a 500.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Mount
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from rag.access import Forbidden, Principal, as_seen_by
from rag.api.auth import UNSAFE, AuthConfig, Authenticate, Denied
from rag.api.errors import ApiError, error
from rag.api.openai_compat import MAX_TEXT, KbField, Message, openai_router
from rag.audit import AuditLog, Event
from rag.chain import Assistant, QuestionError, granted_filters
from rag.index import Filters
from rag.jobs import JobQueue
from rag.telemetry import Telemetry, answer_fields

log = logging.getLogger("rag.api")
STATIC = Path(__file__).resolve().parent.parent / "static"


class FiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: date | None = None
    until: date | None = None
    source: str = Field("", max_length=200)
    doc_type: str = Field("", max_length=50)

    def to_filters(self) -> Filters:
        if self.since and self.until and self.since > self.until:
            raise QuestionError("filters.since is after filters.until")
        return Filters(
            since=self.since.isoformat() if self.since else "",
            until=self.until.isoformat() if self.until else "",
            source=self.source,
            doc_type=self.doc_type,
        )


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(max_length=MAX_TEXT)
    history: list[Message] = Field(default_factory=list, max_length=100)
    filters: FiltersIn | None = None
    k: int | None = Field(None, ge=1, le=50, strict=True)  # "5" or true is a mistake
    kb: KbField = None


class EmbedTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=200)
    groups: list[str] = Field(default_factory=list, max_length=100)
    origin: str = Field(min_length=1, max_length=200)


def caller(request: Request) -> Principal:
    """Who sent `request`, as the sign-in layer (rag.api.auth) found; never a default."""
    principal = request.scope.get("state", {}).get("principal")
    if principal is None:
        raise StarletteHTTPException(401, "not signed in")
    return principal


def create_app(
    assistant_factory: Callable[[], Assistant],
    allowed_origins: list[str] | None = None,
    health: Callable[[], dict] | None = None,
    jobs: JobQueue | None = None,
    data_dir: Path | None = None,
    ready: Callable[[], bool] | None = None,
    stuck: Callable[[], str] | None = None,
    lifespan=None,
    max_body_bytes: int = 2**20,
    auth: AuthConfig | None = None,
    audit: AuditLog | None = None,
) -> FastAPI:
    """The API app. The assistant (model, indexes) is built on first use, once. With
    `jobs`, the document routes and the management page (/admin) are mounted too.
    `auth` says how callers sign in (default: nobody does, the local user may do all);
    `audit` records every change, question and refusal."""
    app = FastAPI(
        title="招商政策问答 API",
        version="1",
        # No Swagger page: FastAPI's loads its script from a CDN (not there on an intranet,
        # and blocked by our own script-src 'self'). Any OpenAPI viewer reads the JSON.
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    origins = list(allowed_origins or [])
    lock = threading.Lock()
    built: list[Assistant] = []
    telemetry = Telemetry()
    app.state.telemetry = telemetry

    def assistant() -> Assistant:
        with lock:
            if not built:
                built.append(assistant_factory())
        return built[0]

    app.state.assistant = assistant

    auth = auth or AuthConfig()
    # Innermost first. The sign-in layer must see the address the connection really comes
    # from, so the proxy's X-Forwarded-* are applied inside it (uvicorn's are turned off).
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=auth.trusted)
    app.add_middleware(Authenticate, config=auth)
    if auth.mode == "oidc":  # the session cookie is read before the sign-in layer asks
        from starlette.middleware.sessions import SessionMiddleware

        from rag.api.oidc import oidc_router

        app.add_middleware(
            SessionMiddleware,
            secret_key=auth.secret,
            session_cookie="rag_session",
            # The session's own end is checked at each request (rag.api.auth); the cookie
            # outlives it by a day so that the user is told it expired, not that no one
            # had signed in.
            max_age=auth.oidc.session_seconds + 86400,
            # Inside a portal's cross-origin iframe a cookie is sent only if SameSite=None,
            # which browsers accept only with Secure (HTTPS).
            same_site="none" if auth.secure_cookie else "lax",
            https_only=auth.secure_cookie,
        )
        app.include_router(oidc_router(auth.oidc))
    app.add_middleware(LimitBody, max_bytes=max_body_bytes, upload_bytes=MAX_UPLOAD_BYTES)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["*"],  # the <gradio-app> client sends headers of its own
    )

    # Who may put this app in a frame: itself and the configured portal origins.
    app.add_middleware(
        ObserveAndFrame,
        telemetry=telemetry,
        frame_ancestors="frame-ancestors " + " ".join(["'self'", *origins]),
        audit=audit,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return error(400, "the body is not valid JSON")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}".strip(": ")
        # OpenAI answers a malformed request with a 400 naming the field; its clients
        # raise BadRequestError for it. Our own routes keep FastAPI's 422.
        if _template(request.scope).startswith("/v1/"):
            return error(400, message, param=where or None, code="invalid_value")
        return error(422, message, param=where or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        response = error(exc.status_code, str(exc.detail), kind)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> JSONResponse:
        request.state.log["error"] = exc.code or exc.kind
        return exc.response()

    @app.exception_handler(QuestionError)
    async def bad_question(request: Request, exc: QuestionError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        request.state.log["error"] = "forbidden"
        return error(403, str(exc), "permission_error")

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed: %s", type(exc).__name__, exc_info=exc)
        request.state.log["error"] = type(exc).__name__
        return error(500, f"internal error: {type(exc).__name__}", "server_error")

    @app.get("/healthz")
    async def healthz(request: Request):
        """Liveness, answered on the event loop (never queued behind answers): 503 when a
        model call or the loop itself is stuck (rag.watchdog); `ready` says whether the
        model and the index are loaded. The index's totals only to an admin (anyone, when
        nobody signs in): asked without credentials, they would tell that knowledge bases
        the caller may not read exist, how big they are and when they change."""
        problem = stuck() if stuck else ""
        if problem:
            return JSONResponse({"status": "stuck", "problem": problem}, status_code=503)
        principal = request.scope.get("state", {}).get("principal")
        totals = health() if health and principal is not None and principal.is_admin else {}
        return {"status": "ok", "ready": ready() if ready else True, **totals}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        is_ready = ready() if ready else True
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        caller(request).check_admin()  # knowledge-base names and sizes are in it
        return Response(generate_latest(telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    def scope(body_kb: KbField, request: Request, filters: Filters | None = None) -> Filters:
        """`filters` with the knowledge bases asked for, within the caller's grant."""
        granted = granted_filters(assistant().retriever.index, caller(request), body_kb, filters)
        searched = granted.kbs or granted.readable or ()
        request.state.log["kb"] = ",".join(sorted(searched)) or "*"
        return granted

    def note(request: Request, answer: dict, fallback: str = "") -> None:
        request.state.log.update(answer_fields(answer, fallback))

    @app.post("/api/ask")
    def ask(body: AskRequest, request: Request) -> JSONResponse:
        filters = scope(body.kb, request, body.filters.to_filters() if body.filters else None)
        history = [m.model_dump() for m in body.history]
        answer = assistant().ask(body.question, k=body.k, filters=filters, history=history)
        out = as_seen_by(caller(request), answer.to_json())
        note(request, out, answer.fallback)
        return JSONResponse(out)  # already plain JSON: no second pass through FastAPI's encoder

    app.include_router(openai_router(assistant, caller, scope, note))

    @app.post("/api/embed-tokens")
    def embed_token(body: EmbedTokenRequest, request: Request) -> dict:
        """For a portal's server, with its API key: a short-lived token for one of its
        signed-in users, which the widget on the portal's page sends instead of a key."""
        if auth.tokens is None or auth.keys is None:
            raise StarletteHTTPException(404, "this server issues no embed tokens")
        try:
            token = auth.tokens.issue(
                caller(request), auth.keys, body.user, body.groups, body.origin
            )
        except Denied as denied:
            return error(denied.status, str(denied), "permission_error")
        request.state.audit_target = body.user
        return {"token": token, "expires_in": auth.tokens.ttl, "user": body.user}

    @app.get("/api/audit")
    def audit_events(
        request: Request,
        limit: int = Query(100, ge=1, le=1000),
        user: str = Query("", max_length=200),
        action: str = Query("", max_length=100),
    ) -> list[dict]:
        """The latest events of the audit log, newest first (admins only)."""
        caller(request).check_admin()
        if audit is None:
            return []
        return [e.to_json() for e in audit.read(limit, user, action)]

    widget_js = (STATIC / "widget.js").read_text("utf-8")

    @app.get("/widget.js")
    def widget() -> Response:
        return Response(widget_js, media_type="text/javascript; charset=utf-8")

    if jobs is not None:
        from rag.api.documents import documents_router

        index = assistant().retriever.index
        app.include_router(documents_router(jobs, assistant(), data_dir or index.data_dir, caller))
        telemetry.watch(index.manifest.kbs, jobs.counts)

    return app


MAX_UPLOAD_BYTES = 512 * 2**20  # one document upload request, all files together


class BodyTooLarge(Exception):
    pass


class LimitBody:
    """A request body over its limit gets a 413 before it is read whole (a 200 MB JSON
    question used to be parsed in full, +580 MB of server memory, before its 422): a
    declared Content-Length is checked first, a chunked body is counted as it arrives.
    Document uploads (POST …/api/documents) have a limit of their own; every other route,
    the chat's included, has `max_bytes`."""

    def __init__(self, app, max_bytes: int, upload_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/api/documents")
        limit = self.upload_bytes if upload else self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(scope, send, limit)
            return
        received, exceeded, started = 0, False, False

        async def counted():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def watched(message) -> None:
            nonlocal started
            if exceeded:  # the app answers the cut body (FastAPI: a 400); ours replaces it
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _too_large(scope, send, limit)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if not started:
                await _too_large(scope, send, limit)


async def _too_large(scope, send, limit: int) -> None:
    scope.setdefault("state", {}).setdefault("log", {})["error"] = "body too large"
    response = error(413, f"the request body is larger than {limit // 2**10} KiB")
    await response(scope, None, send)


STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'"
)
CHAT_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; media-src 'self' data: blob:; "
    "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'"
)


class ObserveAndFrame:
    """One log line and the metrics of every request, and the headers that say who may
    frame the pages. Plain ASGI: Starlette's BaseHTTPMiddleware costs every request a
    task and a stream, Python time that answers then wait for."""

    def __init__(
        self, app, telemetry: Telemetry, frame_ancestors: str, audit: AuditLog | None = None
    ):
        self.app = app
        self.telemetry = telemetry
        # Our own pages (/admin) and every API answer: scripts and styles from this server
        # only. Gradio's chat inlines its config and styles, so its pages may run inline
        # ones, but may load or send nothing anywhere else: an injected script could not
        # carry a document out.
        self.csp = f"{STRICT_CSP}; {frame_ancestors}".encode()
        self.chat_csp = f"{CHAT_CSP}; {frame_ancestors}".encode()
        self.audit = audit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        state["log"] = {"user": state["user"]} if "user" in state else {}  # RAG_AUTH=header
        status = 500

        async def send_with_headers(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (
                        b"content-security-policy",
                        self.chat_csp if _in_chat(scope) else self.csp,
                    ),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),  # no question text to other sites
                ]
                # In the audit log before the caller hears back: nothing done goes unrecorded.
                # Only signed-in callers: anyone's 401s would fill the disk.
                signed_in = "principal" in scope["state"]
                if self.audit and signed_in and (scope["method"] in UNSAFE or status == 403):
                    event = _event(scope, _template(scope), status)
                    await run_in_threadpool(self.audit.record, event)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self.telemetry.observe(
                scope["method"], _template(scope), status, started, scope["state"]["log"]
            )


def _in_chat(scope) -> bool:
    """Whether the request went to the mounted chat (Gradio's own routes), not ours."""
    route = scope.get("route")
    endpoint = getattr(route, "endpoint", None)
    return isinstance(route, Mount) or getattr(endpoint, "__module__", "").startswith("gradio")


def _template(scope) -> str:
    """The route a request took, as declared ("/api/documents/{doc_id:path}")."""
    if _in_chat(scope):
        return "/ (chat)"  # the Gradio app: one label, not one per asset
    return getattr(scope.get("route"), "path", None) or "/"


def _event(scope, route: str, status: int) -> Event:
    """The audit log's line for a request that changed or asked something, or was refused."""
    state = scope["state"]
    principal = state.get("principal")
    target = state.get("audit_target") or "/".join(
        str(v) for v in (scope.get("path_params") or {}).values()
    )
    return Event(
        user=principal.name if principal else "-",
        via=principal.via if principal else "-",
        action=f"{scope['method']} {route}",
        target=target[:500],
        kb=state["log"].get("kb", ""),
        status=status,
    )
