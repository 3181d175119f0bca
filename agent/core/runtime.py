"""The model runtime: one loaded causal LM with one LoRA knowledge adapter attached in place.

Everything that touches the model goes through `ModelRuntime`: batched generation, answer scoring,
and the adapter's life cycle (reset, save, load, combine). The model is wrapped by peft once; an
update only changes the adapter's weights. Loading an adapter of another shape (rank, alpha,
targets: a consolidation's output) replaces the adapter slot in place; a reset restores the
configured shape.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

# oneDNN (bf16 matmuls on a CPU) keeps a kernel per input shape it meets, up to 1024, and every
# update trains rows of new lengths: in bf16, 90 training steps of random lengths grew a process by
# 1.2 GB with the default capacity and 0.3 GB with 8 (one thread). 256 keeps a step's kernels; bf16
# still grows (+0.7 GB), which is one reason a CPU runs in float32 by default (pick_dtype). Read
# when the first kernel is made; a user's own value stays.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "256")

import torch  # noqa: E402
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
from transformers.utils import logging as hf_logging

from agent.core.config import AdaptConfig, ModelConfig, PolicyConfig
from agent.core.errors import SealError
from agent.core.io import fsync_dir
from agent.core.model_source import DEFAULT_MODEL, hub_offline, resolve_model_path

ADAPTER = "knowledge"
SCRATCH = "knowledge-scratch"  # a transient slot while the knowledge slot changes shape
COMBINED = "knowledge-combined"
POLICY = "policy"  # the self-edit policy LoRA (ReST-EM), kept apart from the knowledge slot
COMBINATIONS = ("linear", "cat", "svd", "ties", "dare_ties")
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class TargetScore:
    """Log-probability of a target continuation given its prompt."""

    logprob: float  # sum over the target's tokens
    n_tokens: int

    @property
    def mean_logprob(self) -> float:
        return self.logprob / max(self.n_tokens, 1)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SealError("model.device is 'cuda' but no CUDA device is visible; use 'cpu' or 'auto'")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto': bf16 on CUDA, float32 on a CPU.

    Measured on this project's 2-core AVX512-BF16/AMX CPU with SmolLM2-135M (`python
    evals/bench.py dtype`, 120 training steps of random lengths): bf16 trained 274 tokens/s
    against 258 in float32, decoded one stream at 19 against 24 tokens/s (5 candidates: 78
    against 69), and its memory kept growing (+680 MB after the first 30 steps; float32 flat);
    `seal demo` took 13.6 s against 13.7 s and answered 3/6 against 4/6.
    """
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def _pick(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The next token of each row: argmax at temperature 0, else a sample from the softmax at
    `temperature`, cut to the smallest set of tokens whose probability reaches `top_p`."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p  # the top token always stays
        probs = probs.scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
    return torch.multinomial(probs, 1).squeeze(-1)


def lora_config(adapt: AdaptConfig) -> LoraConfig:
    return _lora(adapt.rank, adapt.alpha, adapt.dropout, list(adapt.target_modules))


def _lora(r: int, alpha: float, dropout: float, targets: list[str]) -> LoraConfig:
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


class ModelRuntime:
    def __init__(self, model, tokenizer, device: torch.device, name: str, adapt: AdaptConfig):
        self.tokenizer = tokenizer
        self.device = device
        self.name = name
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # generation appends on the right
        try:
            self.model = get_peft_model(model, lora_config(adapt), adapter_name=ADAPTER)
        except ValueError as exc:
            raise SealError(
                f"cannot attach LoRA to {name}: {str(exc).splitlines()[0][:300]}; set "
                "adapt.target_modules to linear layer names of this model"
            ) from exc
        self.adapt = adapt
        self.model.eval()
        self._fingerprint: str | None = None
        self._stops: dict[bool, torch.Tensor] = {}  # _stop_tokens' tables, built on first use
        self._policy_source: tuple | None = None  # what the policy slot holds (None: nothing)
        # Fingerprints of the bases this one was merged from (agent/merge.py), oldest first: a
        # self-edit policy trained on any of them still fits (knowledge adapters must match).
        self.lineage: tuple[str, ...] = ()

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, model_cfg: ModelConfig, adapt: AdaptConfig) -> ModelRuntime:
        """The model of `model_cfg`, wrapped with the knowledge adapter. The device and dtype
        that 'auto' resolves to are written back into `model_cfg`: chosen once, and recorded
        in every config saved after (adapter manifests, the demo's config.json)."""
        hf_logging.disable_progress_bar()  # a 0.3 s load needs no progress bar
        if model_cfg.threads:
            torch.set_num_threads(model_cfg.threads)
        device = pick_device(model_cfg.device)
        dtype = pick_dtype(model_cfg.dtype, device)
        model_cfg.device, model_cfg.dtype = device.type, str(dtype).removeprefix("torch.")
        hub_offline(model_cfg.allow_download)
        path = resolve_model_path(model_cfg.name, model_cfg.cache_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise SealError(
                f"cannot load model {model_cfg.name!r} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}). Give a local folder or a model already in "
                f"the Hugging Face cache, use model.name = '{DEFAULT_MODEL}' for the embedded "
                "SmolLM2-135M-Instruct, or set model.allow_download = true to download it"
            ) from exc
        return cls(model.to(device), tokenizer, device, model_cfg.name, adapt)

    @property
    def base_model(self):
        return self.model.get_base_model()

    def fingerprint(self) -> str:
        """A short hash of the base model's config and weights: adapters are only valid on it.
        The dtype is left out (weights are hashed at bf16 precision), so an adapter trained on a
        checkpoint loaded in bf16 loads on the same checkpoint in float32, and back."""
        if self._fingerprint is None:
            config = self.base_model.config.to_diff_dict()  # as to_json_string() hashes it
            for key in ("dtype", "torch_dtype"):
                config.pop(key, None)
            digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
            with self.adapter_disabled(), torch.no_grad():
                for name, param in self.base_model.named_parameters():
                    if "lora_" in name:
                        continue
                    # rounded to bf16 first: a checkpoint loaded in bf16 or in float32 hashes alike
                    flat = param.detach().to(torch.bfloat16).float().flatten()
                    digest.update(name.encode())
                    digest.update(flat[:: max(1, flat.numel() // 4096)].cpu().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    # ---------------------------------------------------------------- prompts
    def format_prompt(self, text: str, chat: bool) -> str:
        if chat and self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return text

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode_left_padded(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(prompts), return_tensors="pt", padding=True, add_special_tokens=False
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        num_return_sequences: int = 1,
        stop_at_newline: bool = False,
        batch_size: int = 16,
        seed: int | None = None,
    ) -> list[list[str]]:
        """Completions for already formatted prompts: `num_return_sequences` per prompt.

        temperature 0 is greedy decoding. Prompts are left-padded into batches of `batch_size`
        rows; the candidates of a prompt share its prompt's forward pass.
        """
        if seed is not None:
            torch.manual_seed(seed)
        k = num_return_sequences
        outputs: list[list[str]] = []
        per_call = max(1, batch_size // k)
        with self.folded():
            for start in range(0, len(prompts), per_call):
                chunk = prompts[start : start + per_call]
                steps = self._steps(chunk, k, max_new_tokens, temperature, top_p, stop_at_newline)
                rows = torch.stack(list(steps), dim=1).cpu()  # rows of one prompt adjacent
                texts = self.tokenizer.batch_decode(rows, skip_special_tokens=True)
                outputs.extend(texts[i * k : (i + 1) * k] for i in range(len(chunk)))
        return outputs

    @contextlib.contextmanager
    def folded(self) -> Iterator[None]:
        """Inside, the active LoRA is folded into copies of the weights it adapts and its own
        path is off: a decoding step runs one matmul per adapted layer instead of three (22%
        less time per token with the default model). On leaving, the original weight tensors
        are put back, exactly (subtracting the delta again would not give bf16 weights back).
        For decoding only: nothing may train inside."""
        swaps = []
        with torch.no_grad():
            for module in self.model.modules():
                if not isinstance(module, LoraLayer) or module.disable_adapters:
                    continue
                names = [a for a in module.active_adapters if a in module.lora_A]
                weight = getattr(module.get_base_layer(), "weight", None)
                if not names or weight is None or module.merged:
                    continue
                delta = sum(module.get_delta_weight(a).float() for a in names)
                swaps.append((weight, weight.data))
                weight.data = (weight.data.float() + delta).to(weight.dtype)
        if not swaps:  # no adapter active (adapter_disabled, a fresh slot): nothing to fold
            yield
            return
        try:
            with self.adapter_disabled():
                yield
        finally:
            for weight, original in swaps:
                weight.data = original

    def _stop_tokens(self, stop_at_newline: bool) -> torch.Tensor:
        """A (vocab,) bool table of the tokens that end a row: EOS, and with `stop_at_newline`
        every token whose text holds a newline (the row keeps that token, as a stop string
        would). Built once per runtime."""
        table = self._stops.get(stop_at_newline)
        if table is None:
            tok = self.tokenizer
            size = max(len(tok), self.base_model.get_output_embeddings().weight.shape[0])
            table = torch.zeros(size, dtype=torch.bool)
            table[[i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None]] = True
            if stop_at_newline:
                texts = tok.batch_decode([[i] for i in range(len(tok))])
                table[[i for i, text in enumerate(texts) if "\n" in text]] = True
            table = self._stops[stop_at_newline] = table.to(self.device)
        return table

    def _steps(
        self,
        prompts: Sequence[str],
        k: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        stop_at_newline: bool,
    ) -> Iterator[torch.Tensor]:
        """The next token of every row, step by step: one forward pass over the prompts, its
        cache repeated for the `k` candidates of each; then one token per row per step, picked
        on the device, until every row has stopped (a stopped row gets padding). A batch without
        padding runs without an attention mask."""
        batch = self._encode_left_padded(prompts)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        padded = not bool(mask.all())
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(
            input_ids=ids,
            attention_mask=mask if padded else None,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]
        if k > 1:
            cache.batch_repeat_interleave(k)
            logits, mask, positions = (t.repeat_interleave(k, 0) for t in (logits, mask, positions))
        stops = self._stop_tokens(stop_at_newline)
        pad = self.tokenizer.pad_token_id
        position = positions[:, -1:]
        done = torch.zeros(logits.shape[0], dtype=torch.bool, device=self.device)
        for step in range(max_new_tokens):
            token = _pick(logits, temperature, top_p).masked_fill(done, pad)
            yield token
            done |= stops[token]
            if step + 1 == max_new_tokens or bool(done.all()):
                return
            position = position + 1
            if padded:
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            logits = self.model(
                input_ids=token[:, None],
                attention_mask=mask if padded else None,
                position_ids=position,
                cache=cache,
                use_cache=True,
            ).logits[:, -1]

    def stream(self, prompt: str, *, max_new_tokens: int, emit: Callable[[str], None]) -> str:
        """Greedy completion of one formatted prompt up to its first newline, handing the text
        to `emit` as it is decoded (a chat answer printed while it is written)."""
        [text] = self.stream_batch([prompt], max_new_tokens=max_new_tokens, emits=[emit])
        return text

    @torch.no_grad()
    def stream_batch(
        self, prompts: Sequence[str], *, max_new_tokens: int, emits: Sequence[Callable[[str], None]]
    ) -> list[str]:
        """Greedy completions of several prompts decoded as one batch, each up to its first
        newline, each row's new text handed to its `emit` as soon as it is whole characters
        (several users' questions answered and streamed at once)."""
        tok, stops = self.tokenizer, self._stop_tokens(stop_at_newline=True).tolist()
        ids: list[list[int]] = [[] for _ in prompts]
        shown, done = [""] * len(prompts), [False] * len(prompts)
        with self.folded():
            steps = self._steps(prompts, 1, max_new_tokens, 0.0, 1.0, stop_at_newline=True)
            for tokens in steps:
                for row, token in enumerate(tokens.tolist()):
                    if done[row]:  # padding after the row's stop token
                        continue
                    ids[row].append(token)
                    done[row] = stops[token]
                    text = tok.decode(ids[row], skip_special_tokens=True)
                    if len(text) > len(shown[row]) and not text.endswith("\ufffd"):
                        emits[row](text[len(shown[row]) :])
                        shown[row] = text
        texts = [tok.decode(row, skip_special_tokens=True) for row in ids]
        for emit, text, sent in zip(emits, texts, shown, strict=True):
            if len(text) > len(sent):  # a last piece held back as a partial character
                emit(text[len(sent) :])
        return texts

    # ---------------------------------------------------------------- scoring
    @torch.no_grad()
    def score(
        self, prompts: Sequence[str], targets: Sequence[str], batch_size: int = 16
    ) -> list[TargetScore]:
        """log p(target | prompt) for each pair, in one left-padded forward pass per batch."""
        if len(prompts) != len(targets):
            raise ValueError("prompts and targets must have the same length")
        scores: list[TargetScore] = []
        for start in range(0, len(prompts), batch_size):
            scores.extend(
                self._score_batch(
                    prompts[start : start + batch_size], targets[start : start + batch_size]
                )
            )
        return scores

    def _score_batch(self, prompts: Sequence[str], targets: Sequence[str]) -> list[TargetScore]:
        tok = self.tokenizer
        rows, target_lens = [], []
        for prompt, target in zip(prompts, targets, strict=True):
            p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            t_ids = tok(target, add_special_tokens=False)["input_ids"]
            if not t_ids:
                raise ValueError(f"empty target for prompt {prompt[:40]!r}")
            rows.append(p_ids + t_ids)
            target_lens.append(len(t_ids))
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):  # left padding: every target ends at the last column
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        keep = max(target_lens) + 1  # logits only where a target token is predicted
        logits = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=position_ids.to(self.device),
            logits_to_keep=keep,
            use_cache=False,
        ).logits.float()  # (B, keep, V)
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)  # predicts the last keep-1 tokens
        tail = ids[:, width - keep + 1 :].to(self.device)  # (B, keep-1)
        picked = logprobs.gather(-1, tail.unsqueeze(-1)).squeeze(-1)
        return [
            TargetScore(float(picked[i, picked.shape[1] - n :].sum()), n)
            for i, n in enumerate(target_lens)
        ]

    # ---------------------------------------------------------------- adapter life cycle
    def adapter_parameters(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if f".{ADAPTER}." in n]

    def _shape(self, config: LoraConfig) -> tuple:
        return (config.r, config.lora_alpha, frozenset(config.target_modules or ()))

    def _reshape(self, config: LoraConfig) -> None:
        """Give the knowledge slot another rank/alpha/targets, in place (no re-wrapping)."""
        if self._shape(config) == self._shape(self.model.peft_config[ADAPTER]):
            return
        model = self.model
        model.add_adapter(SCRATCH, config)
        model.set_adapter(SCRATCH)
        model.delete_adapter(ADAPTER)
        model.add_adapter(ADAPTER, config)
        model.set_adapter(ADAPTER)
        model.delete_adapter(SCRATCH)

    def reset_adapter(self, seed: int = 0) -> None:
        """Fresh LoRA weights of the configured shape (B = 0: the model equals its base)."""
        self._reshape(lora_config(self.adapt))
        torch.manual_seed(seed)
        for module in self.model.modules():
            if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
                module.reset_lora_parameters(ADAPTER, init_lora_weights=True)

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Train mode; on a CPU with eager attention, whose backward at these lengths (packed
        rows of a few hundred tokens) is cheaper than SDPA's flash kernel: 8% more training
        tokens per CPU-second measured with the default model. Generation and scoring keep
        SDPA."""
        base = self.base_model
        attention = base.config._attn_implementation
        if self.device.type == "cpu" and attention != "eager":
            base.set_attn_implementation("eager")
        self.model.train()
        try:
            yield
        finally:
            self.model.eval()
            if base.config._attn_implementation != attention:
                base.set_attn_implementation(attention)

    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        with self.model.disable_adapter():
            yield

    def write_adapter_files(self, folder: Path) -> None:
        """Write the adapter in PEFT format (weights + adapter_config.json) into `folder`."""
        self._write_slot_files(folder, ADAPTER)

    def _write_slot_files(self, folder: Path, slot: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        state = get_peft_model_state_dict(
            self.model, adapter_name=slot, save_embedding_layers=False
        )
        state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        save_file(
            state, folder / ADAPTER_WEIGHTS, metadata={"base_fingerprint": self.fingerprint()}
        )
        config = self.model.peft_config[slot].to_dict()
        config["base_model_name_or_path"] = self.name
        (folder / ADAPTER_CONFIG).write_text(
            json.dumps(config, indent=2, default=list) + "\n", encoding="utf-8"
        )

    def save_adapter(self, folder: Path, extra_files: dict[str, str] | None = None) -> Path:
        """Write the adapter (and `extra_files`) to `folder` atomically: all of it or nothing."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            self.write_adapter_files(tmp)
            for name, text in (extra_files or {}).items():
                (tmp / name).write_text(text, encoding="utf-8")
            for child in tmp.iterdir():
                with open(child, "rb") as fh:
                    os.fsync(fh.fileno())
            if folder.exists():
                shutil.rmtree(folder)
            os.rename(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_dir(folder.parent)
        return folder

    def _read_adapter(
        self, folder: Path, *, ancestors: bool = False
    ) -> tuple[LoraConfig, dict[str, torch.Tensor]]:
        """A saved adapter's LoRA config and tensors, checked to belong to this base model (or,
        with `ancestors`, to a base it was merged from)."""
        folder = Path(folder)
        weights = folder / ADAPTER_WEIGHTS
        try:
            config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
            state = load_file(str(weights))
            with safe_open(str(weights), framework="pt") as fh:
                saved_for = (fh.metadata() or {}).get("base_fingerprint")
        except (OSError, ValueError, SafetensorError) as exc:
            raise SealError(
                f"adapter {folder} is missing or unreadable ({weights.name}: {exc}): it may be "
                "truncated or corrupted; restore it from a backup or train it again"
            ) from exc
        fits = {self.fingerprint(), *(self.lineage if ancestors else ())}
        if saved_for and saved_for not in fits:
            raise SealError(
                f"adapter {folder} was trained on a different base model "
                f"(fingerprint {saved_for}, this model {self.fingerprint()})"
            )
        try:
            lora = _lora(
                config["r"],
                config["lora_alpha"],
                config.get("lora_dropout", 0.0),
                config["target_modules"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SealError(
                f"adapter {folder}: {ADAPTER_CONFIG} is not a LoRA config ({exc})"
            ) from exc
        return lora, state

    def _set_weights(self, folder: Path, state: dict[str, torch.Tensor], slot: str) -> None:
        result = set_peft_model_state_dict(self.model, state, adapter_name=slot)
        missing = [k for k in result.missing_keys if f".{slot}." in k]
        if missing:
            raise SealError(
                f"adapter {folder} lacks {len(missing)} LoRA tensors, e.g. {missing[0]}"
            )

    def load_adapter(self, folder: Path) -> None:
        """Load a saved adapter (PEFT format) as the knowledge adapter, whatever its rank."""
        lora, state = self._read_adapter(folder)
        try:
            self._reshape(lora)
        except ValueError as exc:  # targets this model does not have
            raise SealError(f"adapter {folder} does not fit model {self.name}: {exc}") from exc
        self._set_weights(folder, state, ADAPTER)

    def combine_adapters(
        self,
        folders: Sequence[Path],
        weights: Sequence[float],
        method: str,
        density: float = 0.5,
    ) -> None:
        """Make the knowledge adapter a weighted combination of saved adapters, with PEFT's
        `add_weighted_adapter` (`method` in COMBINATIONS; `cat` sums the ranks, the SVD and
        TIES-style methods keep the configured rank; `density` is the TIES/DARE keep fraction)."""
        if method not in COMBINATIONS:
            raise SealError(f"unknown combination {method!r}; choose one of {COMBINATIONS}")
        if not folders:
            raise SealError("nothing to combine: no adapters given")
        loaded = [self._read_adapter(folder) for folder in folders]  # each read once, checked
        parts = [f"knowledge-part-{i}" for i in range(len(folders))]
        model = self.model
        try:
            for name, folder, (lora, state) in zip(parts, folders, loaded, strict=True):
                try:
                    model.add_adapter(name, lora)
                except ValueError as exc:  # targets this model does not have
                    raise SealError(
                        f"adapter {folder} does not fit model {self.name}: {exc}"
                    ) from exc
                self._set_weights(folder, state, name)
            model.add_weighted_adapter(
                parts,
                list(weights),
                COMBINED,
                combination_type=method,
                svd_rank=self.adapt.rank if method == "svd" else None,
                density=density if method in ("ties", "dare_ties") else None,
            )
            combined = model.peft_config[COMBINED]
            self._reshape(combined)
            state = get_peft_model_state_dict(
                model, adapter_name=COMBINED, save_embedding_layers=False
            )
            set_peft_model_state_dict(model, state, adapter_name=ADAPTER)
        finally:
            model.set_adapter(ADAPTER)
            for name in [*parts, COMBINED]:
                if name in model.peft_config:
                    model.delete_adapter(name)

    # ---------------------------------------------------------------- merging into the base
    def _knowledge_layers(self) -> Iterator[tuple[str, LoraLayer]]:
        for name, module in self.model.named_modules():
            if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
                yield name, module

    def merge_adapter_into_base(self) -> dict[str, torch.Tensor]:
        """Add the knowledge adapter's delta (scale * B @ A) to the base weights it wraps, then
        zero the adapter: the model computes the same function with no adapter, up to rounding
        in the base weights' dtype (one rounding per weight: the sum is done in float32).
        Returns the replaced weights, for `restore_base`."""
        originals = {}
        with torch.no_grad():
            for name, module in self._knowledge_layers():
                weight = module.get_base_layer().weight
                originals[name] = weight.detach().clone()
                delta = module.get_delta_weight(ADAPTER).float()  # (out, in), like the weight
                weight.copy_((weight.float() + delta).to(weight.dtype))
        self.reset_adapter()
        self._fingerprint = None
        return originals

    def restore_base(self, originals: dict[str, torch.Tensor]) -> None:
        """Undo `merge_adapter_into_base` (the knowledge adapter is then loaded again)."""
        with torch.no_grad():
            for name, module in self._knowledge_layers():
                if name in originals:
                    module.get_base_layer().weight.copy_(originals[name])
        self._fingerprint = None

    def cast_base(self, dtype: torch.dtype) -> None:
        """Give the base weights another dtype; LoRA weights keep theirs (PEFT keeps them in
        float32 over a bf16 base). The config follows, so a saved base says its weights' dtype."""
        with torch.no_grad():
            for name, param in self.model.named_parameters():
                if "lora_" not in name:
                    param.data = param.data.to(dtype)
        self.base_model.config.dtype = dtype
        self._fingerprint = None

    def write_base_files(self, folder: Path) -> None:
        """Write the base model as it is now (no LoRA tensors) as a transformers folder."""
        clean = {
            key.replace(".base_layer.", "."): value
            for key, value in self.base_model.state_dict().items()
            if "lora_" not in key
        }
        self.base_model.save_pretrained(folder, state_dict=clean)
        self.tokenizer.save_pretrained(folder)

    # ---------------------------------------------------------------- self-edit policy slot
    # The self-edit policy (how the model writes self-edits, kept apart from what it knows) is a
    # second LoRA slot beside the knowledge adapter. It is active only inside `policy_active()`,
    # so writing self-edits with it never touches the knowledge adapter, and answering never
    # sees the policy.
    def has_policy(self) -> bool:
        return POLICY in self.model.peft_config

    def load_policy(self, folder: Path | None) -> None:
        """Put a saved policy LoRA (PEFT format) in the policy slot; None empties the slot.
        Loading the folder the slot already holds, unchanged on disk, reads nothing."""
        source = None
        if folder is not None:
            weights = Path(folder) / ADAPTER_WEIGHTS
            stamp = weights.stat().st_mtime_ns if weights.exists() else None
            source = (str(Path(folder).resolve()), stamp)
            if source == self._policy_source:
                return
        self._drop_policy()
        if folder is None:
            return
        # A policy learned to write self-edits on the base; merging knowledge into the base
        # does not change that skill, so a policy of an earlier base is kept.
        lora, state = self._read_adapter(Path(folder), ancestors=True)
        try:
            self.model.add_adapter(POLICY, lora)
        except ValueError as exc:
            raise SealError(f"policy {folder} does not fit model {self.name}: {exc}") from exc
        finally:
            self.model.set_adapter(ADAPTER)
        self._set_weights(Path(folder), state, POLICY)
        self._policy_source = source

    def reset_policy(self, policy: PolicyConfig) -> None:
        """A fresh policy slot of the policy's LoRA shape (B = 0: it writes like the base)."""
        self._drop_policy()
        torch.manual_seed(policy.seed)
        lora = _lora(policy.rank, policy.alpha, 0.0, list(policy.target_modules))
        try:
            self.model.add_adapter(POLICY, lora)
        except ValueError as exc:
            raise SealError(
                f"cannot attach the self-edit policy's LoRA to {self.name}: "
                f"{str(exc).splitlines()[0][:300]}; set policy.target_modules to linear layer "
                "names of this model"
            ) from exc
        finally:
            self.model.set_adapter(ADAPTER)
        self._policy_source = ("fresh", policy.seed)

    def _drop_policy(self) -> None:
        if self.has_policy():
            self.model.delete_adapter(POLICY)
            self.model.set_adapter(ADAPTER)
        self._policy_source = None

    def policy_parameters(self) -> list[torch.nn.Parameter]:
        """The policy slot's weights, for training it; the slot no longer matches its source."""
        self._policy_source = ("modified",)
        return [p for n, p in self.model.named_parameters() if f".{POLICY}." in n]

    @contextlib.contextmanager
    def policy_active(self) -> Iterator[None]:
        """Inside, the model runs with the policy LoRA instead of the knowledge adapter."""
        if not self.has_policy():
            raise SealError("no self-edit policy is loaded (load_policy or reset_policy first)")
        self.model.set_adapter(POLICY)
        try:
            yield
        finally:
            self.model.set_adapter(ADAPTER)

    def write_policy_files(self, folder: Path) -> None:
        """Write the policy slot in PEFT format (weights + adapter_config.json) into `folder`."""
        if not self.has_policy():
            raise SealError("no self-edit policy is loaded: nothing to write")
        self._write_slot_files(folder, POLICY)
