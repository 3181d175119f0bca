"""Anchor questions: everyday knowledge far from anything a user feeds, asked in the closed-book
answer prompt, with the answers the base model gives them.

Question-shaped self-edits (qa-spans) teach the answer prompt to produce a learned span; alone,
they teach it to produce one whatever the question. Measured with the default model
(evals/facts.py): after three stated facts were learned, 17 of 20 control questions the model had
answered right ("What is the capital of France?") were answered with a learned name. So every
update trains a sample of anchors beside its self-edits, in the same shape, with the base model's
own answers (its behaviour, kept; right or wrong), and the retention check scores a disjoint
sample: an update that makes the model answer everyday questions with its new facts is refused.

The anchors never overlap the control questions of evals/facts.py (a test checks it).
"""

from __future__ import annotations

import random
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.core.answering import greedy_answers, question_prompt
from agent.core.config import EvalConfig

if TYPE_CHECKING:
    from agent.core.runtime import ModelRuntime

ANCHOR_DOCUMENT = 0  # the anchors' id in retention checks (ledger document ids start at 1)

ANCHOR_QUESTIONS = (
    "How many hours are in a day?",
    "How many days are in a week?",
    "How many months are in a year?",
    "What color is grass?",
    "What color is snow?",
    "What color is a ripe banana?",
    "What do cows drink?",
    "What do you use to write on paper?",
    "What is the opposite of up?",
    "What is the opposite of big?",
    "What is two plus two?",
    "What is ten minus three?",
    "Which season comes after winter?",
    "Which day comes after Monday?",
    "What do fish live in?",
    "What do birds use to fly?",
    "What shape is a wheel?",
    "How many wheels does a bicycle have?",
    "What is the first letter of the alphabet?",
    "What do people wear on their feet?",
    "What do people use an umbrella for?",
    "What falls from clouds when it rains?",
    "What do you call a baby cat?",
    "What do you call a baby dog?",
    "What is the freezing point of water in degrees Celsius?",
    "How many sides does a triangle have?",
    "What is the largest mammal?",
    "What is the hardest natural substance?",
    "What organ pumps blood through the body?",
    "What is the main ingredient of bread?",
    "What instrument has black and white keys?",
    "What is the color of an emerald?",
    "Which metal is liquid at room temperature?",
    "What is the name of the galaxy we live in?",
    "What do caterpillars turn into?",
    "How many players are on a soccer team on the field?",
    "What language is spoken in Germany?",
    "What is the capital of Portugal?",
    "What is the capital of Norway?",
    "Who wrote the Odyssey?",
)


@dataclass(frozen=True)
class Anchors:
    trained: list[tuple[str, str]]  # (question, the base model's answer): trained with the update
    checked: list[tuple[str, str]]  # a disjoint sample the retention check scores


def choose_anchors(
    runtime: ModelRuntime, asking: EvalConfig, n: int, rng: random.Random
) -> Anchors:
    """`n` anchors to train and `n` others to check, with the base model's answers."""
    questions = rng.sample(ANCHOR_QUESTIONS, min(2 * n, len(ANCHOR_QUESTIONS)))
    answers = base_answers(runtime, questions, asking)
    pairs = [(q, a) for q, a in zip(questions, answers, strict=True) if a]  # "" teaches nothing
    return Anchors(pairs[:n], pairs[n:])


# The base model's answers, per runtime and base (a merge makes a new base): every update of a
# long-running process (chat, ingest, serve) reuses them instead of generating them again.
_BASE_ANSWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def base_answers(runtime: ModelRuntime, questions: list[str], asking: EvalConfig) -> list[str]:
    """Greedy first-line answers of the base model (adapters off) to closed-book questions,
    the missing ones in one batched call."""
    memo = _BASE_ANSWERS.setdefault(runtime, {})
    prompts = [question_prompt(runtime, q, asking) for q in questions]
    keys = [(runtime.fingerprint(), p, asking.max_answer_tokens) for p in prompts]
    missing = [k for k in dict.fromkeys(keys) if k not in memo]
    if missing:
        with runtime.adapter_disabled():
            answers = greedy_answers(runtime, [k[1] for k in missing], asking)
        memo.update(zip(missing, answers, strict=True))
    return [memo[k] for k in keys]


def anchor_sequences(runtime: ModelRuntime, asking: EvalConfig, pairs) -> list[list[str]]:
    """Anchors as training sequences: (closed-book prompt, answer), trained on the answer."""
    return [[question_prompt(runtime, q, asking), a] for q, a in pairs]
