"""Without sign-in the server stays on loopback unless told otherwise on purpose."""

import pytest

from tests.conftest import run_rag
from ui import Unprotected, check_exposure


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
def test_loopback_needs_nothing(host):
    check_exposure(host, insecure_no_auth=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "rag.intra"])
def test_any_other_address_needs_the_insecure_flag(host):
    with pytest.raises(Unprotected, match="--insecure-no-auth"):
        check_exposure(host, insecure_no_auth=False)
    check_exposure(host, insecure_no_auth=True)


def test_rag_serve_refuses_a_public_address_with_a_clear_message(tmp_path):
    result = run_rag("serve", "--host", "0.0.0.0", env={"RAG_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr and "Traceback" not in result.stderr


QUESTION = {"question": "莱芜区上半年实际使用外资多少？"}


def test_a_page_on_another_site_cannot_change_or_read_a_loopback_server(assistant):
    """Without sign-in the browser on this machine is the only caller, so any site the
    user visits could send it a form (CSRF), or point its own name at 127.0.0.1 and read
    it as its own origin (DNS rebinding). Both are refused; a proxy's name is allowed
    when listed."""
    from rag.api import create_app
    from rag.api.auth import AuthConfig
    from tests.conftest import serving

    auth = AuthConfig(loopback_only=True, allowed_hosts=frozenset({"rag.intra"}))
    with serving(create_app(lambda: assistant, auth=auth)) as api:
        assert api.post("/api/ask", json=QUESTION).status_code == 200
        cross_site = api.post("/api/ask", json=QUESTION, headers={"Origin": "http://evil.example"})
        assert cross_site.status_code == 403 and "cross-site" in cross_site.text
        same_site = api.post("/api/ask", json=QUESTION, headers={"Origin": str(api.base_url)})
        assert same_site.status_code == 200
        rebound = api.get("/healthz", headers={"Host": "evil.example:7860"})
        assert rebound.status_code == 200  # the probes stay open
        rebound = api.post("/api/ask", json=QUESTION, headers={"Host": "evil.example:7860"})
        assert rebound.status_code == 403 and "RAG_ALLOWED_HOSTS" in rebound.text
        assert api.get("/widget.js", headers={"Host": "evil.example"}).status_code == 200
        assert api.get("/api/openapi.json", headers={"Host": "evil.example"}).status_code == 403
        listed = api.post("/api/ask", json=QUESTION, headers={"Host": "rag.intra"})
        assert listed.status_code == 200
