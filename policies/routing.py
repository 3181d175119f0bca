"""Which questions the knowledge adapter answers.

A question near something the model learned (a passage of a learned document at least
`min_similarity` from it, cosine, among the passages retrieved for it) is answered with the
knowledge adapter; any other question by the base model alone. What the model learned then
cannot change its answers to unrelated questions: after "Our office moved to Lyon." is learned,
"What is the capital of France?" is still answered by the model that said Paris. The answer stays
closed-book either way: the retrieved passage decides which weights answer, it is not shown to the
model. `min_similarity` 0 answers everything with the adapter.

Measured with the store's embedder (all-MiniLM-L6-v2): the 20 phrasings of evals/facts.py are
0.51-0.83 from the fact they ask about and at most 0.26 from the other facts; its 36 control
questions at most 0.25 from any fact and 0.34 from 40 eval200 passages; 10% of eval200's questions
are under 0.39 from their own passage.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence


def answers_with_adapter(hits: Sequence[Mapping], min_similarity: float) -> bool:
    """Whether the knowledge adapter answers a question, from the passages retrieved for it
    (each with its document's ledger `status` and its `similarity` to the question)."""
    if min_similarity <= 0:
        return True
    return any(h["status"] == "learned" and h["similarity"] >= min_similarity for h in hits)


def answering_weights(runtime, with_adapter: bool):
    """A context in which `runtime` answers with its knowledge adapter, or with the base model."""
    return contextlib.nullcontext() if with_adapter else runtime.adapter_disabled()
