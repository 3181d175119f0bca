"""Sizes and limits of an ARC run: how many tasks, self-edits, examples and steps.

Two presets. `full` is SEAL's protocol (arXiv 2506.10943, section 4.1 and appendix A): its 12
training and 10 evaluation tasks, 15 self-edits per training task and 5 per evaluation task, at
most 250 test-time-training examples, 375 optimizer steps, LoRA rank 128 / alpha 16 on q, v,
gate, up and down, 8 voted views: for a GPU. `reduced` fits a shared 2-core CPU with the
default model: the training and evaluation tasks with the fewest cells (and at least three
demonstrations for training, so one can be held out), few self-edits, a dozen examples, a step
budget of 24 and 3 views. Any field can be changed (`--arc-set FIELD=VALUE`); the preset also sets
LoRA shape and ReST-EM sizes in the project config (`adapt`, `policy`), beneath `--set`.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Strategy = Literal["train_using_all_tokens", "train_using_output_tokens"]


class OracleConfig(BaseModel):
    """A fixed configuration for the `ttt-oracle` condition (SEAL's human-chosen one)."""

    model_config = ConfigDict(extra="forbid")
    families: list[Literal["basic", "size", "chain", "repeat"]] = Field(
        default_factory=lambda: ["basic"], description="Augmentation families used."
    )
    strategy: Strategy = Field("train_using_output_tokens", description="Which tokens carry loss.")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    epochs: int = Field(2, ge=1, description="Passes over the examples.")


class ArcSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    eval_tasks: int = Field(
        0, ge=0, description="Tasks of SEAL's evaluation subset, fewest cells first; 0: all 10."
    )
    self_edits_per_task: int = Field(
        5, ge=1, le=64, description="Self-edits sampled per evaluation task and condition."
    )
    max_examples: int = Field(
        250, ge=1, description="Cap on test-time-training examples (leave-out tasks x views)."
    )
    max_held_out: int = Field(
        2, ge=1, le=2, description="Leave-out tasks hold out 1, or 1 and 2, demonstrations."
    )
    step_budget: int = Field(
        375, ge=1, description="A config needing more optimizer steps than this is refused."
    )
    max_epochs: int = Field(20, ge=1, description="num_train_epochs above this is refused.")
    min_learning_rate: float = Field(1e-6, gt=0, description="Smallest learning rate accepted.")
    max_learning_rate: float = Field(1e-2, gt=0, description="Largest learning rate accepted.")
    max_seq_tokens: int = Field(
        4096, ge=64, description="Training examples longer than this many tokens are left out."
    )
    views: int = Field(8, ge=1, le=8, description="Augmented views voted over at evaluation.")
    reward_views: int = Field(
        2, ge=1, le=8, description="Views voted over when ReST-EM rewards a config."
    )
    max_answer_tokens: int = Field(
        930, ge=8, description="Cap on the tokens of one generated grid (30 x 31 at most)."
    )
    writer_temperature: float = Field(0.8, ge=0, description="Sampling temperature of configs.")
    writer_prompt: Literal["seal", "filled"] = Field(
        "seal",
        description="The config prompt: SEAL's (an example of placeholders) or 'filled' (the "
        "example has values; policies/arc/self_edit.py says why).",
    )
    writer_prefix: bool = Field(
        False,
        description="Start the writer's answer with the config's first characters (up to "
        "the first value, self_edit.PREFIX), so that it writes inside the JSON.",
    )
    writer_max_new_tokens: int = Field(
        160, ge=16, description="Length cap of one config generation (SEAL: 128 Llama tokens)."
    )
    oracle: OracleConfig = Field(
        default_factory=OracleConfig, description="The fixed config of `ttt-oracle`."
    )

    @model_validator(mode="after")
    def _learning_rates(self) -> ArcSettings:
        if self.min_learning_rate > self.max_learning_rate:
            raise ValueError("min_learning_rate is above max_learning_rate")
        return self


# SEAL's LoRA for test-time training; the policy (writer) LoRA has the same shape in this
# project (one adapt section), SEAL used r16/alpha16 for it.
_SEAL_TARGETS = ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]

PRESETS: dict[str, dict[str, Any]] = {
    "full": {
        "arc": {"oracle": {"families": ["basic"], "learning_rate": 1e-4, "epochs": 2}},
        "adapt": {"rank": 128, "alpha": 16, "target_modules": _SEAL_TARGETS, "batch_size": 2},
        "policy": {
            "rounds": 1,
            "candidates": 15,
            "passages": 0,
            "reward": "graded",
            "keep_only_beating_baseline": False,
            "learning_rate": 5e-5,
            "epochs": 8,
            "batch_size": 5,
        },
    },
    # Measured on the shared 2-core CPU (results/arc/report.md gives the run's seconds).
    "reduced": {
        "arc": {
            "eval_tasks": 4,
            "self_edits_per_task": 2,
            "max_examples": 12,
            "step_budget": 24,
            "max_epochs": 8,
            "max_seq_tokens": 640,
            "views": 3,
            "reward_views": 1,
            "max_answer_tokens": 120,
            "writer_prompt": "filled",
            "writer_prefix": True,
            "writer_max_new_tokens": 100,
            "oracle": {"families": ["basic"], "learning_rate": 1e-3, "epochs": 2},
        },
        "adapt": {"rank": 16, "alpha": 32, "target_modules": _SEAL_TARGETS, "batch_size": 2},
        "policy": {
            "rounds": 1,
            "candidates": 3,
            "passages": 3,
            "reward": "logprob",
            "keep_only_beating_baseline": True,
            "learning_rate": 1e-3,
            "epochs": 4,
            "batch_size": 2,
        },
    },
}
SIZES = tuple(PRESETS)


def preset(size: str) -> dict[str, Any]:
    """A preset's nested settings: {"arc": ..., "adapt": ..., "policy": ...}."""
    return copy.deepcopy(PRESETS[size])


def merged(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`base` with `update` laid over it, section by section (a preset under --set flags)."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
