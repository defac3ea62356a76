"""The /v1 API driven by the official `openai` client, as chat apps built on it do, over
real HTTP: a uvicorn server on a free port in front of the real index, which holds the
shipped corpus in two knowledge bases (政策: the policies; 内部资料: the news article,
whose figure 3227万美元 no reader of 政策 may see). Callers sign in with API keys, as a
chat app would; every refusal must reach the client as the `openai` exception for its
status, carrying our message."""

import time

import httpx
import openai
import pytest
from openai import OpenAI

from rag.access import Grants, Role
from rag.api import create_app
from rag.api.auth import AuthConfig
from rag.api.oidc import OidcConfig
from rag.keys import KeyStore
from tests.conftest import serving

LAIWU = "莱芜区上半年实际使用外资多少？"  # answered only by the 内部资料 article
SECRET = "3227万美元"
RENT = "在明川区写字楼租办公室，第一年租金补贴多少？"  # answered by 政策


class Keys:
    def __init__(self, store: KeyStore):
        self.store = store

    def create(self, name: str, role=Role.READER, kbs=None, **kw) -> str:
        return self.store.create(name, role, frozenset(kbs) if kbs else None, **kw)[1]


@pytest.fixture(scope="module")
def server(two_kb_assistant, tmp_path_factory):
    """The app as `rag serve` runs it with sign-in on (keys; the proxy's headers unused)."""
    root = tmp_path_factory.mktemp("openai")
    keys = KeyStore(root / "keys.sqlite")
    auth = AuthConfig(mode="header", grants=Grants(root / "grants.toml"), keys=keys)
    with serving(create_app(lambda: two_kb_assistant, auth=auth)) as api:
        yield str(api.base_url), Keys(keys)


@pytest.fixture(scope="module")
def admin(server) -> OpenAI:
    url, keys = server
    return OpenAI(base_url=f"{url}/v1", api_key=keys.create("admin", Role.ADMIN), max_retries=0)


@pytest.fixture(scope="module")
def reader(server) -> OpenAI:
    """A key that may read 政策 only."""
    url, keys = server
    return OpenAI(base_url=f"{url}/v1", api_key=keys.create("reader", kbs=["政策"]), max_retries=0)


def ask(client: OpenAI, question: str, model="policy-rag", **kw):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], **kw
    )


# -- models -----------------------------------------------------------------------------


def test_models_are_one_per_knowledge_base_the_caller_may_read(admin, reader):
    models = list(admin.models.list())
    assert [m.id for m in models] == ["policy-rag", "policy-rag:内部资料", "policy-rag:政策"]
    assert {(m.object, m.owned_by) for m in models} == {("model", "policy-rag")}
    assert all(abs(m.created - time.time()) < 3600 for m in models)
    assert models[2].model_extra == {"name": "招商政策问答 · 政策", "kb": "政策"}
    assert [m.id for m in reader.models.list()] == ["policy-rag", "policy-rag:政策"]


def test_a_model_is_retrieved_by_its_id_percent_encoded_in_the_path(admin, reader):
    raw = admin.models.with_raw_response.retrieve("policy-rag:政策")
    assert "/v1/models/policy-rag:%E6%94%BF%E7%AD%96" in str(raw.http_request.url)
    model = raw.parse()
    assert model.id == "policy-rag:政策" and model.model_extra["kb"] == "政策"
    assert admin.models.retrieve("policy-rag").model_extra["kb"] is None
    with pytest.raises(openai.NotFoundError) as missing:
        admin.models.retrieve("gpt-4o")
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    assert "no model 'gpt-4o'" in missing.value.message
    with pytest.raises(openai.NotFoundError):
        admin.models.retrieve("policy-rag:没有这个库")
    with pytest.raises(openai.PermissionDeniedError) as hidden:
        reader.models.retrieve("policy-rag:内部资料")
    assert "no access to knowledge base '内部资料'" in hidden.value.message


# -- chat completions -------------------------------------------------------------------


