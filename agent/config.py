"""Typed configuration: validated once at the entry point, then passed down as objects.

Sources, later ones winning: the defaults below, a TOML file (`--config`), environment variables
`SEAL_<SECTION>__<FIELD>` (for example `SEAL_ADAPT__LEARNING_RATE=3e-4`), then command-line flags.
"""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.errors import SealError

ENV_PREFIX = "SEAL_"


class _Section(BaseModel):
    # coerce_numbers_to_str: `--set model.name=2024` names a folder, not a number.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, coerce_numbers_to_str=True)


class ModelConfig(_Section):
    name: str = Field(
        "default",
        description="'default' for the embedded SmolLM2-135M-Instruct, or any Hugging Face "
        "causal LM id or local folder (must be available offline).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the model runs; 'auto' picks cuda when available."
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="Weights dtype; 'auto' is bfloat16 on cuda and on CPUs with native bf16 "
        "matmuls (AVX512-BF16/AMX), float32 elsewhere. LoRA weights stay float32.",
    )
    cache_dir: Path | None = Field(
        None,
        description="Where the default model's converted safetensors folder is cached; "
        "None means $XDG_CACHE_HOME/seal-agent (or ~/.cache/seal-agent).",
    )
    threads: int = Field(
        0, ge=0, description="CPU threads for torch; 0 keeps torch's default (one per core)."
    )


