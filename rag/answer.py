"""Answering. The default answerer is extractive: no LLM, every sentence quoted verbatim
from a retrieved passage and followed by that passage's `[n]`.

How a sentence is scored (weights chosen on rgb-dev and the project set, bench/README.md):
- its in-context vector's cosine with the question (computed at ingest, free here);
- how much of the question's vocabulary it covers, weighted by IDF (rare words count);
- whether it holds the kind of value the question asks for (多少 → a number, 何时 → a date);
- whether that value is repeated by other retrieved passages (independent sources that
  agree are more likely to be the answer than a lone near-miss);
- minus a little if it is itself a question (a headline that restates the question).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from rag.articles import article_at, asked_article
from rag.figures import DATE
from rag.grounding import MARKER
from rag.lexical import bigram_set, jaccard
from rag.types import Answer, Citation, Hit, Related

if TYPE_CHECKING:
    from rag.history import Message

REFUSAL = "知识库中没有找到与该问题相关的内容。"
MIN_SENTENCE_CHARS = 6  # shorter pieces are headings or fragments, not answers
# Lines that give a policy document its form but say nothing: chapter headings (第二章 奖励
# 标准), the document number (明投促发〔2025〕3号), the addressee or a lead-in ending in a
# colon (各街道办事处，区直有关部门：). They share the title's words, so without this they
# would score like the clauses under them.
_STRUCTURAL = re.compile(
    r"^第[一二三四五六七八九十百零〇]+[章节编]\s*\S{0,20}$|〔\d{4}〕\d+号$|^[^。；]{0,60}[：:]$"
)


# A document's signature: the issuer and/or the date it was signed, on a line of their own
# ("青禾市明川区人民政府办公室", "2023年6月20日", "国家税务总局 2020年2月17日"). It answers
# when a document was issued, and nothing else: for "什么时候开始施行" it is a wrong date.
_ISSUER = (
    r"[^，。；：,\d\s为是由向在于至]{2,30}(?:政府|办公室|委员会|局|厅|部|委|办|中心)(?:（[^）]*）)?"
)
_SIGNATURE = re.compile(rf"^(?:{_ISSUER}\s*)*(?:\d{{4}}年\d{{1,2}}月\d{{1,2}}日)?$")


_WHICH_DOCUMENT = re.compile(
    r"哪[个份项部条]?(?:文件|政策|办法|规定|通知|报道|文章|新闻)|出自|依据的?是|根据哪"
)
_WHEN = r"(?:哪天|哪一天|何时|什么时候|什么时间|日期|几月几[日号])"
_PUBLISHED = r"(?:发布|刊发|刊登|印发|出台|发表)"
_PUBLISHED_WHEN = re.compile(
    rf"(?:报道|文件|政策|办法|通知|文章|新闻).*{_WHEN}.*{_PUBLISHED}|{_PUBLISHED}.*{_WHEN}"
    rf"|{_WHEN}.{{0,3}}{_PUBLISHED}"
)


class Answerer(Protocol):
    """What the chain asks of an answerer: the extractive one below, or an LLM (rag.llm)."""

    local: bool  # answers with this machine's CPU (takes a CPU slot), not a remote model

    def condense(self, history: Sequence[Message], question: str) -> str:
        """A follow-up rewritten as a standalone question, or "" to keep the rule-based
        one (rag.history); an LLM that does not reply raises `rag.llm.LLMUnavailable`."""
        ...

    def stream(
        self,
        question: str,
        parts: Sequence[tuple[str, Sequence[Hit]]],
        hits: Sequence[Hit],
        k: int,
        unavailable: str = "",
    ) -> Iterator[str | Answer]:
        """Pieces of the answer as they are written (none for an extractive answer), then
        the `Answer`, from the first `k` of `hits` (later ones may only corroborate).
        `parts` is the question as searched: one item per compared thing (rag.decompose),
        each with its own hits, merged into `hits`. `unavailable` says why a remote model
        is known to be down (its condense step failed): do not wait for it again."""
        ...


class AnswerType(enum.StrEnum):
    NUMBER = "number"
    DATE = "date"
    OTHER = "other"


_DATE_QUESTION = re.compile(r"什么时候|何时|时间|日期|哪天|哪一天|几月|几号|哪年|哪一年|截止|期限")
_NUMBER_QUESTION = re.compile(
    r"多少|几[个项次年名家人倍天成]|多大|多高|多长|多久|比例|比率|金额|额度|上限|最高|人数|数量|规模|增长|排名"
)
_DATE_VALUE = re.compile(rf"{DATE}|\d{{4}}-\d{{2}}-\d{{2}}")
_NUMBER_VALUE = re.compile(
    r"\d+(?:\.\d+)?(?:[万亿千百])?(?:%|‰|美元|元|人次|人|次|个|项|家|名|辆|吨|平方米|亩|倍|年|天|个工作日|工作日|个月|月)?"
    r"|[一二三四五六七八九十两百千]+(?:个工作日|个月|年|次|项|名|倍|成)"
)
_QUOTED_VALUE = re.compile(r"《([^》]{1,40})》|“([^”]{1,30})”")
_QUESTION_FORM = re.compile(r"[?？]\s*$|吗[。]?$")


def answer_type(question: str) -> AnswerType:
    """What kind of value the question asks for, from its question words."""
    if _DATE_QUESTION.search(question):
        return AnswerType.DATE
    if _NUMBER_QUESTION.search(question):
        return AnswerType.NUMBER
    return AnswerType.OTHER


def typed_values(sentence: str, question: str) -> dict[AnswerType, set[str]]:
    """Dates, numbers (with their units) and quoted names in `sentence` that the question
    does not already contain: the candidate answers a sentence offers."""
    dates = {m for m in _DATE_VALUE.findall(sentence) if m not in question}
    numbers = {
        m
        for m in _NUMBER_VALUE.findall(sentence)
        if len(m) > 1 and m not in question and not any(m in d for d in dates)
    }
    quoted = {a or b for a, b in _QUOTED_VALUE.findall(sentence)} - {""}
    return {
        AnswerType.DATE: dates,
        AnswerType.NUMBER: numbers,
        AnswerType.OTHER: {q for q in quoted if q not in question},
    }


def coverage(
    question_tokens: AbstractSet[str],
    sentence_tokens: AbstractSet[str],
    idf: Callable[[str], float],
) -> float:
    """IDF-weighted share of the question's bigrams that the sentence contains."""
    total = sum(idf(t) for t in question_tokens)
    if total <= 0:
        return 0.0
    return sum(idf(t) for t in question_tokens & sentence_tokens) / total


