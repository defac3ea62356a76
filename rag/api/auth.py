"""Who is asking, and may they: one ASGI layer in front of every route, the chat's included.

Signed in by one of:
- nobody (`RAG_AUTH=none`, loopback only): the local user, an admin;
- an API key (`Authorization: Bearer rag_…`, `rag keys create`), in every other mode;
- an embed token (`Authorization: Bearer` a token a portal's key obtained for one of its
  users at POST /api/embed-tokens): short-lived, valid only from that portal's origin;
- the portal's reverse proxy (`RAG_AUTH=header`): `X-Remote-User` / `X-Remote-Groups`,
  believed only from `RAG_FORWARDED_ALLOW_IPS` and removed from anyone else's request;
- the session cookie of a sign-in at an OpenID Connect provider (`RAG_AUTH=oidc`,
  rag.api.oidc).

Then: a request signed in by what the browser sends by itself (nothing, the proxy's
cookie, the session cookie) that changes something must come from this site or an
allowed origin (CSRF), and without sign-in only loopback Host names are served (DNS
rebinding); a key used from a browser must come from one of its origins; every
principal but the local user has a rate. The request's `scope["state"]["principal"]`
says who it is; routes and the index read grants from it (rag.access).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.responses import Response

from rag.access import LOCAL, Grant, Grants, Principal, Role, within
from rag.api.errors import error
from rag.keys import PREFIX, KeyStore

if TYPE_CHECKING:  # authlib is imported only where oidc is used
    from rag.api.oidc import OidcConfig

log = logging.getLogger("rag.auth")

# Asked without credentials: probes an orchestrator sends straight to the port, the
# widget's script, which a portal page loads before anyone has signed in, and the steps
# of signing in (RAG_AUTH=oidc, rag.api.oidc).
OPEN_PATHS = (
    "/healthz",
    "/readyz",
    "/widget.js",
    "/auth/login",
    "/auth/callback",
    "/auth/logout",
    "/auth/signed-out",
)
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
INVALID_KEY = "invalid_api_key"  # OpenAI's code for a credential it does not accept
EMBED_TTL = 600  # seconds an embed token is good for; the widget fetches a new one


def trusted_networks(spec: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
    """`RAG_FORWARDED_ALLOW_IPS` ("127.0.0.1,10.0.0.0/8"; "*" = any) as networks (None = any)."""
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if "*" in items:
        return None
    return [ipaddress.ip_network(item, strict=False) for item in items]


def embed_secret(path: Path) -> bytes:
    """The key that signs embed tokens, made once per data dir (replicas sharing the data
    dir accept each other's tokens); readable by this user only."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under another name, then linked in: two replicas starting at once
        # agree on one key, and none ever reads a half-written one.
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # the other replica's key stands
        finally:
            tmp.unlink()
        return path.read_bytes()


class EmbedTokens:
    """Short-lived tokens a portal's server obtains with its API key for one of its users
    (POST /api/embed-tokens) and hands to the widget: nothing long-lived is in the page.
    Signed (itsdangerous) with the data dir's secret; valid `ttl` seconds, from the
    portal's origin only, while the key that asked is not revoked; what the user may read
    is decided at each use by the grants, within the key's knowledge bases, as a reader."""

    def __init__(self, secret: bytes, ttl: int = EMBED_TTL):
        self.ttl = ttl
        self.signer = URLSafeTimedSerializer(secret, salt="embed-token")

    def issue(self, principal: Principal, keys: KeyStore, user: str, groups, origin: str) -> str:
        key = keys.get(principal.key) if principal.via == "key" else None
        if key is None:
            raise Denied(403, "embed tokens are issued to a portal's API key")
        origin = origin.rstrip("/")
        if origin not in key.origins:
            raise Denied(403, f"key {key.name!r} may not embed the widget in {origin!r}")
        claims = {"user": user, "groups": list(groups), "origin": origin, "key": key.name}
        return self.signer.dumps(claims)

    def verify(self, token: str, keys: KeyStore, grants: Grants | None) -> Principal:
        try:
            claims = self.signer.loads(token, max_age=self.ttl)
        except SignatureExpired:
            raise Denied(
                401, "the embed token has expired: fetch a new one", code=INVALID_KEY
            ) from None
        except BadSignature:
            raise Denied(
                401, "the credential is neither an API key nor an embed token", code=INVALID_KEY
            ) from None
        key = keys.get(claims["key"])
        if key is None or not key.usable(time.time()):
            raise Denied(
                401, "the key that issued this embed token is revoked or expired", code=INVALID_KEY
            )
        user, groups = claims["user"], tuple(claims["groups"])
        granted = within(grants.of(user, groups) if grants else (), Grant(Role.READER, key.kbs))
        return Principal(user, granted, groups, "embed", key.name, (claims["origin"],), key.rate)


class Denied(Exception):
    """A request refused before any route sees it; `code` is OpenAI's machine-readable
    reason where it has one (clients such as Open WebUI tell a bad key from the rest)."""

    def __init__(
        self, status: int, message: str, headers: dict | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.headers, self.code = status, headers or {}, code


@dataclass
class AuthConfig:
    """How this server signs callers in (built from Settings at the edge)."""

    mode: str = "none"  # none | header | oidc
    grants: Grants | None = None
    keys: KeyStore | None = None
    trusted: str = "127.0.0.1"
    user_header: str = "X-Remote-User"
    groups_header: str = "X-Remote-Groups"
    proxy_secret: str = ""  # with mode = header: user headers count only beside it
    proxy_secret_header: str = "X-Rag-Proxy-Secret"
    percent_encoded: bool = False  # the proxy percent-encodes the names it passes
    allowed_origins: list[str] = field(default_factory=list)
    rate: str = "120/minute"  # per user or key, changing requests (asks, uploads, deletes)
    tokens: EmbedTokens | None = None  # None = no embed tokens issued or accepted
    oidc: OidcConfig | None = None  # with mode = oidc
    secret: bytes = b""  # signs the oidc session cookie
    secure_cookie: bool = False  # served over HTTPS: SameSite=None; Secure (iframes too)
    loopback_only: bool = False  # RAG_AUTH=none on loopback: refuse other Host names
    allowed_hosts: frozenset[str] = frozenset()  # Host names besides loopback (lower case)


class Authenticate:
    """The ASGI layer: resolve the principal, check CSRF and origins, count the rate."""

    def __init__(self, app, config: AuthConfig):
        self.app = app
        self.config = config
        self.trusted = trusted_networks(config.trusted)
        self.user_header = config.user_header.lower().encode("latin-1")
        self.groups_header = config.groups_header.lower().encode("latin-1")
        self.secret_header = config.proxy_secret_header.lower().encode("latin-1")
        self.proxy_secret = config.proxy_secret.encode()
        self.origins = frozenset(config.allowed_origins)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    def from_proxy(self, scope, sent: dict[bytes, bytes]) -> bool:
        """Whether the user headers of this request were set by the signing-in proxy: it
        comes from a trusted address and, where a secret is set, carries the secret."""
        if not self.believes((scope.get("client") or ("",))[0]):
            return False
        if not self.proxy_secret:
            return True
        return hmac.compare_digest(sent.get(self.secret_header, b""), self.proxy_secret)

    def believes(self, peer: str) -> bool:
        if self.trusted is None:
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:  # a unix socket or no address: not a known proxy
            return False
        return any(address in network for network in self.trusted)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"])
        # The proxy's headers reach the app from nobody: the principal says who it is.
        proxy_only = (self.user_header, self.groups_header, self.secret_header)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in proxy_only]
        state = scope.setdefault("state", {})
        try:
            principal = self.principal(scope, sent)
            if principal is None:
                if _route_path(scope).rstrip("/") not in OPEN_PATHS:
                    raise self.sign_in(scope, sent)
            else:
                state["principal"] = principal
                if principal is not LOCAL:
                    state.setdefault("log", {})["user"] = principal.name
                self.check_origin(principal, scope, sent)
                self.check_rate(principal, scope)
        except Denied as denied:
            await _deny(scope, send, denied)
            return
        await self.app(scope, receive, send)

    def sign_in(self, scope, sent: dict[bytes, bytes]) -> Denied:
        """What a caller without credentials is told: a browser opening a page in oidc
        mode is sent to sign in (and back); anything else gets a 401 saying how. /v1 is
        for programs (OpenAI clients, chat apps): their way in is an API key, whatever
        the mode, and they are never sent to a sign-in page."""
        if _route_path(scope).startswith("/v1/"):
            return Denied(401, "send an API key: Authorization: Bearer rag_…")
        if self.config.mode == "header":
            return Denied(401, "sign in through the portal: no user came with this request")
        if self.config.mode == "oidc":
            page = scope.get("method") == "GET" and "text/html" in _text(sent.get(b"accept"))
            if page and scope["type"] == "http":
                root, path = scope.get("root_path", ""), _route_path(scope)
                query = scope.get("query_string", b"").decode("latin-1")
                back = quote(path + (f"?{query}" if query else ""), safe="")
                return Denied(303, "sign in first", {"Location": f"{root}/auth/login?next={back}"})
            expired = scope.get("state", {}).get("session_expired")
            why = "the session has expired" if expired else "not signed in"
            return Denied(401, f"{why}: sign in at /auth/login, or send an API key")
        return Denied(401, "send an API key: Authorization: Bearer rag_…")

    def principal(self, scope, sent: dict[bytes, bytes]) -> Principal | None:
        if self.config.mode == "none":
            return LOCAL
        authorization = _text(sent.get(b"authorization"))
        if authorization:
            scheme, _, credential = authorization.partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise Denied(
                    401, "Authorization must be 'Bearer <key or embed token>'", code=INVALID_KEY
                )
            return self.bearer(credential.strip())
        if self.config.mode == "oidc":
            return self.session_user(scope)
        if self.config.mode == "header" and self.from_proxy(scope, sent):
            user = self.header_value(_text(sent.get(self.user_header)))
            if user:
                groups = _text(sent.get(self.groups_header)).split(",")
                names = tuple(n for g in groups if (n := self.header_value(g)))
                grants = self.config.grants.of(user, names) if self.config.grants else ()
                return Principal(user, grants, names, via="header")
        return None

    def header_value(self, raw: str) -> str:
        """One name from the proxy: raw UTF-8, or percent-encoded where the proxy is set to
        encode (RAG_AUTH_HEADERS_ENCODED). Decoded after the groups are split, so that an
        encoded comma stays inside its name instead of adding a group."""
        return (unquote(raw) if self.config.percent_encoded else raw).strip()

    def session_user(self, scope) -> Principal | None:
        """The user of the oidc session cookie, until the session ends."""
        session = scope.get("session")
        if not session or not session.get("user"):
            return None
        if session.get("expires", 0) < time.time():
            session.clear()  # the cookie is cleared on the way out
            scope["state"]["session_expired"] = True
            return None
        user, groups = session["user"], tuple(session.get("groups", ()))
        grants = self.config.grants.of(user, groups) if self.config.grants else ()
        return Principal(user, grants, groups, via="oidc")

    def bearer(self, credential: str) -> Principal:
        keys = self.config.keys
        if keys is None:
            raise Denied(401, "this server accepts no API keys", code=INVALID_KEY)
        if credential.startswith(PREFIX):
            key = keys.verify(credential)
            if key is None:
                raise Denied(401, "the API key is unknown, expired or revoked", code=INVALID_KEY)
            return key.principal()
        if self.config.tokens is None:
            raise Denied(401, "this server issues no embed tokens", code=INVALID_KEY)
        return self.config.tokens.verify(credential, keys, self.config.grants)

    def check_origin(self, principal: Principal, scope, sent: dict[bytes, bytes]) -> None:
        # A request without Origin is cross-site all the same when its Referer is another
        # site's page (older browsers and some form posts send only that).
        origin = _text(sent.get(b"origin")).rstrip("/") or _referer_origin(
            _text(sent.get(b"referer"))
        )
        method = scope.get("method", "GET")  # a WebSocket has none: it is opened by a GET
        if principal.via == "embed" and origin not in principal.origins:
            raise Denied(403, "this embed token was issued for another origin")
        if (
            principal.via == "key"
            and origin
            and principal.origins
            and origin not in principal.origins
        ):
            raise Denied(403, f"key {principal.key!r} may not be used from {origin}")
        if principal.via not in ("none", "header", "oidc"):
            return
        hosts = [_text(sent.get(b"host"))]
        if self.believes((scope.get("client") or ("",))[0]):
            hosts.append(_text(sent.get(b"x-forwarded-host")))
        # DNS rebinding: a site whose name its owner points at 127.0.0.1 would be this
        # server's own origin to the browser. Without sign-in, only loopback names reach
        # a loopback server (RAG_AUTH=none); a proxy in front passes one of them, or the
        # names it serves under are listed in RAG_ALLOWED_HOSTS.
        open_path = _route_path(scope).rstrip("/") in OPEN_PATHS  # nothing there to read
        if principal.via == "none" and self.config.loopback_only and not open_path:
            named = [h for h in hosts if h]
            if named and not all(
                _loopback_host(h) or h.lower() in self.config.allowed_hosts for h in named
            ):
                raise Denied(403, f"unknown host {named[0]!r}: see RAG_ALLOWED_HOSTS")
        # Signed in by something the browser sends by itself (the proxy's cookie, the
        # session cookie, or nothing at all on loopback): a page on another site must not
        # change things in the user's name.
        cross_site = origin and origin not in self.origins and not _same_site(origin, hosts)
        if method in UNSAFE and cross_site:
            raise Denied(403, f"cross-site request from {origin} refused")

    def check_rate(self, principal: Principal, scope) -> None:
        """Requests that change something or ask (POST …) count; pages and assets not."""
        rate = principal.rate or self.config.rate
        if principal.via == "none" or scope.get("method") not in UNSAFE or not rate:
            return
        limit = parse(rate)
        # A portal may mint tokens for any name: its users count against the portal too.
        who = {
            "key": f"key:{principal.key}",
            "embed": f"embed:{principal.key}:{principal.name}",
        }.get(principal.via, f"user:{principal.name}")
        if not self.limiter.hit(limit, who):
            reset, _ = self.limiter.get_window_stats(limit, who)
            wait = max(1, int(reset - time.time()) + 1)
            raise Denied(
                429,
                f"rate limit {rate} reached; retry in {wait} s",
                {"Retry-After": str(wait)},
                code="rate_limit_exceeded",
            )


def _route_path(scope) -> str:
    """The path the app routes on: without the sub-path a proxy serves it under."""
    root, path = scope.get("root_path", ""), scope["path"]
    return path[len(root) :] if root and path.startswith(root) else path


def _same_site(origin: str, hosts: list[str]) -> bool:
    """Whether `origin` is this server as the browser reached it (`hosts`: its Host, and
    a trusted proxy's X-Forwarded-Host); a Host without a port (nginx's `$host`) is
    matched on the host name."""
    target = urlsplit(origin)
    for host in hosts:
        host = host.split(",")[0].strip().lower()
        if host and (host == target.netloc.lower() or host == (target.hostname or "")):
            return True
    return False


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback (with or without a port)."""
    name = host.strip().lower()
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 or name.startswith("[") else name
    return name in LOOPBACK_NAMES or name.endswith(".localhost")


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "replace").strip()


async def _deny(scope, send, denied: Denied) -> None:
    scope.setdefault("state", {}).setdefault("log", {})["error"] = f"auth {denied.status}"
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    kinds = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
    if denied.status == 303:  # a browser sent to sign in
        response = Response(status_code=303, headers=denied.headers)
        await response(scope, None, send)
        return
    kind = kinds.get(denied.status, "invalid_request_error")
    response = error(denied.status, str(denied), kind, code=denied.code)
    response.headers.update(denied.headers)
    await response(scope, None, send)


def _referer_origin(referer: str) -> str:
    """scheme://host[:port] of a Referer URL ("" if it is not one)."""
    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