class AdaptConfig(_Section):
    """LoRA SFT settings for one knowledge update (SEAL Table 3 gives the search space)."""

    rank: int = Field(32, ge=1, le=1024, description="LoRA rank r.")
    alpha: float = Field(64.0, gt=0, description="LoRA alpha; the update is scaled by alpha/r.")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout on the adapter input.")
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        min_length=1,
        description="Names of the linear layers that get LoRA adapters.",
    )
    learning_rate: float = Field(1e-3, gt=0, le=1, description="AdamW learning rate.")
    epochs: int = Field(5, ge=1, le=100, description="Passes over the training sequences.")
    batch_size: int = Field(
        4, ge=1, description="Training sequences per optimizer step (packed into one row)."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_seq_tokens: int = Field(
        1024, ge=16, description="Training sequences longer than this are truncated."
    )
    seed: int = Field(0, description="Seed for adapter initialisation and data order.")


class SelfEditConfig(_Section):
    format: str = Field(
        "implications",
        description="Self-edit format: implications, implications-long, rewrite, self-qa, "
        "or passage-only.",
    )
    num_candidates: int = Field(
        1, ge=1, le=64, description="K self-edit candidates sampled in one batched call."
    )
    temperature: float = Field(1.0, ge=0, description="Sampling temperature (SEAL uses 1.0).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    max_new_tokens: int = Field(192, ge=8, description="Length cap of one self-edit generation.")
    use_chat_template: bool = Field(
        True, description="Wrap the self-edit prompt in the model's chat template if it has one."
    )
    include_passage: bool = Field(
        True, description="Append the title-prefixed passage itself to the training sequences."
    )
    min_item_chars: int = Field(12, ge=1, description="Items shorter than this are dropped.")
    max_item_tokens: int = Field(
        256, ge=8, description="Items longer than this many tokens are dropped."
    )

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        from policies.self_edit import FORMATS

        if value not in FORMATS:
            raise ValueError(f"unknown format {value!r}; choose one of {', '.join(FORMATS)}")
        return value


class EvalConfig(_Section):
    max_answer_tokens: int = Field(32, ge=1, description="Length cap of one closed-book answer.")
    use_chat_template: bool = Field(
        False,
        description="Wrap the closed-book question in the chat template. Off by default: "
        "the knowledge update trains on raw text, and raw-text prompts recall it better.",
    )
    answer_batch_size: int = Field(16, ge=1, description="Questions answered per batched call.")
    judge: Literal["none", "local", "openai"] = Field(
        "none", description="Optional judge grading answers like SEAL's GPT-4.1 grader."
    )
    judge_url: str = Field(
        "https://api.openai.com/v1", description="Base URL of an OpenAI-compatible endpoint."
    )
    judge_model: str = Field("gpt-4.1-2025-04-14", description="Model name sent to the judge.")
    judge_api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the judge's API key."
    )
    bootstrap_samples: int = Field(2000, ge=100, description="Resamples for 95% intervals.")


class StoreConfig(_Section):
    home: Path | None = Field(
        None,
        description="State folder (ledger, passages, adapters); default $SEAL_HOME, else "
        "$XDG_DATA_HOME/seal-agent (~/.local/share/seal-agent).",
    )
    namespace: str = Field("user", min_length=1, description="Knowledge namespace of passages.")
    passage_words: int = Field(
        160, ge=16, le=2000, description="Documents are split into passages of about this size."
    )
    near_duplicate_similarity: float = Field(
        0.95,
        gt=0,
        le=1,
        description="Cosine similarity at which a passage is reported as a near "
        "duplicate of a stored one.",
    )
    keep_versions: int = Field(
        20,
        ge=1,
        description="Garbage collection keeps this many recent adapter versions, plus "
        "the current one and every pinned one.",
    )


class UpdateConfig(_Section):
    """How an update is made and checked: replay of earlier self-edits, and the retention gate."""

    strategy: Literal["continual", "per-document"] = Field(
        "continual",
        description="'continual': each update continues training the current adapter (with "
        "replay); 'per-document': each document gets a fresh adapter, and the current adapter "
        "is all of them combined by `consolidation`.",
    )
    consolidation: Literal["linear", "cat", "svd", "ties", "dare_ties"] = Field(
        "svd",
        description="How per-document adapters are combined (PEFT add_weighted_adapter); "
        "'cat' keeps them exactly but its rank grows with every document.",
    )
    consolidation_density: float = Field(
        0.5, gt=0, le=1, description="ties/dare_ties: the share of each adapter's weights kept."
    )
    replay_ratio: float = Field(
        1.0,
        ge=0,
        description="Earlier self-edits replayed per new self-edit (0: no replay; "
        "strategy=continual only).",
    )
    replay_policy: Literal["uniform", "recency", "loss"] = Field(
        "uniform",
        description="How replayed self-edits are chosen: uniformly, weighted to recent ones "
        "(replay_half_life_hours), or those the current adapter fits worst (highest loss).",
    )
    replay_half_life_hours: float = Field(
        24.0, gt=0, description="For replay_policy=recency: a self-edit this old weighs half."
    )
    gate: bool = Field(
        True, description="Check retention before committing; roll back an update that fails."
    )
    retention_score: Literal["logprob", "graded"] = Field(
        "logprob",
        description="Retention is scored by the mean log-probability per token of the probes' "
        "answers (cheap, dense) or by graded greedy answers (gold contained; slower).",
    )
    min_new_gain: float = Field(
        0.0,
        description="The new passages' probe score must rise by more than this (nats per token "
        "for logprob, accuracy fraction for graded).",
    )
    # Set from a first 3-passage run with the default model, where one replayed update cost
    # its earlier document 0.46 nats per token of cloze answer and another 1.45.
    max_passage_drop: float = Field(
        1.5, ge=0, description="An earlier passage may lose at most this much of its score."
    )
    max_mean_drop: float = Field(
        0.5, ge=0, description="The earlier passages checked may lose at most this on average."
    )
    nearest_passages: int = Field(
        4, ge=0, description="Earlier passages checked because they are nearest the new ones."
    )
    random_passages: int = Field(
        4, ge=0, description="Earlier passages checked at random, so all are checked over time."
    )
    probes_per_passage: int = Field(5, ge=1, description="Questions asked per checked passage.")
    probe_source: Literal["cloze", "self-qa"] = Field(
        "cloze",
        description="Probes of a document without dataset questions: sentence endings held "
        "out of its passages, or question-answer pairs the model writes (filled up with cloze).",
    )


class SealConfig(_Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    adapt: AdaptConfig = Field(default_factory=AdaptConfig)
    self_edit: SelfEditConfig = Field(default_factory=SelfEditConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    update: UpdateConfig = Field(default_factory=UpdateConfig)

    def save(self, path: Path) -> None:
        """Write the resolved config as JSON, atomically."""
        from agent.io import write_atomic

        write_atomic(path, json.dumps(self.model_dump(mode="json"), indent=2) + "\n")


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, field = key[len(ENV_PREFIX) :].lower().partition("__")
        try:  # numbers, booleans and lists arrive as JSON; anything else is a plain string
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(section, {})[field] = value
    return out


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> SealConfig:
    """Resolve defaults < TOML file < environment < overrides; one clear error if invalid."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise SealError(f"config file {path} does not exist") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SealError(f"config file {path} is not valid TOML: {exc}") from exc
    env = _env_overrides(dict(os.environ if environ is None else environ))
    if env:
        source += " + SEAL_* environment"
    if overrides:
        source += " + command-line overrides"
    data = _merge(_merge(data, env), overrides or {})
    try:
        return SealConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SealError(f"invalid configuration ({source}): {problems}") from exc


def parse_overrides(assignments: list[str]) -> dict[str, Any]:
    """`["adapt.epochs=10", "model.name=Qwen/Qwen2.5-7B"]` -> nested dict for `load_config`."""
    out: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot or not field:
            raise SealError(f"--set {item!r}: expected SECTION.FIELD=VALUE, e.g. adapt.epochs=10")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(section, {})[field] = value
    return out


def add_config_arguments(ap: argparse.ArgumentParser) -> None:
    """`--config FILE` and repeatable `--set SECTION.FIELD=VALUE`, for every entry point."""
    ap.add_argument("--config", type=Path, help="TOML config file")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one config field, e.g. --set adapt.epochs=10",
    )


def config_from_args(args: argparse.Namespace) -> SealConfig:
    return load_config(args.config, parse_overrides(args.set))
