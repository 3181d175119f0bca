"""Self-edit formats: the prompt that asks the model for its own finetuning data, and the parsing
of a generation into training sequences.

Prompts are SEAL's (arXiv 2506.10943, Appendix B.3 and C). As in SEAL's single-passage setting a
generation is split into items (one per line; one per "Question n:" block for self-qa), each item is
prefixed with the passage title, and the title-prefixed passage itself is appended.

`qa-spans` is ours, for a small writer: the augmentation tools (policies/augment.py) pick answer
spans of every sentence and ask for each with a question in the sentence's own words; each item
trains the closed-book answer prompt followed by the span, the shape it is asked in, and nothing in
it is not in the passage (self_edit.answer_only_loss trains the span alone). Questions written by
SmolLM2-135M itself for the same spans (a few-shot prompt, K=3 samples, kept only when faithful and
answered with their span when read back with the sentence) were measured on one passage: 1 of 42
kept, 217 s; so the tools write them.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agent.core.answering import question_prompt
from agent.core.config import EvalConfig, SelfEditConfig
from agent.core.errors import SealError
from policies import augment
from stores.policies import resolve_policy, verify_folder

if TYPE_CHECKING:  # both load torch; the types are all this module needs of them
    from agent.core.inner_loop import TrainingSequence
    from agent.core.runtime import ModelRuntime


# The self-edit writer that ships with the product: a policy version folder (LoRA weights,
# manifest with checksums, PROVENANCE.md saying how it was trained); self_edit.policy = "bundled".
BUNDLED_WRITER = Path(__file__).parent / "writer"


@dataclass(frozen=True)
class SelfEditFormat:
    name: str
    instruction: str  # what the model is asked to do with the passage
    cue: str  # the heading the model continues after
    split_on_questions: bool = False  # self-qa: items are "Question n: ... Answer ..." blocks
    spans: bool = False  # qa-spans: built on the passage's answer spans (see the docstring)

    def prompt(self, title: str, context: str) -> str:
        if not self.instruction:
            return ""
        return (
            f"Let's read the following passage and {self.instruction}\n\n"
            f"Passage:\n{title}\n{context}\n\n{self.cue}\n"
        )

    @property
    def generates(self) -> bool:
        return bool(self.instruction) or self.spans


_IMPLICATIONS = "produce a list of implications derived directly or indirectly from the content."
FORMATS: dict[str, SelfEditFormat] = {
    f.name: f
    for f in [
        SelfEditFormat("implications", _IMPLICATIONS, "Implications:"),
        SelfEditFormat(
            "implications-long", _IMPLICATIONS.replace("a list", "a long list"), "Implications:"
        ),
        SelfEditFormat(
            "rewrite",
            "rewrite it in a few different ways, each one separated by a newline.",
            "Rewritten passages:",
        ),
        SelfEditFormat(
            "self-qa",
            "rewrite it in a question-answer format.",
            "Question 1:",
            split_on_questions=True,
        ),
        SelfEditFormat("qa-spans", "", "", spans=True),
        # The control: train on the passage alone, no generation.
        SelfEditFormat("passage-only", "", ""),
    ]
}


def get_format(name: str) -> SelfEditFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise SealError(
            f"unknown self-edit format {name!r}; choose one of {', '.join(FORMATS)}"
        ) from None


@dataclass
class SelfEdit:
    """One parsed self-edit: its items, why others were dropped, and the training sequences."""

    format: str
    raw: str
    items: list[str]
    sequences: list[TrainingSequence]  # texts, and (prompt, answer) pairs trained on the answer
    dropped: Counter = field(default_factory=Counter)
    fallback: bool = False  # nothing usable parsed: trained on the passage alone
    writer: str = ""  # who wrote it (choose_writer's name); kept in the ledger as provenance

    def as_dict(self) -> dict:
        return {
            "format": self.format,
            "writer": self.writer,
            "raw": self.raw,
            "items": self.items,
            "dropped": dict(self.dropped),
            "fallback": self.fallback,
        }


_LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d{1,3}[.)])\s+")
_QUESTION_SPLIT = re.compile(r"(?=^\s*\**Question\s+\d+\s*:)", re.MULTILINE | re.IGNORECASE)
_QUESTION_LABEL = re.compile(r"^\**Question\s+\d+\s*:\**\s*", re.IGNORECASE)
_HEADER = re.compile(r"^\W*(implications|rewritten passages|here (is|are)\b.*|sure\b.*)\W*$", re.I)


def _raw_items(fmt: SelfEditFormat, text: str) -> list[str]:
    if fmt.split_on_questions:
        # The prompt ends in "Question 1:", so the generation starts inside the first block.
        blocks = _QUESTION_SPLIT.split(f"{fmt.cue} {text.lstrip()}")
        return [" ".join(b.split()) for b in blocks if b.strip()]
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    # SEAL's rule for instruct models: a first line before a "1." list is filler.
    if len(lines) > 1 and lines[1].startswith("1.") and not lines[0].startswith("1."):
        lines = lines[1:]
    return [_LIST_MARKER.sub("", line).strip("* ").strip() for line in lines]


def is_degenerate(item: str) -> bool:
    """Looping or near-content-free text (a small model's typical failure)."""
    words = item.lower().split()
    if len(words) >= 8 and len(set(words)) / len(words) < 0.35:
        return True
    grams = Counter(tuple(words[i : i + 3]) for i in range(len(words) - 2))
    return bool(grams) and grams.most_common(1)[0][1] >= 3


def parse_self_edit(
    fmt: SelfEditFormat,
    generation: str,
    *,
    title: str,
    context: str,
    cfg: SelfEditConfig,
    count_tokens: Callable[[str], int] = lambda s: len(s.split()),
) -> SelfEdit:
    """Turn one generation into training sequences, filtering empty, degenerate, repeated and
    over-long items; with no item left, fall back to the passage alone (and say so)."""
    items: list[str] = []
    dropped: Counter = Counter()
    seen = {" ".join(context.lower().split())}
    for item in _raw_items(fmt, generation) if fmt.generates else []:
        body = _QUESTION_LABEL.sub("", item)  # self-qa: judge the content, not its label
        key = " ".join(body.lower().split())
        if not body or _HEADER.match(body):
            dropped["empty"] += 1
        elif len(body) < cfg.min_item_chars:
            dropped["short"] += 1
        elif is_degenerate(body):
            dropped["degenerate"] += 1
        elif key in seen:
            dropped["repeated"] += 1
        elif count_tokens(item) > cfg.max_item_tokens:
            dropped["too_long"] += 1
        else:
            seen.add(key)
            items.append(item)
    fallback = fmt.generates and not items
    sequences = [f"{title}\n{item}" for item in items]
    if cfg.include_passage or not sequences:
        sequences.append(f"{title}\n{context}")
    return SelfEdit(fmt.name, generation, items, sequences, dropped, fallback)


def write_self_edits(
    runtime: ModelRuntime,
    title: str,
    context: str,
    cfg: SelfEditConfig,
    *,
    fmt: SelfEditFormat | None = None,
    seed: int = 0,
    asking: EvalConfig | None = None,
) -> list[SelfEdit]:
    """Sample `cfg.num_candidates` self-edits in one batched call and parse each (qa-spans: the
    one self-edit the tools build). `asking`: how questions are asked (eval config), which
    question-shaped items copy.

    The writer is `choose_writer`'s: a policy LoRA (the bundled writer, or a `seal
    train-policy` version) writes them in place of the knowledge adapter, which stays as it is.
    """
    if not context.strip():
        raise SealError(f"passage {title!r} is empty: nothing to learn from")
    fmt = fmt or get_format(cfg.format)
    policy, name = choose_writer(runtime, fmt, cfg)
    if fmt.spans:
        edit = write_qa_spans(
            runtime,
            title,
            context,
            asking or EvalConfig(),
            cfg.answer_only_loss,
            cfg.direct_questions,
        )
        edit.writer = name
        return [edit]

    def parse(text: str) -> SelfEdit:
        edit = parse_self_edit(
            fmt, text, title=title, context=context, cfg=cfg, count_tokens=runtime.count_tokens
        )
        edit.writer = name
        return edit

    if not fmt.generates:
        return [parse("")]
    prompt = self_edit_prompt(runtime, fmt, title, context, cfg)
    writer = contextlib.nullcontext()
    if policy is not None:
        runtime.load_policy(policy)
        writer = runtime.policy_active()
    with writer:
        [texts] = runtime.generate(
            [prompt],
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            num_return_sequences=cfg.num_candidates,
            batch_size=cfg.num_candidates,
            seed=seed,
        )
    return [parse(text) for text in texts]


def choose_writer(
    runtime: ModelRuntime, fmt: SelfEditFormat, cfg: SelfEditConfig
) -> tuple[Path | None, str]:
    """The policy folder that writes `fmt`'s self-edits under `cfg` (None: no policy LoRA),
    and the name the ledger records for the writer: "tools" (qa-spans), "none" (the passage
    alone), "model" (the model itself), "bundled:SHA" (BUNDLED_WRITER, by its weights'
    checksum) or "policy:FOLDER".

    The bundled writer (the default) was trained on the default model: with another model,
    which it does not fit, the model writes its own self-edits."""
    if fmt.spans:
        return None, "tools"
    if not fmt.generates:
        return None, "none"
    if cfg.policy in (None, "model"):
        return None, "model"
    if cfg.policy != "bundled":
        folder = resolve_policy(cfg.policy)
        return folder, f"policy:{folder}"
    try:
        manifest = verify_folder(BUNDLED_WRITER)
    except SealError as exc:
        raise SealError(
            f"the bundled self-edit writer is missing or damaged ({exc}); reinstall seal, or "
            "write self-edits with the model itself: --set self_edit.policy=model"
        ) from None
    if manifest["base_fingerprint"] not in (runtime.fingerprint(), *runtime.lineage):
        return None, "model"
    files = manifest["files"]
    weights = next(files[name] for name in sorted(files) if name.endswith(".safetensors"))
    return BUNDLED_WRITER, f"bundled:{weights[:12]}"


def write_qa_spans(
    runtime: ModelRuntime,
    title: str,
    context: str,
    asking: EvalConfig,
    answer_only: bool = False,
    direct_questions: bool = True,
) -> SelfEdit:
    """The qa-spans self-edit (module docstring): a question for every answer span of every
    sentence (`direct_questions`: and, where the sentence inverts, the question a person would
    ask), each trained as the closed-book prompt followed by the span (`answer_only`: a
    (prompt, span) pair, trained on the span alone), then the passage."""
    pairs = [
        (question, span)
        for sentence in augment.sentences(context)
        for span in augment.answer_spans(sentence)
        for question in augment.questions(sentence, span, direct_questions)
    ]
    items = [f"Question: {question} Answer: {span}" for question, span in pairs]
    prompts = [(question_prompt(runtime, q, asking, title=title), a) for q, a in pairs]
    sequences: list[TrainingSequence] = [[p, a] if answer_only else p + a for p, a in prompts]
    sequences.append(f"{title}\n{context}")
    return SelfEdit("qa-spans", "", items, sequences, fallback=not items)


def self_edit_prompt(
    runtime: ModelRuntime, fmt: SelfEditFormat, title: str, context: str, cfg: SelfEditConfig
) -> str:
    """The formatted prompt a self-edit is generated from (and trained on, by ReST-EM)."""
    return runtime.format_prompt(fmt.prompt(title, context), chat=cfg.use_chat_template)


def teacher_self_edits(
    completions: Sequence[str],
    title: str,
    context: str,
    cfg: SelfEditConfig,
    count_tokens: Callable[[str], int] = lambda s: len(s.split()),
) -> list[SelfEdit]:
    """Parse self-edits written by another model (e.g. SEAL's published GPT-4.1 implications)."""
    fmt = FORMATS["implications"]
    return [
        parse_self_edit(fmt, c, title=title, context=context, cfg=cfg, count_tokens=count_tokens)
        for c in completions
    ]
