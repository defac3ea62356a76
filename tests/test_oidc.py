"""RAG_AUTH=oidc against a real OpenID Connect provider the tests start: panva's
oidc-provider (certified by the OpenID Foundation) run by node from tests/oidc, offline.
The user signs in on its login form as a browser would (the forms are posted by httpx),
with authorization code + PKCE; groups come in the "groups" claim and the grants file
maps them to knowledge bases."""

import re
import subprocess
import time
from urllib.parse import urljoin

import httpx
import pytest

from rag.access import Grants
from rag.api import create_app
from rag.api.auth import AuthConfig
from rag.api.oidc import OidcConfig, claimed_groups, local_path
from rag.jobs import JobQueue
from tests.conftest import REPO, free_port, serving

PROVIDER = REPO / "tests" / "oidc"
LAIWU = "莱芜区上半年实际使用外资多少？"  # answered only from 内部资料
SECRET = "3227万美元"
GRANTS = """
[groups."招商科"]
role = "reader"
kbs = ["政策"]

[groups."信息中心"]
role = "admin"
"""


@pytest.fixture
def app_port() -> int:
    return free_port()


@pytest.fixture
def provider(app_port):
    """The provider on a free port, knowing this test's app as client `policy-rag`."""
    if not (PROVIDER / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(
            "the test provider is not installed: npm ci --prefix tests/oidc (make test does)"
        )
    port = free_port()
    proc = subprocess.Popen(
        ["node", "provider.mjs", str(port), f"http://127.0.0.1:{app_port}/auth/callback"],
        cwd=PROVIDER,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{issuer}/.well-known/openid-configuration").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"the OIDC provider did not start: {proc.stdout.read()}")
    yield issuer
    proc.terminate()
    proc.wait(10)


def app(assistant, tmp_path, issuer: str, session_seconds: int = 3600, secure: bool = False):
    (tmp_path / "grants.toml").write_text(GRANTS, "utf-8")
    auth = AuthConfig(
        mode="oidc",
        grants=Grants(tmp_path / "grants.toml"),
        oidc=OidcConfig(issuer, "policy-rag", "test-secret", session_seconds=session_seconds),
        secret=b"s" * 32,
        secure_cookie=secure,
    )
    (tmp_path / "jobs").mkdir(exist_ok=True)
    jobs = JobQueue(assistant.retriever.index, tmp_path / "jobs", 300, 60)  # not started
    return create_app(lambda: assistant, jobs=jobs, data_dir=tmp_path, auth=auth)


def sign_in(api: httpx.Client, user: str, next_path: str = "/api/kbs") -> httpx.Response:
    """Through the provider's own pages, as a browser: follow redirects, fill in the login
    form (any password), confirm consent; returns the app's last answer."""
    response = api.get("/auth/login", params={"next": next_path})
    for _ in range(20):
        if response.is_redirect:
            response = api.get(urljoin(str(response.url), response.headers["location"]))
            continue
        form = re.search(r'<form[^>]*action="([^"]+)"', response.text)
        if not form:
            return response
        prompt = re.search(r'name="prompt" value="(\w+)"', response.text)[1]
        data = (
            {"prompt": prompt, "login": user, "password": "any"}
            if prompt == "login"
            else {"prompt": prompt}
        )
        response = api.post(urljoin(str(response.url), form[1]), data=data)
    raise AssertionError("sign-in did not finish")


def test_sign_in_maps_the_providers_groups_to_knowledge_bases(
    two_kb_assistant, tmp_path, provider, app_port
):
    with serving(app(two_kb_assistant, tmp_path, provider), app_port) as api:
        landed = sign_in(api, "wangwu")  # group 招商科: reader of 政策
        assert landed.status_code == 200 and str(landed.url).endswith("/api/kbs")
        assert [kb["name"] for kb in landed.json()] == ["政策"]
        asked = api.post("/api/ask", json={"question": LAIWU}).json()
        assert SECRET not in str(asked) and {c["kb"] for c in asked["citations"]} <= {"政策"}
        assert api.post("/api/ask", json={"question": LAIWU, "kb": "内部资料"}).status_code == 403
        api.cookies.clear()
        sign_in(api, "zhangsan")  # group 信息中心: admin
        assert SECRET in api.post("/api/ask", json={"question": LAIWU}).json()["answer"]
        api.cookies.clear()
        sign_in(api, "zhaoliu")  # signed in, no group with a grant
        assert api.post("/api/ask", json={"question": LAIWU}).status_code == 403


def test_a_page_without_a_session_is_sent_to_sign_in_and_an_api_call_gets_401(
    two_kb_assistant, tmp_path, provider, app_port
):
    with serving(app(two_kb_assistant, tmp_path, provider), app_port) as api:
        page = api.get("/admin?tab=jobs", headers={"Accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == "/auth/login?next=%2Fadmin%3Ftab%3Djobs"
        refused = api.post("/api/ask", json={"question": LAIWU})
        assert refused.status_code == 401 and "/auth/login" in refused.json()["error"]["message"]
        api.cookies.set("rag_session", "eyJ1c2VyIjogImFkbWluIn0=.forged.sig")
        assert api.post("/api/ask", json={"question": LAIWU}).status_code == 401


def test_logout_ends_the_session_here_and_at_the_provider(
    two_kb_assistant, tmp_path, provider, app_port
):
    with serving(app(two_kb_assistant, tmp_path, provider), app_port) as api:
        sign_in(api, "wangwu")
        assert api.get("/api/kbs").status_code == 200
        out = api.get("/auth/logout")
        assert out.status_code == 303 and out.headers["location"].startswith(
            f"{provider}/session/end?"
        )
        assert api.get("/api/kbs").status_code == 401  # ended here at once
        # At the provider: its "sign out?" form, confirmed, sends the user back to us.
        page = api.get(out.headers["location"])
        form = re.search(r'<form[^>]*action="([^"]+)"', page.text)[1]
        hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.text))
        done = api.post(urljoin(str(page.url), form), data={**hidden, "logout": "yes"})
        while done.is_redirect:
            done = api.get(urljoin(str(done.url), done.headers["location"]))
        assert str(done.url) == f"http://127.0.0.1:{app_port}/auth/signed-out"
        assert "已退出登录" in done.text
        again = api.get("/auth/login")  # the provider asks for the password again
        while again.is_redirect:
            again = api.get(urljoin(str(again.url), again.headers["location"]))
        assert 'name="prompt" value="login"' in again.text


def test_an_expired_session_is_refused(two_kb_assistant, tmp_path, provider, app_port):
    with serving(app(two_kb_assistant, tmp_path, provider, session_seconds=2), app_port) as api:
        sign_in(api, "wangwu")
        assert api.get("/api/kbs").status_code == 200
        time.sleep(2.5)
        expired = api.get("/api/kbs")
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]


def test_a_cross_site_change_in_a_signed_in_users_name_is_refused(
    two_kb_assistant, tmp_path, provider, app_port
):
    with serving(app(two_kb_assistant, tmp_path, provider), app_port) as api:
        sign_in(api, "zhangsan")
        evil = api.post(
            "/api/ask", json={"question": LAIWU}, headers={"Origin": "http://evil.example"}
        )
        assert evil.status_code == 403 and SECRET not in evil.text


def test_after_sign_in_the_user_lands_only_on_this_site(
    two_kb_assistant, tmp_path, provider, app_port
):
    with serving(app(two_kb_assistant, tmp_path, provider), app_port) as api:
        landed = sign_in(api, "wangwu", next_path="//evil.example/steal")
        assert str(landed.url) == f"http://127.0.0.1:{app_port}/"


def test_groups_as_providers_send_them():
    assert claimed_groups(["/招商局/招商科", "信息中心"]) == ["招商科", "信息中心"]
    assert claimed_groups("招商科, 信息中心") == ["招商科", "信息中心"]
    assert claimed_groups(None) == []
    assert local_path("/admin?tab=1") == "/admin?tab=1"
    assert local_path("https://evil.example") == local_path("//evil.example") == "/"


def test_over_https_the_session_cookie_also_works_in_a_portals_iframe(
    two_kb_assistant, tmp_path, provider, app_port
):
    """A cross-origin iframe gets its cookie only with SameSite=None, which needs Secure."""
    with serving(app(two_kb_assistant, tmp_path, provider, secure=True), app_port) as api:
        cookie = api.get("/auth/login").headers["set-cookie"].lower()
        assert cookie.startswith("rag_session=") and "samesite=none" in cookie
        assert "secure" in cookie and "httponly" in cookie
    with serving(app(two_kb_assistant, tmp_path, provider), app_port) as api:
        assert "samesite=lax" in api.get("/auth/login").headers["set-cookie"].lower()