@dataclass(frozen=True)
class AnswerWeights:
    """How much each feature of a sentence (see `score_sentences`) counts in its score."""

    similarity: float = 1.0
    coverage: float = 0.5
    answer_type: float = 0.1
    support: float = 0.1
    question_form: float = -0.1

    def score(self, features: dict[str, float]) -> float:
        return sum(getattr(self, name) * value for name, value in features.items())


@dataclass
class Candidate:
    """One sentence of one retrieved passage."""

    hit: int  # index into the hits
    start: int  # offsets within the hit's chunk text
    end: int
    text: str
    tokens: frozenset[str]  # the sentence's bigrams
    context: frozenset[str]  # its bigrams plus its document title's: what it can "cover"
    similarity: float
    coverage: float
    score: float = 0.0
    features: dict[str, float] = field(default_factory=dict)  # what `score` weighs


NOTICE_SIMILARITY = 0.6  # a sentence this close to the `notice` metadata restates it
SUPPORTING_COVERAGE = 0.3  # a sentence elsewhere must be this much about the question


def score_sentences(
    question: str,
    hits: Sequence[Hit],
    idf: Callable[[str], float],
    passages: int,
    weights: AnswerWeights,
) -> list[Candidate]:
    """Every sentence of the first `passages` hits, scored; all hits may corroborate.

    Coverage counts the document title as context: a clause of the 楼宇经济 policy
    answers "楼宇政策的申报截止日期" even though the clause itself only says 本办法.
    """
    q_tokens = bigram_set(question)
    wanted = answer_type(question)
    signatures_answer = bool(_PUBLISHED_WHEN.search(question))
    sentences: list[list[tuple[int, int, str, frozenset[str], frozenset[str], float, float]]] = []
    for hit in hits:
        title_tokens = bigram_set(hit.chunk.meta.get("title", ""))
        notice_tokens = bigram_set(hit.chunk.meta.get("notice", ""))
        spans = hit.sentence_spans or ((0, len(hit.chunk.text)),)
        sims = hit.sentence_scores or (hit.dense_score,) * len(spans)
        rows = []
        for (start, end), sim in zip(spans, sims, strict=True):
            text = hit.chunk.text[start:end]
            tokens = bigram_set(text)
            if notice_tokens and jaccard(tokens, notice_tokens) >= NOTICE_SIMILARITY:
                continue  # the document's notice about itself (示例文本…), not its content
            context = tokens | title_tokens
            rows.append((start, end, text, tokens, context, sim, coverage(q_tokens, context, idf)))
        sentences.append(rows)
    # Sentences anywhere in the hits that are about the question: where corroboration counts.
    relevant = [
        (i, text)
        for i, rows in enumerate(sentences)
        for _, _, text, _, _, _, cov in rows
        if cov >= SUPPORTING_COVERAGE
    ]
    out = []
    for i, rows in enumerate(sentences[:passages]):
        for start, end, text, tokens, context, sim, cov in rows:
            if len(text) < MIN_SENTENCE_CHARS or _STRUCTURAL.search(text.strip()):
                continue
            if not signatures_answer and _SIGNATURE.search(text.strip()):
                continue
            values = typed_values(text, question)
            has_type = bool(values[wanted]) if wanted is not AnswerType.OTHER else False
            offered = set().union(*values.values())
            others = {j for j, t in relevant if j != i and any(v in t for v in offered)}
            features = {
                "similarity": sim,
                "coverage": cov,
                "answer_type": float(has_type),
                "support": len(others) / max(1, len(hits) - 1),
                "question_form": float(bool(_QUESTION_FORM.search(text))),
            }
            score = weights.score(features)
            out.append(Candidate(i, start, end, text, tokens, context, sim, cov, score, features))
    return out


