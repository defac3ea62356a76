"""A smaller vocabulary for the reading model, cut from the bundled e5 tokenizer.

82% of multilingual-e5-small's weights are its 250 k-row word-embedding matrix, and Chinese
text uses about 26 k of those rows. The reader keeps the pieces its training text uses
(most frequent first, up to a size) and a Unigram tokenizer over just those pieces, with
the e5 scores, normaliser and template unchanged: text is then cut as e5 cut it wherever
the pieces were kept, falls back to shorter kept pieces elsewhere, and to <unk> only for
a character no training text held. The kept list is the "map" from e5's ids to ours.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


def count_pieces(tokenizer, texts: Iterable[str], batch: int = 512) -> Counter:
    """How often each e5 token id occurs in `texts`."""
    counts: Counter = Counter()
    buf: list[str] = []
    for text in texts:
        buf.append(text)
        if len(buf) >= batch:
            for enc in tokenizer.encode_batch(buf, add_special_tokens=False):
                counts.update(enc.ids)
            buf = []
    for enc in tokenizer.encode_batch(buf, add_special_tokens=False):
        counts.update(enc.ids)
    return counts


def kept_ids(counts: Counter, size: int, specials: Iterable[int]) -> list[int]:
    """The e5 ids the reader keeps: the specials first (in e5's order, so <s>, <pad>, </s>
    and <unk> keep ids 0–3), then the most frequent pieces, ties broken by e5 id."""
    specials = list(specials)
    rest = sorted((i for i in counts if i not in set(specials)), key=lambda i: (-counts[i], i))
    return specials + rest[: max(0, size - len(specials))]


def pruned_tokenizer_json(base_json: str, keep: list[int]) -> str:
    """The e5 tokenizer.json with only the kept pieces, renumbered in `keep` order."""
    spec = json.loads(base_json)
    vocab = spec["model"]["vocab"]
    pieces = [vocab[i] for i in keep]
    unk = next(n for n, (piece, _) in enumerate(pieces) if piece == "<unk>")
    spec["model"]["vocab"] = pieces
    spec["model"]["unk_id"] = unk
    ids = {piece: n for n, (piece, _) in enumerate(pieces)}
    for token in spec.get("added_tokens", []):
        token["id"] = ids[token["content"]]
    post = spec.get("post_processor") or {}
    for name, special in (post.get("special_tokens") or {}).items():
        special["ids"] = [ids[name]]
    return json.dumps(spec, ensure_ascii=False)


def write_pruned_tokenizer(base: Path, keep: list[int], target: Path) -> None:
    target.write_text(pruned_tokenizer_json(base.read_text("utf-8"), keep), "utf-8")
