"""Probes: questions with answers that check whether the model knows a passage.

Dataset questions are used when a document comes with them (SQuAD). Otherwise the model writes
them itself with SEAL's question-answer prompt, before it learns the passage, and they are kept in
the ledger so that the same questions check the passage after every later update.
"""

from __future__ import annotations

import re

from agent.config import SelfEditConfig
from policies.self_edit import FORMATS, write_self_edits

_QA = re.compile(
    r"^\**Question\s*\d*\s*:\**\s*(?P<q>.+?\?)\s*\**Answer\s*\d*\s*:?\**\s*(?P<a>.+)$",
    re.IGNORECASE | re.DOTALL,
)
MAX_ANSWER_WORDS = 24


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


def generate_probes(
    runtime, title: str, context: str, cfg: SelfEditConfig, n: int, seed: int = 0
) -> list[tuple[str, str]]:
    """Up to `n` question-answer probes the model writes about the passage (greedy)."""
    qa_cfg = cfg.model_copy(update={"num_candidates": 1, "temperature": 0.0})
    [edit] = write_self_edits(runtime, title, context, qa_cfg, fmt=FORMATS["self-qa"], seed=seed)
    return qa_pairs(edit.items)[:n]