NAMED_MARGIN = 0.5  # share of the name's words one document must lead the next by
# How a question refers to a document: a name, then a noun for a document (“楼宇经济政策”,
# “外资奖励办法”, “大众日报的报道” has none before 报道 but names the issuer before 的).
_DOCUMENT_NAME = re.compile(
    r"([\u4e00-\u9fffA-Za-z0-9]{2,12}?)(?:的)?"
    r"(?:政策|办法|规定|通知|意见|措施|方案|细则|条例|文件|公告|通告|报道|文章)"
)
# A name ends at a word that belongs to the question around it: "采取了什么措施" names none.
_NOT_IN_A_NAME = re.compile(r".*[的了么些项个种这那哪于对在将有是和与及]")
# Words in a name that do not tell one document from another: genre words, and the kinds
# of policy every policy is (优惠政策, 扶持政策, 相关规定).
_GENRE = bigram_set(
    "实施 若干 关于 印发 暂行 试行 政策 办法 优惠 扶持 支持 相关 有关 配套 具体 主要"
)


def document_names(question: str) -> list[str]:
    """The names by which `question` refers to documents: "明川区楼宇经济政策什么时候开始
    施行" → ["明川区楼宇经济"]; "采取了什么措施" → []."""
    names = []
    for m in _DOCUMENT_NAME.finditer(question):
        name = _NOT_IN_A_NAME.sub("", m.group(1))
        if len(name) >= 2:
            names.append(name)
    return names


def in_asked_article(
    question: str, hits: Sequence[Hit], candidates: list[Candidate]
) -> list[Candidate]:
    """For a question naming an article ("第十二条怎么规定的"), the candidates that are
    sentences of that article, from the best-ranked document that has one; all of them
    when none is."""
    article = asked_article(question)
    if article is None:
        return candidates
    inside = [
        c
        for c in candidates
        if article_at(hits[c.hit].chunk.text, c.start, hits[c.hit].chunk.meta.get("article", ""))
        == article
    ]
    if not inside:
        return candidates
    doc_id = hits[min(c.hit for c in inside)].chunk.doc_id  # one policy's 第十二条, not three
    return [c for c in inside if hits[c.hit].chunk.doc_id == doc_id]


def article_text(
    candidates: list[Candidate], hits: Sequence[Hit], max_chars: int
) -> list[Candidate]:
    """An article's sentences as it reads, from its heading on, within `max_chars` (the
    first whole even if longer): the answer to "第十二条怎么规定的" is the article."""
    ordered = sorted(candidates, key=lambda c: (hits[c.hit].chunk.start + c.start, c.hit))
    chosen: list[Candidate] = []
    seen: set[int] = set()
    used = 0
    for cand in ordered:
        where = hits[cand.hit].chunk.start + cand.start  # overlapping chunks repeat a sentence
        if where in seen:
            continue
        if chosen and used + len(cand.text) > max_chars:
            break
        chosen.append(cand)
        seen.add(where)
        used += len(cand.text)
    return chosen


