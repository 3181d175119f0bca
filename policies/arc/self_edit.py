"""The ARC self-edit: a JSON config the model writes to choose its own augmentations and training
settings (SEAL section 4.1), its prompt, and its parsing and validation.

    {"data_generation": {"use_basic_augmentations": true, "use_size_augmentations": false,
                         "use_chain_augmentations": false, "use_repeat_augmentations": false},
     "training": {"strategy": "train_using_output_tokens", "learning_rate": 0.0001,
                  "num_train_epochs": 2}}

Parsing never raises: a generation that is not a JSON object, has unknown or missing keys, values
of the wrong type or out of range, is refused with its reason, and a refused config trains nothing
(SEAL: 0 epochs). The step budget is checked where the training set is built (ttt.plan), since
the number of examples depends on the task.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from policies.arc.grids import Pair, grid_to_text
from policies.arc.settings import ArcSettings, OracleConfig

if TYPE_CHECKING:  # loads torch; the type is all this module needs of it
    from agent.core.runtime import ModelRuntime

FAMILY_KEYS = {
    "use_basic_augmentations": "basic",
    "use_size_augmentations": "size",
    "use_chain_augmentations": "chain",
    "use_repeat_augmentations": "repeat",
}
TRAINING_KEYS = ("strategy", "learning_rate", "num_train_epochs")
STRATEGIES = ("train_using_all_tokens", "train_using_output_tokens")

# SEAL's suffix after the task's demonstrations (paper, appendix A.2), with its placeholders.
INSTRUCTION = """You are configuring a model training pipeline by selecting from predefined tools.

You must make two decisions:

1. Data Generation Tools - For each of the following, choose true or false:
    - use_basic_augmentations
    - use_size_augmentations
    - use_chain_augmentations
    - use_repeat_augmentations

2. Training Configuration - Choose one of:
    - "train_using_all_tokens"
    - "train_using_output_tokens"

Also specify:
    - learning_rate (float)
    - num_train_epochs (integer)

Output Format

Respond with a valid JSON object. Do not include any explanation, markdown, or extra text.
Use lowercase true/false for booleans and ensure correct JSON syntax.

Example output:

{
  "data_generation": {
    "use_basic_augmentations": ...,
    "use_size_augmentations": ...,
    "use_chain_augmentations": ...,
    "use_repeat_augmentations": ...
  },
  "training": {
    "strategy": ...,
    "learning_rate": ...,
    "num_train_epochs": ...
  }
}"""


@dataclass(frozen=True)
class ArcSelfEdit:
    """A valid config: which augmentation families to generate, and how to train."""

    families: frozenset[str]  # of basic, size, chain, repeat
    strategy: str  # one of STRATEGIES
    learning_rate: float
    epochs: int

    @property
    def output_only(self) -> bool:
        return self.strategy == "train_using_output_tokens"

    def as_json(self) -> str:
        """SEAL's JSON shape (what a writer is finetuned to produce)."""
        return json.dumps(
            {
                "data_generation": {k: f in self.families for k, f in FAMILY_KEYS.items()},
                "training": {
                    "strategy": self.strategy,
                    "learning_rate": self.learning_rate,
                    "num_train_epochs": self.epochs,
                },
            }
        )

    @classmethod
    def from_oracle(cls, oracle: OracleConfig) -> ArcSelfEdit:
        return cls(frozenset(oracle.families), oracle.strategy, oracle.learning_rate, oracle.epochs)


@dataclass(frozen=True)
class Parsed:
    edit: ArcSelfEdit | None
    reason: str | None  # why it was refused (None: valid)


def _refuse(reason: str) -> Parsed:
    return Parsed(None, reason)


def _json_object(text: str) -> tuple[object, str | None]:
    """The first JSON value starting at a '{' of `text` (code fences and chatter around it are
    tolerated), or the reason there is none."""
    start = text.find("{")
    if start < 0:
        return None, "no JSON object in the self-edit"
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        return None, f"bad JSON: {exc.msg} at character {start + exc.pos}"
    except RecursionError:
        return None, "bad JSON: nested too deeply"
    return value, None


def _keys(section: dict, expected: Sequence[str], where: str) -> str | None:
    unknown = sorted(set(section) - set(expected))
    missing = [k for k in expected if k not in section]
    if unknown:
        return f"unknown key(s) in {where}: {', '.join(map(str, unknown))[:200]}"
    if missing:
        return f"missing key(s) in {where}: {', '.join(missing)}"
    return None


