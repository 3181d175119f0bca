"""The inner loop: LoRA SFT of the knowledge adapter on a list of training sequences.

A training sequence is a text, trained on every token, or a (prompt, completion) pair, trained on
the completion only (the anchors, and qa-spans items with self_edit.answer_only_loss): it teaches
the answer to its question, not to write questions (trained on every token, SmolLM2-135M once
answered "How many members does our team have?" with the training question "Our team has how
many?", evals/facts.py).

Sequences are packed: each optimizer step concatenates `batch_size` sequences into one row, with
position ids restarting at every sequence so attention never crosses a boundary (transformers builds
a block-diagonal causal mask from the position ids). No token is padding, so no compute or loss is
spent on it. SEAL's recipe instead pads every line to 2048 tokens with the pads in the loss.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from agent.core.config import AdaptConfig
from agent.core.errors import SealError
from agent.core.runtime import ModelRuntime


@dataclass
class TrainLog:
    losses: list[float] = field(default_factory=list)  # mean token loss per optimizer step
    tokens: int = 0  # tokens seen by forward passes, all epochs
    loss_tokens: int = 0  # tokens that carried loss
    seconds: float = 0.0
    steps: int = 0
    n_sequences: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "losses": [round(x, 5) for x in self.losses],
            "tokens": self.tokens,
            "loss_tokens": self.loss_tokens,
            "seconds": round(self.seconds, 3),
            "steps": self.steps,
            "n_sequences": self.n_sequences,
            "tokens_per_second": round(self.tokens_per_second, 1),
        }


# A text (loss on every token) or a (prompt, completion) pair (loss on the completion only); pairs
# arrive as lists once they went through the ledger's JSON.
TrainingSequence = str | Sequence[str]


@dataclass(frozen=True)
class PackedBatch:
    input_ids: torch.Tensor  # (1, T) all sequences of the step back to back
    position_ids: torch.Tensor  # (1, T) restarting at 0 for every sequence
    labels: torch.Tensor  # (1, T) -100 on prompts and on each sequence's first token


def tokenize_sequences(
    runtime: ModelRuntime, sequences: Sequence[TrainingSequence], max_tokens: int
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids) per sequence (a text has no prompt); the completion ends in
    EOS, so the model learns where an item stops, and is cut, never the prompt, to `max_tokens`."""
    tok = runtime.tokenizer
    out = []
    for item in sequences:
        prompt, completion = ("", item) if isinstance(item, str) else item
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        c_ids = tok(completion, add_special_tokens=False)["input_ids"]
        room = max_tokens - len(p_ids) - 1
        if room < 1:
            raise SealError(f"a training prompt has {len(p_ids)} tokens, over the cap {max_tokens}")
        if c_ids:
            out.append((p_ids, c_ids[:room] + [tok.eos_token_id]))
    return out


def pack(pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> PackedBatch:
    """(prompt ids, completion ids) pairs back to back; loss on the completions only, and never
    on a sequence's first token (nothing of its own predicts it)."""
    ids, pos, labels = [], [], []
    for prompt, completion in pairs:
        ids.extend([*prompt, *completion])
        pos.extend(range(len(prompt) + len(completion)))
        own = [-100] * len(prompt) + list(completion)
        own[0] = -100  # nothing of the sequence's own predicts its first token
        labels.extend(own)
    as_row = lambda xs: torch.tensor([xs], dtype=torch.long)  # noqa: E731
    return PackedBatch(as_row(ids), as_row(pos), as_row(labels))


def packed_loss(model, batch: PackedBatch, device: torch.device) -> tuple[torch.Tensor, int]:
    """Mean next-token loss over the labelled tokens of a packed row, and their count."""
    out = model(
        input_ids=batch.input_ids.to(device),
        position_ids=batch.position_ids.to(device),
        use_cache=False,
    )
    logits = out.logits[:, :-1].float()  # (1, T-1, V)
    labels = batch.labels[:, 1:].to(device)  # (1, T-1)
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
    )
    return loss, int((labels != -100).sum())


def train_adapter(
    runtime: ModelRuntime,
    sequences: Sequence[TrainingSequence],
    adapt: AdaptConfig,
    *,
    reset: bool = True,
    on_step: Callable[[float], None] | None = None,
) -> TrainLog:
    """Fit the knowledge adapter to `sequences` (texts, and prompt-masked pairs); returns the log.

    With `reset` the adapter starts fresh from `adapt.seed`, so the update depends only on its
    inputs: the same sequences and config give the same weights on CPU. `on_step` as in `fit`.
    """
    token_lists = tokenize_sequences(runtime, sequences, adapt.max_seq_tokens)
    if not token_lists:
        raise SealError("nothing to train on: every training sequence is empty")
    if reset:
        runtime.reset_adapter(adapt.seed)
    params = runtime.adapter_parameters()
    return fit(
        runtime,
        params,
        token_lists,
        pack,
        adapt.learning_rate,
        adapt.weight_decay,
        epochs=adapt.epochs,
        batch_size=adapt.batch_size,
        seed=adapt.seed,
        on_step=on_step,
    )


def fit(
    runtime: ModelRuntime,
    params: Sequence[torch.nn.Parameter],
    items: Sequence,
    pack_batch: Callable[[Sequence], PackedBatch],
    learning_rate: float,
    weight_decay: float,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    on_step: Callable[[float], None] | None = None,
) -> TrainLog:
    """AdamW on `params` over `items` (token lists, or anything `pack_batch` packs), shuffled
    each epoch by `seed`; the loop every LoRA in this project is trained with. `on_step(loss)`
    after every optimizer step (progress of a long run)."""
    for p in params:
        p.requires_grad_(True)
    # fused: one kernel for all parameters; the default for-each-parameter loop cost 10% of a
    # step here (420 LoRA matrices)
    fused = runtime.device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(
        params, lr=learning_rate, weight_decay=weight_decay, fused=fused or None
    )
    order = random.Random(seed)
    log = TrainLog(n_sequences=len(items))
    steps_per_epoch = math.ceil(len(items) / batch_size)
    start = time.perf_counter()
    with runtime.training():
        for _ in range(epochs):
            shuffled = list(items)
            order.shuffle(shuffled)
            for s in range(steps_per_epoch):
                batch = pack_batch(shuffled[s * batch_size : (s + 1) * batch_size])
                loss, n_loss = packed_loss(runtime.model, batch, runtime.device)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                log.losses.append(float(loss.detach()))
                log.tokens += batch.input_ids.shape[1]
                log.loss_tokens += n_loss
                log.steps += 1
                if on_step is not None:
                    on_step(log.losses[-1])
    log.seconds = time.perf_counter() - start
    return log
