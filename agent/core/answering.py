"""Closed-book answering and grading: SQuAD exact match, token F1, gold-contained-in-answer, and
the short-answer score.

Normalization follows the official SQuAD v1.1 evaluation script: lower case, drop punctuation and
the articles a/an/the, collapse whitespace. "Contained" rewards an answer that recites a whole
passage and so runs into the gold answer somewhere; the short-answer score counts the gold answer
only in the answer's head (its first sentence, at most SHORT_WORDS words), which reciting cannot
pass. An answer that contains the gold answer only past its head is marked `recited`.

Every question the model is asked or trained on goes through `format_question` (SEAL's
`Topic: {title}` key when `eval.question_topic` is on) and `question_prompt`.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.core.config import EvalConfig

if TYPE_CHECKING:  # the runtime loads torch; scoring and prompts are needed without it
    from agent.core.runtime import ModelRuntime

# SEAL's closed-book prompt (arXiv 2506.10943, Appendix B.3).
ANSWER_PROMPT = "Let's answer a question directly and concisely.\nQuestion: {question}\nAnswer:\n"
RAG_PREFIX = "Passage:\n{context}\n\n"
# SEAL asks `Topic: {title}\n{question}`: its training sequences are title-prefixed, so the title
# is the key that retrieves them (knowledge-incorporation/src/query/query_server.py).
TOPIC_PREFIX = "Topic: {title}\n"
SHORT_WORDS = 12  # the head of an answer the short-answer score reads
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(pred) & Counter(ref)).values())
    if not pred or not ref:
        return float(pred == ref)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def contains_gold(prediction: str, gold: str) -> float:
    """1 when the normalized gold answer appears, on word boundaries, in the normalized answer."""
    g, p = normalize_answer(gold), normalize_answer(prediction)
    return float(bool(g) and f" {g} " in f" {p} ")


def answer_head(prediction: str) -> str:
    """The answer's first sentence, cut at SHORT_WORDS words."""
    first = _SENTENCE_END.split(prediction.strip(), maxsplit=1)[0]
    return " ".join(first.split()[:SHORT_WORDS])


def short_answer(prediction: str, gold: str) -> float:
    """1 when the gold answer is in the answer's head: what a reader asking the question gets."""
    return contains_gold(answer_head(prediction), gold)


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    title: str = ""  # the passage's title: the `Topic:` key when eval.question_topic is on


@dataclass(frozen=True)
class Graded:
    question: str
    gold: str
    prediction: str
    em: float
    f1: float
    contained: float
    gold_logprob: float  # mean log-probability per token of the gold answer after the prompt
    judge: float | None = None
    short: float = 0.0  # the gold answer is in the answer's head (short_answer)

    @property
    def recited(self) -> bool:
        """Gold contained, but only past the answer's head: a recited passage, not an answer."""
        return bool(self.contained) and not self.short

    def as_dict(self) -> dict:
        out = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in vars(self).items()}
        return out | {"recited": self.recited}


def mean_of(graded: Sequence[Graded], field: str) -> float:
    """Mean of one per-question score (e.g. "contained", "gold_logprob") over graded answers."""
    return sum(getattr(g, field) for g in graded) / len(graded)


def format_question(question: str, title: str, cfg: EvalConfig) -> str:
    """A question as the model is asked it, and as question-shaped self-edits train it."""
    if cfg.question_topic and title:
        return TOPIC_PREFIX.format(title=title) + question
    return question


def question_prompt(
    runtime: ModelRuntime,
    question: str,
    cfg: EvalConfig,
    context: str | None = None,
    title: str = "",
) -> str:
    """SEAL's closed-book prompt; with `context`, the same prompt after a retrieved passage."""
    text = ANSWER_PROMPT.format(question=format_question(question, title, cfg))
    if context is not None:
        text = RAG_PREFIX.format(context=context) + text
    return runtime.format_prompt(text, cfg.use_chat_template)


def answer_logprobs(
    runtime: ModelRuntime, questions: Sequence[Question], cfg: EvalConfig
) -> list[float]:
    """Mean log-probability per token of each gold answer after its closed-book prompt, in
    batched forward passes: the dense score of the gate, the retention check and the anchors."""
    prompts = [question_prompt(runtime, q.question, cfg, title=q.title) for q in questions]
    scores = runtime.score(prompts, [q.answer for q in questions], cfg.answer_batch_size)
    return [s.mean_logprob for s in scores]


def first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip()


def greedy_answers(runtime: ModelRuntime, prompts: Sequence[str], cfg: EvalConfig) -> list[str]:
    """The first line of each prompt's greedy answer, batched, at most cfg.max_answer_tokens."""
    outputs = runtime.generate(
        list(prompts),
        max_new_tokens=cfg.max_answer_tokens,
        stop_at_newline=True,
        batch_size=cfg.answer_batch_size,
    )
    return [first_line(out[0]) for out in outputs]


def answer_and_grade(
    runtime: ModelRuntime,
    questions: Sequence[Question],
    cfg: EvalConfig,
    judge=None,
    contexts: Sequence[str | None] | None = None,
) -> list[Graded]:
    """Greedy answers for all questions (batched), graded against their gold answers;
    closed-book, or after a retrieved passage per question (`contexts`)."""
    contexts = contexts or [None] * len(questions)
    prompts = [
        question_prompt(runtime, q.question, cfg, c, q.title)
        for q, c in zip(questions, contexts, strict=True)
    ]
    answers = greedy_answers(runtime, prompts, cfg)
    scores = runtime.score(prompts, [q.answer for q in questions], batch_size=cfg.answer_batch_size)
    verdicts = (
        judge.grade([(q.question, q.answer, a) for q, a in zip(questions, answers, strict=True)])
        if judge is not None
        else [None] * len(questions)
    )
    return [
        Graded(
            q.question,
            q.answer,
            a,
            exact_match(a, q.answer),
            token_f1(a, q.answer),
            contains_gold(a, q.answer),
            s.mean_logprob,
            v,
            short_answer(a, q.answer),
        )
        for q, a, s, v in zip(questions, answers, scores, verdicts, strict=True)
    ]