def parse_self_edit(text: str, limits: ArcSettings) -> Parsed:
    """The config in a generation, or the reason it is refused."""
    value, problem = _json_object(text)
    if problem:
        return _refuse(problem)
    if not isinstance(value, dict):
        return _refuse(f"the JSON is a {type(value).__name__}, not an object")
    problem = _keys(value, ("data_generation", "training"), "the config")
    if problem:
        return _refuse(problem)
    data, training = value["data_generation"], value["training"]
    for name, section in (("data_generation", data), ("training", training)):
        if not isinstance(section, dict):
            return _refuse(f"{name} is a {type(section).__name__}, not an object")
    problem = _keys(data, tuple(FAMILY_KEYS), "data_generation") or _keys(
        training, TRAINING_KEYS, "training"
    )
    if problem:
        return _refuse(problem)
    for key in FAMILY_KEYS:
        # 0 and 1 are read as false and true (SEAL tests the values for truth); nothing else is
        if data[key] not in (True, False) or isinstance(data[key], float):
            return _refuse(f"{key} must be true or false, not {json.dumps(data[key])[:40]}")
    strategy = training["strategy"]
    if strategy not in STRATEGIES:
        return _refuse(f"strategy must be one of {', '.join(STRATEGIES)}, not {str(strategy)[:40]}")
    lr = training["learning_rate"]
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr):
        return _refuse(f"learning_rate must be a number, not {json.dumps(lr)[:40]}")
    if not limits.min_learning_rate <= lr <= limits.max_learning_rate:
        return _refuse(
            f"learning_rate {lr:g} is out of range [{limits.min_learning_rate:g}, "
            f"{limits.max_learning_rate:g}]"
        )
    epochs = training["num_train_epochs"]
    integral = isinstance(epochs, int) or (isinstance(epochs, float) and epochs.is_integer())
    if isinstance(epochs, bool) or not integral:
        return _refuse(f"num_train_epochs must be an integer, not {json.dumps(epochs)[:40]}")
    if not 1 <= epochs <= limits.max_epochs:
        return _refuse(f"num_train_epochs {int(epochs)} is out of range [1, {limits.max_epochs}]")
    families = frozenset(f for k, f in FAMILY_KEYS.items() if data[k] is True or data[k] == 1)
    return Parsed(ArcSelfEdit(families, strategy, float(lr), int(epochs)), None)


# The example with one valid value in each place, on one line ("filled"): a weak setting (one
# epoch at 1e-4), so that what the writer learns to choose is not the example itself.
FILLED_EXAMPLE = ArcSelfEdit(frozenset({"basic"}), "train_using_all_tokens", 1e-4, 1)


def self_edit_prompt_text(demos: Sequence[Pair], style: str = "seal") -> str:
    """The task's demonstrations, then SEAL's instruction (before any chat template). `style`
    "filled" shows the example config with values instead of SEAL's "..." placeholders: the
    default model answered SEAL's prompt with no valid config in its first 4 samples (it copies
    the placeholders), see README "Few-shot learning on ARC"."""
    shown = "\n\n".join(
        f"input:\n{grid_to_text(p.input)}\noutput:\n{grid_to_text(p.output)}" for p in demos
    )
    instruction = INSTRUCTION
    if style == "filled":
        head, _, _ = INSTRUCTION.partition("Example output:")
        instruction = f"{head}Example output:\n\n{FILLED_EXAMPLE.as_json()}"
    return f"{shown}\n\n------\n\n{instruction}"


# With `writer_prefix`, the writer's answer starts inside the JSON object: the default model then
# wrote 2 of 6 configs that parse (0 of 6 without), see README "Few-shot learning on ARC".
PREFIX = '{"data_generation": {"use_basic_augmentations": '


def writer_prompt(runtime: ModelRuntime, demos: Sequence[Pair], settings: ArcSettings) -> str:
    """The formatted prompt a config is written from (and the writer is finetuned on)."""
    text = self_edit_prompt_text(demos, settings.writer_prompt)
    return runtime.format_prompt(text, chat=True)


def write_configs(
    runtime: ModelRuntime,
    demos: Sequence[Pair],
    settings: ArcSettings,
    k: int,
    policy: Path | None,
    seed: int,
) -> list[str]:
    """K configs sampled in one batched call, by the policy LoRA in `policy` (None: the model
    itself, with the knowledge slot reset to the base)."""
    runtime.reset_adapter(0)  # the knowledge slot holds the last test-time training
    prefix = PREFIX if settings.writer_prefix else ""
    writer = contextlib.nullcontext()
    if policy is not None:
        runtime.load_policy(policy)
        writer = runtime.policy_active()
    with writer:
        [texts] = runtime.generate(
            [writer_prompt(runtime, demos, settings) + prefix],
            max_new_tokens=settings.writer_max_new_tokens,
            temperature=settings.writer_temperature,
            num_return_sequences=k,
            batch_size=k,
            seed=seed,
        )
    return [prefix + t for t in texts]
