"""`seal serve` as a real process, for the tests, the benchmark and the crash trials: a server
folder with users and their keys, the server started on a free port of 127.0.0.1, its address
read from its first line, and a kill -9 or a clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.core.model_source import DEFAULT_MODEL, resolve_model_path
from agent.serve.users import UserRegistry
from stores.state import check_home

REPO = Path(__file__).resolve().parents[1]
READY = re.compile(r"seal serve: (http://\S+?)/? \(users")


def add_users(home: Path, names: list[str]) -> dict[str, str]:
    """Users and their keys, in a server folder (created if new)."""
    check_home(home, create=True)
    registry = UserRegistry(home)
    return {name: registry.add(name) for name in names}


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    lines: list[str] = field(default_factory=list)  # everything it printed

    def kill(self) -> None:
        """kill -9, as a crash would."""
        self.process.kill()
        self.process.wait(30)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode


def start_server(
    home: Path,
    settings: list[str],
    *,
    config: Path | None = None,
    timeout: float = 300.0,
    threads: int | None = None,
) -> ServerProcess:
    """Start `seal serve --port 0 --home HOME` with `--set` `settings`; returns once it listens."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    args = [sys.executable, "-m", "agent.cli", "serve", "--home", str(home), "--port", "0"]
    args += ["--config", str(config)] if config else []
    process = subprocess.Popen(
        args + [a for s in settings for a in ("--set", s)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            match = READY.search(line)
            if match and not found.is_set():
                url.append(match.group(1))
                found.set()
        found.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found.wait(0.2):
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("seal serve did not start:\n" + "\n".join(lines[-30:]))
    if not url:
        process.wait(10)
        raise RuntimeError("seal serve exited:\n" + "\n".join(lines[-30:]))
    return ServerProcess(process, url[0], lines)


def tiny_settings(model_dir) -> list[str]:
    """`--set` values for a tiny test model folder (tests/conftest.py): short generations,
    one epoch, no retention gate (a tiny random model learns too little to pass it)."""
    return [
        f"model.name={model_dir}",
        "model.device=cpu",
        "model.dtype=float32",
        "adapt.epochs=1",
        "adapt.rank=8",
        "self_edit.max_new_tokens=8",
        "eval.max_answer_tokens=6",
        "update.gate=false",  # the tiny random model learns too little to pass retention
        "chat.seconds_per_passage=1",
        "chat.max_answer_tokens=6",
    ]


def make_tiny_model(folder: Path) -> Path:
    """A tiny random Llama with the default model's tokenizer, saved to `folder` (once): what the
    crash trials serve, so that a trial costs seconds rather than an update of the real model."""
    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    # Deferred: torch and transformers load only for the harness that builds the model.
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL))
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