def test_a_completion_is_complete_as_clients_parse_it(admin):
    """Sampling parameters are accepted and ignored: the answer is the documents'."""
    before = int(time.time())
    done = ask(
        admin,
        LAIWU,
        model="policy-rag:内部资料",
        temperature=0.3,
        top_p=0.9,
        max_tokens=16,
        seed=7,
        user="张三",
    )
    assert done.id.startswith("chatcmpl-") and done.object == "chat.completion"
    assert before <= done.created <= time.time() and done.model == "policy-rag:内部资料"
    assert done.system_fingerprint.startswith("policy-rag-gen")
    (choice,) = done.choices
    content = choice.message.content
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert SECRET in content and "[1]" in content and "来源：" in content
    assert len(content) > 16  # max_tokens does not cut off the answer or its sources
    # Usage in characters: the question sent, the content returned.
    assert done.usage.prompt_tokens == len(LAIWU)
    assert done.usage.completion_tokens == len(content)
    assert done.usage.total_tokens == len(LAIWU) + len(content)
    citations = done.model_extra["citations"]
    assert citations[0]["n"] == 1 and citations[0]["kb"] == "内部资料"
    assert done.model_extra["refused"] is False


def test_the_model_picks_the_knowledge_base_searched(admin):
    everything = ask(admin, LAIWU).choices[0].message.content
    assert SECRET in everything
    policies = ask(admin, LAIWU, model="policy-rag:政策")
    assert SECRET not in str(policies.model_dump())
    assert {c["kb"] for c in policies.model_extra["citations"]} <= {"政策"}
    rent = ask(admin, RENT, model="policy-rag:政策")
    assert "50%" in rent.choices[0].message.content


def test_a_streamed_completion_ends_with_its_usage_when_asked(admin):
    chunks = list(
        ask(admin, LAIWU, stream=True, stream_options={"include_usage": True}, temperature=0)
    )
    *answer, finish, last = chunks
    text = "".join(c.choices[0].delta.content or "" for c in answer)
    assert SECRET in text and "来源：" in text
    assert {c.id for c in chunks} == {chunks[0].id} and {c.model for c in chunks} == {"policy-rag"}
    assert finish.choices[0].finish_reason == "stop" and finish.model_extra["citations"]
    assert all(c.usage is None for c in [*answer, finish])  # null until the last, as OpenAI
    assert last.choices == []
    assert last.usage.prompt_tokens == len(LAIWU) and last.usage.completion_tokens == len(text)
    assert last.usage.total_tokens == len(LAIWU) + len(text)


def test_a_streamed_completion_has_no_usage_chunk_unless_asked(admin):
    chunks = list(ask(admin, RENT, stream=True))
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None and c.choices for c in chunks)


def test_follow_ups_in_the_messages_keep_their_subject(admin):
    first = ask(admin, LAIWU).choices[0].message.content
    followed = admin.chat.completions.create(
        model="policy-rag",
        messages=[
            {"role": "system", "content": "你是招商助手"},
            {"role": "user", "content": LAIWU},
            {"role": "assistant", "content": first},
            {"role": "user", "content": [{"type": "text", "text": "那欧美资金呢？"}]},
        ],
    )
    assert "3008万美元" in followed.choices[0].message.content
    sent = len("你是招商助手") + len(LAIWU) + len(first) + len("那欧美资金呢？")
    assert followed.usage.prompt_tokens == sent


# -- refusals, as the client's exceptions -----------------------------------------------


def test_a_knowledge_base_not_granted_is_refused_by_model_as_by_kb(reader):
    for model in ("policy-rag:内部资料", "policy-rag:没有这个库"):  # existing or not: the same
        with pytest.raises(openai.PermissionDeniedError) as refused:
            ask(reader, LAIWU, model=model)
        assert refused.value.status_code == 403 and refused.value.param == "model"
        assert refused.value.type == "permission_error" and SECRET not in str(refused.value.body)
    with pytest.raises(openai.PermissionDeniedError):
        ask(reader, LAIWU, extra_body={"kb": "内部资料"})
    assert SECRET not in ask(reader, LAIWU).choices[0].message.content


def test_an_unknown_model_is_a_404_model_not_found(admin):
    for model in ("gpt-4o", "policy-rag:没有这个库", "policy-rag:"):
        with pytest.raises(openai.NotFoundError) as missing:
            ask(admin, LAIWU, model=model)
        assert missing.value.code == "model_not_found", model
        assert f"no model {model!r}" in missing.value.message


