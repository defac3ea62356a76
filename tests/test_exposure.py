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