def named_document(question: str, hits: Sequence[Hit], idf: Callable[[str], float]) -> str | None:
    """The document the question names, if it clearly names one of the hits' documents.

    Of the name's words (genre words such as 政策 aside) found in a hit's title or issuer,
    one document must hold a larger IDF-weighted share than any other by `NAMED_MARGIN`:
    "明川区楼宇经济政策什么时候开始施行" names the 楼宇经济 policy (明川 is in every title,
    经济 in two, 楼宇 in one), and the 飞地 policy's sentence saying when *it* takes effect
    is not the answer, however similar. A question with two names compares documents, and
    documents without a title cannot be told apart by name: then none is named."""
    named = document_names(question)
    if len(named) != 1 or any(not h.chunk.meta.get("title") for h in hits):
        return None  # two names compare two documents ("飞地政策和外资奖励办法…分别")
    asked = bigram_set(named[0]) - _GENRE
    names = {
        h.chunk.doc_id: bigram_set(h.chunk.meta["title"] + " " + h.chunk.meta.get("source", ""))
        for h in hits
    }
    if len(names) < 2:
        return None
    best = _leader(asked, names, idf)
    # The rest of the question must not point elsewhere: in "莱芜区出台了哪两项招商引资扶持
    # 政策" the name-like 招商引资扶持 is a description, and 莱芜区 names the news report.
    if best is None or _leader(bigram_set(question) - _GENRE, names, idf, 0.0) != best:
        return None
    return best


def _leader(
    words: AbstractSet[str],
    names: dict[str, frozenset[str]],
    idf: Callable[[str], float],
    margin: float = NAMED_MARGIN,
) -> str | None:
    """The document whose name holds the largest IDF-weighted share of those of `words`
    that any name holds, if it leads the next by more than `margin`."""
    total = sum(idf(t) for t in words & set().union(*names.values()))
    if total <= 0:
        return None
    shares = sorted(
        ((sum(idf(t) for t in words & n) / total, d) for d, n in names.items()), reverse=True
    )
    (top, best), (second, _) = shares[:2]
    return best if top - second > margin else None


def select(
    candidates: Sequence[Candidate],
    max_chars: int,
    relative_cutoff: float,
    redundancy: float,
    question_tokens: AbstractSet[str] = frozenset(),
    idf: Callable[[str], float] = lambda _: 1.0,
    coverage_gain: float = 0.0,
) -> list[Candidate]:
    """Greedy MMR: the best sentence, then the next best that says something new — less
    what it repeats of the chosen ones, plus the part of the question it covers that they
    did not (so "A和B分别…" gets a sentence about B after one about A) — while within
    `relative_cutoff` of the best and the length budget."""
    pool = sorted(candidates, key=lambda c: -c.score)
    if not pool:
        return []
    best = pool[0].score
    chosen: list[Candidate] = []
    covered: set[str] = set()
    repeats = [0.0] * len(pool)  # each candidate's overlap with the most similar chosen one
    used = 0
    while pool:
        values = [
            c.score
            - redundancy * repeated
            + (
                coverage_gain
                * coverage(question_tokens - covered, c.context & question_tokens, idf)
                if chosen
                else 0.0
            )
            for c, repeated in zip(pool, repeats, strict=True)
        ]
        i = max(range(len(pool)), key=values.__getitem__)
        if values[i] < best - relative_cutoff:
            break
        cand = pool.pop(i)
        del repeats[i]
        if used + len(cand.text) <= max_chars:
            chosen.append(cand)
            covered |= cand.context & question_tokens
            used += len(cand.text)
            repeats = [
                max(r, jaccard(c.tokens, cand.tokens)) for c, r in zip(pool, repeats, strict=True)
            ]
    if not chosen:  # only sentences longer than the budget: quote the best one's start
        first = max(candidates, key=lambda c: c.score)
        chosen = [replace(first, text=first.text[:max_chars], end=first.start + max_chars)]
    return chosen


RELATED_CLAUSES = 3  # 相关条款 offered, collapsed, under an answer
# A sentence sharing this much of its bigrams with one already shown adds nothing (a
# measure restated in the next clause, or a republished copy of the quoted one).
REPEATS = 0.6


