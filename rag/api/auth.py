"""Who is asking: the user the portal's reverse proxy signed in (`RAG_AUTH=header`).

The portal already knows its users; its proxy signs them in and passes the name (and the
groups) in headers. Those headers are believed only from the proxy's address: anyone who
reaches the port directly could send them too.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote

from rag.api import _error  # the API's one error shape

# Probes an orchestrator sends straight to the port, without the proxy.
OPEN_PATHS = ("/healthz", "/readyz")


def trusted_networks(spec: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | None:
    """`RAG_FORWARDED_ALLOW_IPS` ("127.0.0.1,10.0.0.0/8"; "*" = any) as networks (None = any)."""
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if "*" in items:
        return None
    return [ipaddress.ip_network(item, strict=False) for item in items]


class RemoteUser:
    """`X-Remote-User` / `X-Remote-Groups` (names configurable; values UTF-8, percent-
    encoding undone, groups comma-separated) from a trusted proxy become the request's
    user: `scope["state"]["user"]` and `["groups"]`. From any other address they are
    removed before the app sees the request. A request without a believed user gets 401
    (its WebSocket is closed), except the health probes.

    Wrap it around the app outside uvicorn's own proxy-header handling: it must see the
    address the connection really comes from."""

    def __init__(self, app, trusted: str, user_header: str, groups_header: str):
        self.app = app
        self.trusted = trusted_networks(trusted)
        self.user_header = user_header.lower().encode("latin-1")
        self.groups_header = groups_header.lower().encode("latin-1")

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
        peer = (scope.get("client") or ("",))[0]
        believed = self.believes(peer)
        user = _value(sent.get(self.user_header)) if believed else ""
        groups = _value(sent.get(self.groups_header)) if believed else ""
        headers = [
            (k, v) for k, v in scope["headers"] if k not in (self.user_header, self.groups_header)
        ]
        scope = {**scope, "headers": headers}
        if user:
            scope["state"] = {
                **scope.get("state", {}),
                "user": user,
                "groups": [g.strip() for g in groups.split(",") if g.strip()],
            }
        elif not scope["path"].rstrip("/").endswith(OPEN_PATHS):
            await _unauthorized(scope, send)
            return
        await self.app(scope, receive, send)


def _value(raw: bytes | None) -> str:
    return unquote((raw or b"").decode("utf-8", "replace")).strip()


async def _unauthorized(scope, send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    message = "sign in through the portal: no user came with this request"
    await _error(401, message, "authentication_error")(scope, None, send)
