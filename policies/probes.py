"""Probes: questions with answers that check whether the model knows a passage.

Dataset questions are used when a document comes with them (SQuAD). Otherwise probes are made
before the passage is learned, and kept in the ledger, so that the same questions check it after
every later update (`update.probe_source`):

- `cloze` (default): sentences of the passage with their ending held out ("How does this sentence
  from <title> end: ...?" -> the last words). Needs no generation, and asks about what the passage
  says, not about what the model made of it.
- `self-qa`: the model writes question-answer pairs with SEAL's self-qa prompt; cloze probes fill
  up when it writes fewer than asked (SmolLM2-135M writes none it can parse).
"""

from __future__ import annotations

import re

from agent.core.config import SelfEditConfig
from policies.self_edit import FORMATS, write_self_edits

_QA = re.compile(
    r"^\**Question\s*\d*\s*:\**\s*(?P<q>.+?\?)\s*\**Answer\s*\d*\s*:?\**\s*(?P<a>.+)$",
    re.IGNORECASE | re.DOTALL,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
MAX_ANSWER_WORDS = 24
CLOZE_ANSWER_WORDS = 4
CLOZE_MIN_WORDS = 8


def qa_pairs(items: list[str]) -> list[tuple[str, str]]:
    """(question, answer) from self-qa items like "Question 2: Who ...? Answer: Ada ..."."""
    pairs = []
    for item in items:
        match = _QA.match(item.strip())
        if not match:
            continue
        question = " ".join(match["q"].split())
        answer = " ".join(match["a"].split()[:MAX_ANSWER_WORDS])
        if answer and (question, answer) not in pairs:
            pairs.append((question, answer))
    return pairs


def cloze_probes(title: str, context: str, n: int) -> list[tuple[str, str]]:
    """Up to `n` sentences of the passage, spread over it, each with its last words held out."""
    sentences = [s.split() for s in _SENTENCE_END.split(" ".join(context.split()))]
    usable = [s for s in sentences if len(s) >= CLOZE_MIN_WORDS]
    if len(usable) > n:  # spread the picks over the whole passage
        usable = [usable[round(i * (len(usable) - 1) / max(1, n - 1))] for i in range(n)]
    probes = []
    for words in usable[:n]:
        prefix = " ".join(words[:-CLOZE_ANSWER_WORDS])
        answer = " ".join(words[-CLOZE_ANSWER_WORDS:]).rstrip(".!?")
        probes.append((f'How does this sentence about {title} end: "{prefix} ..."?', answer))
    return probes


def make_probes(
    runtime, title: str, context: str, cfg: SelfEditConfig, n: int, source: str = "cloze"
) -> list[tuple[str, str]]:
    """Up to `n` probes for a passage, from `source` (see the module docstring)."""
    probes: list[tuple[str, str]] = []
    if source == "self-qa":
        # the model writes its own probes: a policy learned to write training data, not tests
        qa_cfg = cfg.model_copy(update={"num_candidates": 1, "temperature": 0.0, "policy": None})
        [edit] = write_self_edits(runtime, title, context, qa_cfg, fmt=FORMATS["self-qa"])
        probes = qa_pairs(edit.items)[:n]
    return probes + cloze_probes(title, context, n - len(probes))