def related(
    pool: Sequence[Candidate],
    shown: Sequence[Candidate],
    relative_cutoff: float,
    limit: int = RELATED_CLAUSES,
) -> list[Candidate]:
    """The relevant sentences the answer left out (相关条款): best first, within
    `relative_cutoff` of the pool's best, none repeating a sentence already shown."""
    if not pool or not shown:
        return []
    best = max(c.score for c in pool)
    taken = {(c.hit, c.start) for c in shown}
    seen = [c.tokens for c in shown]
    out: list[Candidate] = []
    for cand in sorted(pool, key=lambda c: -c.score):
        if len(out) == limit or cand.score < best - relative_cutoff:
            break
        if (cand.hit, cand.start) in taken or any(jaccard(cand.tokens, t) > REPEATS for t in seen):
            continue
        out.append(cand)
        seen.append(cand.tokens)
    return out


def plain_brackets(text: str) -> str:
    """A quoted "[2]" (a footnote in the source) must not read as one of our citation
    markers: write it with full-width brackets."""
    return MARKER.sub(r"［\1］", text)


def wants_attribution(question: str) -> bool:
    """Questions about the document itself (which one says X, when it was published) are
    answered by its title and date, which live in metadata rather than in any sentence."""
    return bool(_WHICH_DOCUMENT.search(question) or _PUBLISHED_WHEN.search(question))


def attribution(citation: Citation) -> str:
    """ "据《title》（source，date）：" for a passage whose document has a title, else ""."""
    if not citation.title:
        return ""
    about = "，".join(x for x in (citation.source, citation.date) if x)
    return plain_brackets(f"据《{citation.title}》" + (f"（{about}）" if about else "") + "：")


def compose(
    question: str,
    hits: Sequence[Hit],
    chosen: Sequence[Candidate],
    attribute: bool = False,
    best_first: bool = True,
) -> Answer:
    """Best passage first, led by its best sentence (or, without `best_first`, in the
    order `chosen` first uses them), the other sentences in their original order within a
    passage, each followed by `[n]`;
    passages numbered in order of first use, only used ones cited. With `attribute`, each
    passage's sentences are introduced by its title and date."""
    by_hit: dict[int, list[Candidate]] = {}
    for cand in chosen:
        by_hit.setdefault(cand.hit, []).append(cand)
    order = list(by_hit)
    if best_first:
        order.sort(key=lambda h: -max(c.score for c in by_hit[h]))
    parts, citations = [], []
    for n, h in enumerate(order, 1):
        sentences = sorted(by_hit[h], key=lambda c: c.start)
        if best_first and n == 1:  # lead with the sentence that answers, then its context
            lead = max(sentences, key=lambda c: c.score)
            sentences = [lead, *(c for c in sentences if c is not lead)]
        citation = Citation.of(n, hits[h], tuple(c.text for c in sentences))
        if attribute:
            parts.append(attribution(citation))
        parts.extend(f"{plain_brackets(c.text)}[{n}]" for c in sentences)
        citations.append(citation)
    return Answer(question=question, answer="".join(parts), refused=False, citations=citations)


