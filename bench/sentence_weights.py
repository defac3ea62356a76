"""Which sentence leads the answer: the answerer's sentence weights fitted on real sets.

Usage:
    python bench/sentence_weights.py ../shared/benchmarks/rgb-dev ../shared/benchmarks/policy-dev \
        evals/project.jsonl [--reuse]

For every answerable question the product retrieves as `rag ask` does, then every sentence
of the first k passages gets its features (`Candidate.features` from
`rag.answer.score_sentences`) and a label: whether it holds the gold answer. A conditional-logit model
(softmax over one question's sentences, so it learns what makes a sentence the *best* one
of its question) is fitted with 5-fold cross-validation grouped by question, on the sets
together; the table gives, per set, how often the top-scored sentence holds every gold
item (what `answer_first_acc` counts) and any, for the shipped weights and the fitted ones.
Retrieval is fixed: only the choice of sentence differs between rows.
"""

from __future__ import annotations

import argparse
import pickle
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from rag.answer import AnswerWeights, score_sentences
from rag.chain import build_assistant
from rag.config import Settings
from rag.evaluate import load_questions, open_set_index
from rag.lexical import bigram_set
from rag.metrics import answer_correct

FEATURES = [f.name for f in fields(AnswerWeights)]
L2 = 0.01


def sentences_of(eval_set: Path, cache: Path, reuse: bool) -> list[dict]:
    """Per answerable question: its candidates' feature rows and gold labels (cached)."""
    if reuse and cache.is_file():
        return pickle.loads(cache.read_bytes())
    settings = Settings()
    index, _ = open_set_index(settings, eval_set)
    assistant = build_assistant(settings, index)
    answerer = assistant.answerer
    path = eval_set / "questions.jsonl" if eval_set.is_dir() else eval_set
    out = []
    for q in load_questions(path):
        if q.expect_refusal or q.out_of_scope:
            continue
        hits = assistant.ask(q.question).hits
        idf = {t: answerer.idf(t) for t in bigram_set(q.question)}.__getitem__
        cands = score_sentences(q.question, hits, idf, settings.k, answerer.weights)
        out.append(
            {
                "id": q.id,
                "x": np.array([[c.features[n] for n in FEATURES] for c in cands]),
                "all": np.array([answer_correct(c.text, q.answers) for c in cands], bool),
                "any": np.array(
                    [any(answer_correct(c.text, [item]) for item in q.answers) for c in cands],
                    bool,
                ),
            }
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(out))
    return out


def target(q: dict) -> np.ndarray | None:
    """Uniform over the sentences that hold every gold item (else any): what to lead with."""
    label = q["all"] if q["all"].any() else q["any"]
    return label / label.sum() if label.any() else None


def fit(questions: list[dict]) -> np.ndarray:
    usable = [(q["x"], t) for q in questions if len(q["x"]) and (t := target(q)) is not None]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = L2 * w @ w, 2 * L2 * w
        for x, t in usable:
            s = x @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            total -= float(t @ np.log(p + 1e-12)) / len(usable)
            grad -= x.T @ (t - p) / len(usable)
        return total, grad

    w0 = np.array([getattr(AnswerWeights(), n) for n in FEATURES], float)
    w = minimize(loss, w0, jac=True, method="L-BFGS-B").x
    return w / w[FEATURES.index("similarity")]  # the scale select()'s cutoff was set in


def lead_rates(questions: list[dict], w: np.ndarray) -> tuple[float, float]:
    """Share of questions whose top-scored sentence holds all / any gold items."""
    all_, any_ = 0, 0
    for q in questions:
        if len(q["x"]):
            top = int(np.argmax(q["x"] @ w))
            all_ += bool(q["all"][top])
            any_ += bool(q["any"][top])
    return all_ / len(questions), any_ / len(questions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument("--reuse", action="store_true", help="reuse cached features")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    cache_dir = Settings().data_dir / "bench-sentences"
    sets = {s.stem: sentences_of(s, cache_dir / f"{s.stem}.pkl", args.reuse) for s in args.sets}
    shipped = np.array([getattr(AnswerWeights(), n) for n in FEATURES], float)
    # Grouped CV: each question is scored by weights fitted without it.
    rng = np.random.default_rng(0)
    pooled = [(name, i) for name, qs in sets.items() for i in range(len(qs))]
    fold_of = rng.permutation(len(pooled)) % args.folds
    cv_top: dict[str, list[dict]] = {name: [] for name in sets}
    for fold in range(args.folds):
        train = [sets[n][i] for (n, i), f in zip(pooled, fold_of, strict=True) if f != fold]
        w = fit(train)
        for (n, i), f in zip(pooled, fold_of, strict=True):
            if f == fold:
                q = sets[n][i]
                cv_top[n].append({**q, "w": w})
    full = fit([q for qs in sets.values() for q in qs])
    print(
        "| set | questions | lead holds all (shipped) | any (shipped) | all (fitted, CV) | any (fitted, CV) |"
    )
    print("|---|---|---|---|---|---|")
    for name, qs in sets.items():
        s_all, s_any = lead_rates(qs, shipped)
        cv = [lead_rates([q], q["w"]) for q in cv_top[name]]
        c_all = sum(a for a, _ in cv) / len(cv)
        c_any = sum(b for _, b in cv) / len(cv)
        print(f"| {name} | {len(qs)} | {s_all:.3f} | {s_any:.3f} | {c_all:.3f} | {c_any:.3f} |")
    print("\nweights fitted on all sets (similarity = 1):")
    print(
        asdict(
            AnswerWeights(**{n: round(float(v), 3) for n, v in zip(FEATURES, full, strict=True)})
        )
    )


if __name__ == "__main__":
    main()
