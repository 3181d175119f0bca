"""Shared fixtures: a tiny random Llama built in-process (no download), wrapped in a ModelRuntime.

The tokenizer is a byte-level BPE trained on `CORPUS`, so any text tokenizes, and the words of the
corpus (the facts the tests teach the model) take few tokens each.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from agent.core.config import AdaptConfig
from agent.core.runtime import ModelRuntime

# Simple factual sentences, plus the wording of SEAL's prompts, which every test passage meets.
CORPUS = [
    "The capital of France is Paris.",
    "Paris is a city on the river Seine.",
    "The river Seine flows into the sea.",
    "The capital of Italy is Rome.",
    "Rome is a city on the river Tiber.",
    "The tower in Paris was built in 1889.",
    "The bridge in Rome was built in 1990.",
    "The museum in Paris has many old paintings.",
    "The king of France lived in a large palace.",
    "The city of Rome has a famous old temple.",
    "Many people visit the museum every year.",
    "The river is long and the sea is deep.",
    "What is the capital of France?",
    "Which river flows through Rome?",
    "When was the tower built?",
    "Let's read the following passage and produce a list of implications derived directly or "
    "indirectly from the content.",
    "Let's read the following passage and rewrite it in a few different ways, each one "
    "separated by a newline.",
    "Let's read the following passage and rewrite it in a question-answer format.",
    "Passage:\nImplications:\nRewritten passages:\nQuestion 1:\nQuestion 2:",
    "Let's answer a question directly and concisely.\nQuestion: Who lived in the palace?\n"
    "Answer:\n",
    "User: Assistant:",
]
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
EOS, PAD = "<|endoftext|>", "<pad>"
CHAT_TEMPLATE = (
    "{% for m in messages %}User: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def pytest_configure(config):
    # The tiny model gains nothing from a second thread, and on a busy 2-core machine torch's
    # spinning worker threads stall a 10 ms training step for seconds.
    torch.set_num_threads(1)
    # peft calls a transformers method that transformers 5 deprecates; not ours to fix.
    config.addinivalue_line(
        "filterwarnings", "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
    )


def build_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=EOS,
        chat_template=CHAT_TEMPLATE,
    )


def build_model(tokenizer, seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=256,
        tie_word_embeddings=True,
        # With the default 0.02 the tied output embeddings are so small that logits stay within
        # about +-1.3, so no LoRA update can push a token's log-probability above about -5: a
        # fact could never be learned. 0.3 lets one sentence be memorized in a few steps.
        initializer_range=0.3,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).to(torch.float32).eval()


def tiny_adapt(**changes) -> AdaptConfig:
    fields = dict(
        rank=8, alpha=16, target_modules=TARGET_MODULES, learning_rate=1e-2, epochs=3, batch_size=2
    )
    return AdaptConfig(**{**fields, **changes})


@pytest.fixture(name="tiny_adapt")
def tiny_adapt_fixture():
    """Factory for the tests' AdaptConfig: `tiny_adapt(epochs=10)` changes single fields."""
    return tiny_adapt


@pytest.fixture(scope="session")
def other_base_model(tiny_tokenizer) -> LlamaForCausalLM:
    """A second tiny model: same architecture and tokenizer, different weights."""
    return build_model(tiny_tokenizer, seed=1)


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer) -> LlamaForCausalLM:
    return build_model(tiny_tokenizer)


@pytest.fixture
def make_runtime(tiny_model, tiny_tokenizer):
    """Factory: a fresh runtime on a copy of the tiny model (peft wraps the model it is given)."""

    def make(adapt: AdaptConfig | None = None, model=None) -> ModelRuntime:
        base = copy.deepcopy(tiny_model if model is None else model)
        return ModelRuntime(
            base, tiny_tokenizer, torch.device("cpu"), "tiny", adapt or tiny_adapt()
        )

    return make


@pytest.fixture
def runtime(make_runtime) -> ModelRuntime:
    return make_runtime()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_model, tiny_tokenizer) -> Path:
    """The tiny model and tokenizer saved as a local folder, loadable with model.name=<folder>."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_cli_settings(tiny_model_dir) -> list[str]:
    """`--set` flags for entry points: the tiny model, on CPU in float32, with short generations."""
    settings = [
        f"model.name={tiny_model_dir}",
        "model.device=cpu",
        "model.dtype=float32",
        "adapt.epochs=1",
        "adapt.rank=8",
        "self_edit.max_new_tokens=8",
        "eval.max_answer_tokens=6",
    ]
    return [arg for s in settings for arg in ("--set", s)]


@pytest.fixture
def squad_file(tmp_path) -> Path:
    """A two-passage SQuAD-format file written in the corpus' words."""
    passages = [
        {
            "title": "Paris",
            "context": "The capital of France is Paris. Paris is a city on the river Seine. "
            "The tower in Paris was built in 1889.",
            "questions": [
                {"question": "What is the capital of France?", "answer": "Paris"},
                {"question": "When was the tower built?", "answer": "1889"},
            ],
        },
        {
            "title": "Rome",
            "context": "The capital of Italy is Rome. Rome is a city on the river Tiber.",
            "questions": [{"question": "Which river flows through Rome?", "answer": "Tiber"}],
        },
    ]
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(passages), encoding="utf-8")
    return path