class ExtractiveAnswerer:
    """Selects and orders sentences from the retrieved passages; refuses on weak evidence."""

    local = True

    def __init__(
        self,
        idf: Callable[[str], float],
        max_chars: int = 300,
        refusal_threshold: float = 0.0,
        relative_cutoff: float = 0.15,
        redundancy: float = 0.5,
        coverage_gain: float = 0.5,
        weights: AnswerWeights = AnswerWeights(),
    ):
        if max_chars < 20:
            raise ValueError(f"max_chars must be at least 20, got {max_chars}")
        self.idf = idf
        self.max_chars = max_chars
        self.refusal_threshold = refusal_threshold
        self.relative_cutoff = relative_cutoff
        self.redundancy = redundancy
        self.coverage_gain = coverage_gain
        self.weights = weights

    def evidence(self, candidates: Sequence[Candidate]) -> float:
        """How strongly the best sentence answers: its similarity plus its coverage of the
        question's rarer words (an on-topic passage that lacks the asked-about term is
        weak evidence even when it is close in the vector space). Refusal compares this
        with `refusal_threshold`."""
        return max(
            (c.similarity + self.weights.coverage * c.coverage for c in candidates), default=0.0
        )

    def choose(
        self,
        question: str,
        hits: Sequence[Hit],
        k: int,
        max_chars: int,
        whole_within: int | None = None,
    ) -> tuple[list[Candidate], list[Candidate]]:
        """The sentences that answer `question` from the first `k` hits (none when the
        evidence is too weak to answer), and those they were chosen from. When only the
        start of the best sentence fits in `max_chars` and `whole_within` is given, they
        are chosen again within that."""
        question_tokens = bigram_set(question)  # the same set score_sentences reads
        # Only the question's tokens are ever weighed: look each up once, not per sentence.
        idf = {t: self.idf(t) for t in question_tokens}.__getitem__
        candidates = score_sentences(question, hits, idf, k, self.weights)
        if not candidates or self.evidence(candidates) < self.refusal_threshold:
            return [], []
        named = named_document(question, hits[:k], self.idf)  # a name's words are its own
        if named is not None:
            candidates = [c for c in candidates if hits[c.hit].chunk.doc_id == named] or candidates
        in_article = in_asked_article(question, hits, candidates)
        if in_article is not candidates:  # the question names an article: it is the answer
            return article_text(in_article, hits, max_chars), candidates
        budgets = [max_chars] if whole_within is None else [max_chars, whole_within]
        for budget in budgets:
            chosen = select(
                candidates,
                budget,
                self.relative_cutoff,
                self.redundancy,
                question_tokens,
                idf,
                self.coverage_gain,
            )
            if not (len(chosen) == 1 and len(chosen[0].text) >= budget):
                break
        return chosen, candidates

    def condense(self, history: Sequence[Message], question: str) -> str:
        return ""  # the rule-based standalone question is all there is without a model

    def stream(
        self,
        question: str,
        parts: Sequence[tuple[str, Sequence[Hit]]],
        hits: Sequence[Hit],
        k: int,
        unavailable: str = "",
    ) -> Iterator[Answer]:
        yield (
            self.answer_parts(question, parts, hits, k)
            if len(parts) > 1
            else self.answer(question, hits, k)
        )

    def answer(self, question: str, hits: Sequence[Hit], k: int) -> Answer:
        chosen, pool = self.choose(question, hits, k, self.max_chars)
        if not chosen:
            return Answer(question=question, answer=REFUSAL, refused=True)
        answer = compose(question, hits, chosen, attribute=wants_attribution(question))
        answer.related = related_of(hits, related(pool, chosen, self.relative_cutoff))
        return answer

    def answer_parts(
        self, question: str, parts: Sequence[tuple[str, Sequence[Hit]]], hits: Sequence[Hit], k: int
    ) -> Answer:
        """One answer to a question split into `parts` (each a question and its own hits),
        the parts answered in their order: each reads its first k hits, as it would asked
        alone (a part's answer may rank fourth when its passages tie, as clauses of one
        policy do), and quotes within an equal share of the length budget (at least its
        best sentence whole),
        cited from `hits`, the parts' hits merged. A part without evidence enough is named
        in the `notice`; the question is refused only when no part has any."""
        position = {hit.chunk.chunk_id: i for i, hit in enumerate(hits)}
        budget = self.max_chars // len(parts)
        chosen: list[Candidate] = []
        pools: list[list[Candidate]] = []
        missing: list[str] = []
        for part, part_hits in parts:
            # A best sentence longer than the part's share is quoted whole, not cut before
            # its figure, even if the answer then runs over the budget.
            found, pool = self.choose(part, part_hits, k, budget, whole_within=self.max_chars)
            if not found:
                missing.append(part)
            found, pool = (
                [replace(c, hit=position[part_hits[c.hit].chunk.chunk_id]) for c in cands]
                for cands in (found, pool)
            )
            pools.append(pool if found else [])
            for cand in found:
                if all((cand.hit, cand.start) != (c.hit, c.start) for c in chosen):
                    chosen.append(cand)
        if not chosen:
            return Answer(question=question, answer=REFUSAL, refused=True)
        answer = compose(
            question, hits, chosen, attribute=wants_attribution(question), best_first=False
        )
        answer.notice = "".join(f"知识库中没有找到与“{part}”相关的内容。" for part in missing)
        extra: list[Candidate] = []
        for pool in pools:  # each item's own, as its scores are on its own scale
            extra += related(pool, chosen + extra, self.relative_cutoff)
        answer.related = related_of(hits, extra[:RELATED_CLAUSES])
        return answer


def related_of(hits: Sequence[Hit], clauses: Sequence[Candidate]) -> list[Related]:
    return [Related.of(hits[c.hit], plain_brackets(c.text), c.start) for c in clauses]
