"""The one settings object: `RAG_*` environment variables, then `rag.toml`, then defaults.

Every knob has a working offline default. Built at the edges (CLI, app, eval runner) and
passed down as typed values; nothing in `rag/` reads the environment by itself.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.e5_bundle import BUNDLED_E5


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", toml_file="rag.toml", extra="ignore")

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

    k: int = Field(5, ge=1, le=50, description="passages an answer may quote")
    answer_max_chars: int = Field(300, ge=20, le=4000, description="length budget of an answer")
    refusal_threshold: float = Field(
        0.88,
        description="evidence below this → 知识库中没有找到…; calibrated for the bundled e5 "
        "(bench/README.md): recalibrate with `make bench-quality` for another model",
    )
    max_question_chars: int = Field(500, ge=10, le=10000)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))