@pytest.mark.parametrize(
    ("params", "param", "says"),
    [
        ({"n": 2}, "n", "n must be 1"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
                "tool_choice": "required",
            },
            "tool_choice",
            "calls no tools",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format",
            "answers are text",
        ),
        ({"logprobs": True}, "logprobs", "not sampled"),
        (
            {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}},
            "modalities",
            "text only",
        ),
        ({"extra_body": {"modalities": [{"type": "image"}]}}, "modalities", "text only"),
        ({"extra_body": {"kb": "内部资料"}, "model": "policy-rag:政策"}, "kb", 'drop "kb"'),
    ],
)
def test_parameters_that_ignoring_would_mislead_are_a_400(admin, params, param, says):
    with pytest.raises(openai.BadRequestError) as refused:
        ask(admin, RENT, **{"model": "policy-rag", **params})
    assert refused.value.param == param and says in refused.value.message


def test_tools_offered_but_not_required_are_ignored(admin):
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    done = ask(admin, RENT, tools=[tool], tool_choice="auto", parallel_tool_calls=False)
    assert "50%" in done.choices[0].message.content and not done.choices[0].message.tool_calls


def test_a_bad_conversation_is_a_400_with_our_message(admin):
    with pytest.raises(openai.BadRequestError) as refused:
        admin.chat.completions.create(
            model="policy-rag", messages=[{"role": "assistant", "content": "你好"}]
        )
    assert "the last message must come from the user" in refused.value.message
    with pytest.raises(openai.BadRequestError) as empty:
        ask(admin, "   ", stream=True)  # refused before the stream starts
    assert "the question is empty" in empty.value.message


def test_a_wrong_key_is_an_authentication_error(server):
    url, _ = server
    wrong = OpenAI(base_url=f"{url}/v1", api_key="rag_" + "x" * 43, max_retries=0)
    for call in (lambda: wrong.models.list(), lambda: ask(wrong, RENT)):
        with pytest.raises(openai.AuthenticationError) as refused:
            call()
        assert refused.value.code == "invalid_api_key"
        assert "the API key is unknown, expired or revoked" in refused.value.message


def test_a_key_over_its_rate_gets_a_rate_limit_error(server):
    url, keys = server
    busy = OpenAI(
        base_url=f"{url}/v1",
        api_key=keys.create("busy", kbs=["政策"], rate="2/minute"),
        max_retries=0,
    )
    ask(busy, RENT)
    ask(busy, RENT)
    with pytest.raises(openai.RateLimitError) as limited:
        ask(busy, RENT)
    assert limited.value.code == "rate_limit_exceeded"
    assert "rate limit 2/minute reached" in limited.value.message
    assert int(limited.value.response.headers["Retry-After"]) >= 1
    assert [m.id for m in busy.models.list()] == ["policy-rag", "policy-rag:政策"]  # GETs


def test_a_route_we_do_not_have_is_an_openai_404(admin):
    with pytest.raises(openai.NotFoundError) as missing:
        admin.embeddings.create(model="policy-rag", input="飞地")
    assert missing.value.message.endswith("Invalid URL (POST /v1/embeddings)")


def test_a_malformed_request_is_a_400_naming_the_field(server, admin):
    url, keys = server
    key = {"Authorization": f"Bearer {keys.create('raw', kbs=['政策'])}"}
    for body, param in [
        ({"messages": [{"role": "wizard", "content": "外资"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": "外资"}], "stream": "yes"}, "stream"),
        ({"messages": []}, "messages"),
    ]:
        r = httpx.post(f"{url}/v1/chat/completions", json=body, headers=key)
        assert r.status_code == 400, body
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert r.json()["error"]["param"] == param


def test_v1_callers_are_asked_for_a_key_never_sent_to_sign_in(two_kb_assistant, tmp_path):
    """With OIDC sign-in, a page opened without a session goes to the provider; a chat app
    calling /v1 (some send a browser's Accept) gets the 401 its client raises instead.
    The provider is never contacted in this test: its address leads nowhere."""
    auth = AuthConfig(
        mode="oidc",
        grants=Grants(tmp_path / "grants.toml"),
        keys=KeyStore(tmp_path / "keys.sqlite"),
        oidc=OidcConfig("http://127.0.0.1:9", "policy-rag", "secret"),
        secret=b"s" * 32,
    )
    with serving(create_app(lambda: two_kb_assistant, auth=auth)) as api:
        browser = {"Accept": "text/html,application/json"}
        assert api.get("/api/kbs", headers=browser).status_code == 303
        client = OpenAI(base_url=f"{api.base_url}/v1", api_key="unsent", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:  # no Authorization at all
            client.models.list(extra_headers={**browser, "Authorization": openai.omit})
        assert refused.value.message.endswith("send an API key: Authorization: Bearer rag_…")
