"""RAG_AUTH=header over real HTTP: the user a trusted proxy signed in is honoured, the same
headers from anyone else are not. (The proxy is played by the test client; the server sees
it at 127.0.0.1, which is or is not in the trusted list.)"""

from urllib.parse import quote

import pytest
from fastapi import Request

from rag.api import create_app
from rag.api.auth import RemoteUser, trusted_networks
from tests.conftest import serving
from ui import check_exposure

QUESTION = {"question": "莱芜区上半年实际使用外资多少？"}
# A proxy may percent-encode a name or pass it as raw UTF-8: both are read.
ZHANG = {"X-Remote-User": quote("张三"), "X-Remote-Groups": "招商科, 信息中心".encode()}


def served(assistant, trusted: str):
    seen = []
    app = create_app(lambda: assistant)

    @app.get("/api/whoami")  # what the app was told, to check what reached it
    def whoami(request: Request):
        seen.append(dict(request.headers))
        return {
            "user": request.scope["state"].get("user"),
            "groups": request.scope["state"].get("groups"),
        }

    return serving(RemoteUser(app, trusted, "X-Remote-User", "X-Remote-Groups")), seen


def test_the_user_from_a_trusted_proxy_is_honoured(assistant):
    server, _ = served(assistant, "127.0.0.1")
    with server as api:
        assert api.get("/api/whoami", headers=ZHANG).json() == {
            "user": "张三",
            "groups": ["招商科", "信息中心"],
        }
        answer = api.post("/api/ask", json=QUESTION, headers=ZHANG)
        assert answer.status_code == 200 and "3227万美元" in answer.json()["answer"]
        refused = api.post("/api/ask", json=QUESTION)  # the proxy let nobody through
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"
        assert api.get("/healthz").status_code == 200  # probes skip the proxy


def test_the_same_headers_from_an_untrusted_address_are_ignored(assistant):
    server, seen = served(assistant, "10.0.0.1")
    with server as api:
        forged = api.post("/api/ask", json=QUESTION, headers=ZHANG)
        assert forged.status_code == 401
        assert api.get("/api/whoami", headers=ZHANG).status_code == 401
        assert seen == []  # the app never saw the forged request


def test_trusted_addresses_accept_networks_and_any():
    assert trusted_networks("*") is None
    proxy = RemoteUser(None, "127.0.0.1, 10.0.0.0/8", "X-Remote-User", "X-Remote-Groups")
    assert proxy.believes("10.1.2.3") and proxy.believes("127.0.0.1")
    assert not proxy.believes("192.168.1.5") and not proxy.believes("")


def test_header_mode_may_listen_beyond_loopback():
    check_exposure("0.0.0.0", insecure_no_auth=False, auth="header")


@pytest.mark.parametrize("path", ["/", "/admin", "/api/documents", "/v1/chat/completions"])
def test_every_page_and_route_needs_the_user(assistant, path):
    server, _ = served(assistant, "127.0.0.1")
    with server as api:
        assert api.get(path).status_code == 401
