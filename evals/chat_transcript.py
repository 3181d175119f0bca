"""Record a real `seal chat` session with the default model: feed a SQuAD passage, ask while it
learns, wait for the update, quit, restart, ask again closed-book. Writes the raw terminal text
(escape codes removed) to results/chat/transcript.txt.

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python evals/chat_transcript.py
"""

import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pexpect

from agent.core.answering import Question, answer_and_grade, mean_of
from agent.core.config import load_config
from agent.core.runtime import ModelRuntime
from stores.state import State

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "chat"
INDEX = 45  # SQuAD eval200 passage "Doctor Who"


def score_passage(home: Path, passage: dict) -> dict:
    """The passage's five SQuAD questions, closed-book, with the base model and with the
    adapter the chat committed: mean gold log-probability per token and gold-contained rate."""

    cfg = load_config()
    runtime = ModelRuntime.load(cfg.model, cfg.adapt)
    questions = [Question(q["question"], q["answer"]) for q in passage["questions"]]
    scores = {}
    with State.open(home, read_only=True) as state:
        for version in (0, state.adapters.current()):
            state.adapters.load_into(runtime, version)
            graded = answer_and_grade(runtime, questions, cfg.eval)
            scores[f"v{version}" if version else "base"] = {
                "gold_logprob": round(mean_of(graded, "gold_logprob"), 3),
                "contained": mean_of(graded, "contained"),
                "answers": [g.prediction for g in graded],
            }
    return scores


def main() -> None:
    passage = json.loads((ROOT / "agent/core/data/squad_eval200.json").read_text())[INDEX]
    work = Path(tempfile.mkdtemp(prefix="seal-chat-"))
    doc = work / f"{passage['title']}.txt"
    doc.write_text(passage["context"] + "\n", encoding="utf-8")
    home = work / "home"
    log = open(OUT / "transcript.raw", "w", encoding="utf-8")  # noqa: SIM115
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TERM": "xterm"}
    question = passage["questions"][1]["question"]
    timings = {}

    def start() -> pexpect.spawn:
        log.write(f"$ seal chat --home {home}\n")
        child = pexpect.spawn(
            sys.executable,
            ["-m", "agent.cli", "chat", "--home", str(home)],
            cwd=str(ROOT), env=env, encoding="utf-8", timeout=600, dimensions=(40, 200),
        )  # fmt: skip
        child.logfile_read = log
        child.expect_exact("you> ")
        return child

    def send(child, line, *wait):
        child.sendline(line)
        for text in wait:
            child.expect_exact(text)
        child.expect_exact("you> ")

    t0 = time.monotonic()
    child = start()
    timings["start_s"] = time.monotonic() - t0
    send(child, "/status")
    send(child, question, "seal> ")
    t0 = time.monotonic()
    send(child, f"/feed {doc}", "learning in the background")
    timings["feed_and_gate_s"] = time.monotonic() - t0
    send(child, "Which comedian did a parody where a Dalek appears?", "seal> ")
    child.expect_exact("learned: adapter v")
    timings["feed_to_commit_s"] = time.monotonic() - t0
    child.expect_exact("you> ")
    send(child, question, "seal> ")
    send(child, "Our office moved to Lyon.", "seal> ")
    child.expect(r"learned: adapter v|not learned")
    child.expect_exact("you> ")
    send(child, "/history")
    child.sendline("/quit")
    child.expect(pexpect.EOF)

    child = start()
    send(child, question, "seal> ")
    send(child, "Where did our office move?", "seal> ")
    send(child, "/status")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    log.close()

    timings["passage_questions"] = score_passage(home, passage)
    raw = (OUT / "transcript.raw").read_text(encoding="utf-8")
    lines = raw.replace("\r\n", "\n").split("\n")
    lines = [line.split("\r\x1b[K")[-1] for line in lines]  # what a terminal shows: erased
    clean = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", "\n".join(lines)).replace("\r", "")
    (OUT / "transcript.txt").write_text(clean.replace(str(work), "/tmp/seal-chat"), "utf-8")
    (OUT / "transcript.raw").unlink()
    (OUT / "timings.json").write_text(json.dumps(timings, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(timings, indent=2))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
