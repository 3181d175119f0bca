"""Replay: which earlier self-edits an update trains on again, so that it does not forget them.

The pool is every self-edit an accepted update trained on, minus forgotten documents' ones (the
ledger's `replay_pool`). Policies: `uniform`; `recency` (weight halves every half-life); `loss`
(the self-edits the current adapter fits worst, measured on a uniform candidate sample four times
the size needed, so the cost stays bounded as the pool grows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from agent.core.config import UpdateConfig
from stores.ledger import Ledger, ReplayItem

LOSS_CANDIDATES = 4  # loss policy: candidates scored per replay slot


def replay_count(n_new_self_edits: int, ratio: float) -> int:
    return math.ceil(n_new_self_edits * ratio)


def sequence_loss(runtime, item: ReplayItem) -> float:
    """Mean negative log-likelihood per token of the item's sequences under the current model
    (each scored after an end-of-text token, as it follows one in packed training)."""
    eos = runtime.tokenizer.eos_token
    pairs = [("", s) if isinstance(s, str) else s for s in item.sequences]  # (prompt, trained)
    scores = runtime.score([eos + prompt for prompt, _ in pairs], [c for _, c in pairs])
    return -sum(s.logprob for s in scores) / max(1, sum(s.n_tokens for s in scores))


def choose_replay(
    ledger: Ledger,
    n: int,
    cfg: UpdateConfig,
    *,
    seed: int,
    exclude_documents: Sequence[int] = (),
    runtime=None,
) -> list[ReplayItem]:
    """`n` earlier self-edits by `cfg.replay_policy` (fewer if the pool is smaller)."""
    if n <= 0:
        return []
    if cfg.replay_policy == "uniform":
        return ledger.sample_replay(n, seed=seed, exclude_documents=exclude_documents)
    if cfg.replay_policy == "recency":
        return ledger.sample_replay(
            n,
            seed=seed,
            half_life_s=cfg.replay_half_life_hours * 3600,
            exclude_documents=exclude_documents,
        )
    if runtime is None:
        raise ValueError("replay_policy='loss' needs the model runtime")
    candidates = ledger.sample_replay(
        n * LOSS_CANDIDATES, seed=seed, exclude_documents=exclude_documents
    )
    if len(candidates) <= n:
        return candidates
    losses = [sequence_loss(runtime, item) for item in candidates]
    worst = sorted(range(len(candidates)), key=lambda i: -losses[i])[:n]
    return [candidates[i] for i in sorted(worst)]
