"""End to end with the real default model (SmolLM2-135M-Instruct) in real processes: feed a
SQuAD passage to one `seal chat`, quit, start another, and ask one of its questions closed-book.
The gold answer must be more likely than before the passage was fed."""

import json
import os
import sys
import time
from pathlib import Path

import pexpect
import pytest

from agent.core.answering import question_prompt
from agent.core.config import load_config
from agent.core.runtime import ModelRuntime
from stores.state import State

ROOT = Path(__file__).resolve().parents[1]
INDEX = 45  # "Doctor Who": 86 words, one passage; SEAL's implications raise its answers most
QUESTION = 1  # "Who often plays the Fourth Doctor in comedy parodies?" -> "Jon Culshaw"


def spawn(home: Path) -> pexpect.spawn:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TERM": "xterm"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "agent.cli", "chat", "--home", str(home)],
        cwd=str(ROOT),
        env=env,
        encoding="utf-8",
        timeout=300,
        dimensions=(40, 200),
    )
    child.expect_exact("/help lists the commands")
    child.expect_exact("you> ")
    return child


@pytest.mark.slow
def test_a_fed_passage_is_recalled_closed_book_after_a_restart(tmp_path):
    passage = json.loads((ROOT / "agent/core/data/squad_eval200.json").read_text())[INDEX]
    question = passage["questions"][QUESTION]
    doc = tmp_path / f"{passage['title']}.txt"
    doc.write_text(passage["context"] + "\n", encoding="utf-8")
    home = tmp_path / "home"

    cfg = load_config()
    runtime = ModelRuntime.load(cfg.model, cfg.adapt)
    prompt = question_prompt(runtime, question["question"], cfg.eval)
    [before] = runtime.score([prompt], [question["answer"]])

    child = spawn(home)
    child.sendline(f"/feed {doc}")
    child.expect_exact("learning in the background")
    start = time.monotonic()
    child.expect_exact("you> ")
    child.sendline("Which comedian did a parody where a Dalek appears?")  # while it learns
    child.expect_exact("seal> ")
    child.expect_exact("you> ")
    child.expect_exact("learned: adapter v1")
    print(f"update took {time.monotonic() - start:.0f} s")
    child.expect_exact("you> ")
    child.sendline("/quit")
    child.expect(pexpect.EOF)

    child = spawn(home)
    child.sendline(question["question"])
    child.expect_exact("seal> ")
    child.expect_exact("you> ")
    child.sendline("/history")
    child.expect_exact("accept -> v1")
    child.expect_exact("you> ")
    child.sendline("/quit")
    child.expect(pexpect.EOF)

    with State.open(home, read_only=True) as state:
        assert state.adapters.load_into(runtime) == 1
    [after] = runtime.score([prompt], [question["answer"]])
    assert after.mean_logprob > before.mean_logprob, (before, after)
