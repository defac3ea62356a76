"""The one settings object: `RAG_*` environment variables, then `rag.toml` (or the file
`RAG_CONFIG` names), then defaults.

Every knob has a working offline default. Built at the edges (CLI, app, eval runner) and
passed down as typed values; nothing in `rag/` reads the environment by itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.e5_bundle import BUNDLED_E5
from rag.keys import parse_rate


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_", toml_file="rag.toml", extra="ignore", enable_decoding=False
    )

    data_dir: Path = Field(Path("data"), description="index, manifest and materialised model")
    corpus_dir: Path = Field(Path("corpus"), description="what `rag ingest` reads by default")
    collection: str = Field("corpus", description="name of the index within the data dir")
    chroma_url: str = Field("", description="empty = embedded Chroma; http://host:port = server")

    embedding_model: str = Field(
        BUNDLED_E5, description="Hugging Face id or local folder; default: the bundled e5-small"
    )
    query_prefix: str | None = Field(None, description="None = 'query: ' for e5 models, else ''")
    passage_prefix: str | None = Field(None, description="None = 'passage: ' for e5, else ''")
    embed_batch_size: int = Field(32, ge=1, le=1024)
    embed_backend: Literal["openvino", "onnx", "torch"] = Field(
        "openvino",
        description="openvino / onnx: the model exported to ONNX once, run by OpenVINO "
        "(bfloat16 where the CPU has it) or ONNX Runtime; torch: sentence-transformers",
    )

    chunk_size: int = Field(300, ge=50, le=4000, description="characters per chunk")
    chunk_overlap: int = Field(60, ge=0, le=1000, description="characters repeated between chunks")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size "
                f"({self.chunk_size})"
            )
        return self

    commit_chunks: int = Field(
        2000,
        ge=1,
        le=1_000_000,
        description="a long ingest publishes what it has every this many chunks (and every "
        "minute): readers see it sooner, a killed run keeps it; a publish rewrites the "
        "lexical index, so on a big index publishes are spaced by ten times their cost",
    )

    rerank_model: str = Field(
        "",
        description="empty = no reranking; a local sentence-transformers CrossEncoder folder "
        "(e.g. bge-reranker-base) that reorders the retrieved passages",
    )
    k: int = Field(5, ge=1, le=50, description="passages an answer may quote")
    answer_max_chars: int = Field(300, ge=20, le=4000, description="length budget of an answer")
    refusal_threshold: float = Field(
        0.86,
        description="evidence below this → 知识库中没有找到…; calibrated for the bundled e5 "
        "(bench/README.md): recalibrate with `make bench-quality` for another model",
    )
    max_question_chars: int = Field(500, ge=10, le=10000)
    reader: str = Field(
        "bundled",
        description="the reading model that finds the answer's span: bundled (trained by "
        "this project, shipped in rag/models/reader-model), none (answers are sentence excerpts, "
        "as before the reader), or the folder of another one `make model` wrote",
    )
    reader_passages: int = Field(
        5, ge=1, le=20, description="passages the reading model reads for an answer"
    )
    # 0: the shipped model's confidence is no refusal signal on policy text (at 0.05 it
    # refuses 31% of answerable policy-dev questions and still answers 28% of those whose
    # gold passages are gone: bench/README.md, "Reading model"); refusal rests on the
    # excerpt evidence (refusal_threshold) and on document numbers no document bears.
    reader_refusal_threshold: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="the reading model's confidence below which a question is refused "
        "(0 = not used; trade-off table in bench/README.md)",
    )

    llm_base_url: str = Field(
        "",
        description="empty = extractive answers; else an OpenAI-compatible endpoint, "
        "e.g. http://127.0.0.1:11434/v1 (Ollama) or http://gpu01:8000/v1 (vLLM)",
    )
    llm_model: str = Field("", description="the model name the endpoint serves")
    llm_api_key: str = Field("", description="sent as a bearer token; local servers ignore it")
    llm_timeout: float = Field(
        60.0,
        gt=0,
        le=600,
        description="seconds an LLM answer may take before the extractive answer is given instead",
    )
    llm_temperature: float = Field(0.1, ge=0, le=2)
    prompts_dir: Path = Field(Path("prompts"), description="the LLM's prompt templates")

    host: str = Field("127.0.0.1", description="where `rag serve` listens")
    port: int = Field(7860, ge=1, le=65535)
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="portal origins allowed to call the API (CORS) and frame the chat (CSP "
        "frame-ancestors), e.g. http://portal.intra:8080; comma-separated or a JSON list",
    )
    stall_seconds: float = Field(
        300,
        ge=5,
        description="a model call or the event loop stuck this long fails /healthz, and the "
        "server exits (status 70) so that its service manager restarts it",
    )
    concurrency: int = Field(
        8,
        ge=1,
        le=64,
        description="chat answers worked on at once (the model itself runs one call at a "
        "time; the rest of an answer, and waiting for an LLM, overlap)",
    )
    max_body_bytes: int = Field(
        2**20,
        ge=1024,
        description="largest request body a route other than document upload accepts (413 beyond)",
    )
    root_path: str = Field("", description="sub-path behind a reverse proxy, e.g. /rag")
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="proxies whose X-Forwarded-* (and, with auth = header, user) headers are trusted",
    )
    auth: Literal["none", "header", "oidc"] = Field(
        "none",
        description="none: no sign-in, loopback only; header: the portal's reverse proxy "
        "signs users in and passes auth_user_header / auth_groups_header; oidc: users sign "
        "in at an OpenID Connect provider (oidc_issuer)",
    )
    oidc_issuer: str = Field("", description="the provider, e.g. https://sso.intra/realms/gov")
    oidc_client_id: str = Field("", description="this app's client id at the provider")
    oidc_client_secret: str = Field("", description="its secret; empty = a public client")
    oidc_scopes: str = Field("openid profile", description="scopes asked for at sign-in")
    oidc_user_claim: str = Field("preferred_username", description="the claim naming the user")
    oidc_groups_claim: str = Field("groups", description="the claim listing their groups")
    session_hours: float = Field(8.0, gt=0, le=24 * 30, description="a sign-in lasts this long")
    secure_cookie: bool = Field(
        False,
        description="the app is reached over HTTPS: the session cookie is SameSite=None; "
        "Secure, so it also works inside a portal's cross-origin iframe",
    )
    auth_user_header: str = Field("X-Remote-User", description="the signed-in user's name")
    auth_groups_header: str = Field("X-Remote-Groups", description="their groups, comma-separated")
    auth_proxy_secret: str = Field(
        "",
        description="with auth = header: a secret the proxy adds to every request in "
        "auth_proxy_secret_header; user headers without it are not believed, whoever sends them",
    )
    auth_proxy_secret_header: str = Field(
        "X-Rag-Proxy-Secret", description="the header the proxy puts auth_proxy_secret in"
    )
    auth_headers_encoded: bool = Field(
        False, description="the proxy percent-encodes the user and group names it passes"
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="with auth = none on loopback, Host names besides localhost a proxy in "
        "front serves the app under (DNS-rebinding guard); comma-separated",
    )
    grants_file: Path | None = Field(
        None,
        description="who may read or manage which knowledge base (default: data_dir/grants.toml)",
    )
    api_key: str = Field(
        "", description="a key `rag ask` sends when a running server with sign-in answers for it"
    )
    rate_limit: str = Field(
        "120/minute",
        description="per user or API key: questions, uploads and other changes (a key's own "
        "--rate overrides it); 60/min, 10/s, 1000/h",
    )

    @field_validator("allowed_origins", "allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        if isinstance(value, str):
            text = value.strip()
            items = json.loads(text) if text.startswith("[") else text.split(",")
            return [str(v).strip().rstrip("/") for v in items if str(v).strip()]
        return value

    @model_validator(mode="after")
    def _oidc_complete(self):
        if self.auth == "oidc" and not (self.oidc_issuer and self.oidc_client_id):
            raise ValueError("RAG_AUTH=oidc needs RAG_OIDC_ISSUER and RAG_OIDC_CLIENT_ID")
        return self

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        return parse_rate(value)

    @field_validator("root_path")
    @classmethod
    def _root_path(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        return value if not value or value.startswith("/") else "/" + value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # RAG_CONFIG names the file for an installed service, whose working directory is
        # not where its configuration lives (install.sh writes PREFIX/etc/rag.toml).
        toml_file = os.environ.get("RAG_CONFIG") or "rag.toml"
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file))
