"""Sign-in through an OpenID Connect provider (`RAG_AUTH=oidc`): Keycloak, Authing, a
企业微信/钉钉 gateway, Azure AD … with authlib: authorization code with PKCE, the user's
name and groups from configurable claims (the ID token's, then the userinfo endpoint's),
a signed session cookie that ends after `session_seconds`, and logout at the provider.

/auth/login → the provider → /auth/callback → the page the user came for. The sign-in
layer (rag.api.auth) reads the session; a browser that has none is sent to /auth/login.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rag.api.errors import error

log = logging.getLogger("rag.auth")

MAX_GROUPS = 100


@dataclass(frozen=True)
class OidcConfig:
    issuer: str  # its discovery document is at {issuer}/.well-known/openid-configuration
    client_id: str
    client_secret: str = ""  # "" = a public client (PKCE alone)
    scopes: str = "openid profile"
    user_claim: str = "preferred_username"  # falls back to "sub"
    groups_claim: str = "groups"
    session_seconds: int = 8 * 3600


def local_path(target: str) -> str:
    """`target` if it is a path on this site, else "/": the login's `next` must not send
    the user to another site (an open redirect)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def claimed_groups(value) -> list[str]:
    """Groups as providers send them: a list, or one comma-separated string; Keycloak's
    full paths ("/招商局/招商科") count by their last part."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [str(g).strip().rstrip("/").rsplit("/", 1)[-1] for g in items if str(g).strip("/ ")]


def oidc_router(config: OidcConfig) -> APIRouter:
    oauth = OAuth()
    provider = oauth.register(
        "provider",
        server_metadata_url=f"{config.issuer.rstrip('/')}/.well-known/openid-configuration",
        client_id=config.client_id,
        client_secret=config.client_secret or None,
        client_kwargs={"scope": config.scopes, "code_challenge_method": "S256"},
    )
    router = APIRouter()

    def site(request: Request, path: str) -> str:
        return str(request.base_url).rstrip("/") + path

    @router.get("/auth/login", include_in_schema=False)
    async def login(request: Request, next: str = "/") -> Response:
        request.session["next"] = local_path(next)
        try:
            return await provider.authorize_redirect(request, site(request, "/auth/callback"))
        except Exception as exc:  # the provider is down or its discovery document is wrong
            log.error("oidc: cannot reach the provider at %s: %s", config.issuer, exc)
            return error(502, f"the sign-in provider did not answer ({type(exc).__name__})")

    @router.get("/auth/callback", include_in_schema=False)
    async def callback(request: Request) -> Response:
        try:
            token = await provider.authorize_access_token(request)
            claims = dict(token.get("userinfo") or {})
            if provider.server_metadata.get("userinfo_endpoint"):
                claims.update(await provider.userinfo(token=token))
        except OAuthError as exc:
            log.warning("oidc: sign-in refused: %s", exc.error)
            return error(
                401, f"sign-in failed: {exc.description or exc.error}", "authentication_error"
            )
        user = str(claims.get(config.user_claim) or claims.get("sub") or "")
        if not user:
            return error(401, "the provider named no user", "authentication_error")
        next_path = request.session.get("next", "/")
        request.session.clear()  # authlib's state and PKCE verifier are spent
        # A cookie holds 4 KB: no ID token (logout names the client instead), and no
        # more groups than a grants file would name.
        request.session.update(
            user=user,
            groups=claimed_groups(claims.get(config.groups_claim))[:MAX_GROUPS],
            expires=time.time() + config.session_seconds,
        )
        log.info("oidc: %s signed in", user)
        return RedirectResponse(site(request, next_path), status_code=303)

    @router.get("/auth/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        """Ends the session here, then at the provider (its end-session endpoint), which
        sends the user back to /auth/signed-out."""
        request.session.clear()
        signed_out = site(request, "/auth/signed-out")
        try:
            metadata = await provider.load_server_metadata()
        except Exception as exc:
            log.error("oidc: signed out here only, the provider did not answer: %s", exc)
            return RedirectResponse(signed_out, status_code=303)
        end = metadata.get("end_session_endpoint")
        if not end:
            return RedirectResponse(signed_out, status_code=303)
        query = {"client_id": config.client_id, "post_logout_redirect_uri": signed_out}
        return RedirectResponse(f"{end}?{urlencode(query)}", status_code=303)

    @router.get("/auth/signed-out", include_in_schema=False)
    def signed_out() -> HTMLResponse:
        return HTMLResponse(
            '<!DOCTYPE html><html lang="zh-CN"><meta charset="utf-8"><title>已退出</title>'
            '<p>已退出登录。<a href="./login">重新登录</a></p></html>'
        )

    return router
