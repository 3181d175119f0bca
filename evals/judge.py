"""Optional answer judge, for parity with SEAL's GPT-4.1 grader (off by default).

`openai`: any OpenAI-compatible chat-completions endpoint. `local`: the loaded model itself, with
its knowledge adapter disabled (a 135M model is a weak judge; use it to exercise the path, not to
report numbers).
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.request
from collections.abc import Sequence

from agent.core.config import EvalConfig
from agent.core.errors import SealError

# SEAL's grading prompt (arXiv 2506.10943, Appendix B.4).
JUDGE_PROMPT = (
    "You are a grading assistant. Your job is to determine whether a student's answer correctly "
    "answers the question based solely on the provided gold answer. Do not use any outside "
    "knowledge. The student answer can include additional information, but it must at least fully "
    "convey the gold answer and must not contradict it. Ignore style, phrasing, or extra details "
    "that do not affect correctness. Respond ONLY with 'yes' or 'no'.\n"
    "Question: {question}\nGold answer: {gold}\nStudent answer: {pred}\n"
    "Is the student answer correct based solely on the gold answer? Respond 'yes' or 'no'."
)

Triple = tuple[str, str, str]  # (question, gold, prediction)


def verdict(text: str) -> float:
    return float(text.strip().lower().lstrip("'\"*").startswith("yes"))


class OpenAIJudge:
    def __init__(self, url: str, model: str, api_key: str | None, timeout: float = 60.0):
        self.url = url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout = model, api_key, timeout

    def _ask(self, prompt: str) -> str:
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0,
                "max_tokens": 3,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                reply = json.loads(resp.read())
            return reply["choices"][0]["message"]["content"] or ""
        except (
            OSError,  # includes urllib's URLError
            http.client.HTTPException,
            TimeoutError,
            KeyError,
            IndexError,
            TypeError,
            ValueError,
        ) as exc:
            raise SealError(
                f"judge endpoint {self.url} failed ({exc}); check eval.judge_url and the API key, "
                "or set eval.judge = 'none'"
            ) from exc

    def grade(self, triples: Sequence[Triple]) -> list[float]:
        return [
            verdict(self._ask(JUDGE_PROMPT.format(question=q, gold=g, pred=p)))
            for q, g, p in triples
        ]


class LocalJudge:
    def __init__(self, runtime):
        self.runtime = runtime

    def grade(self, triples: Sequence[Triple]) -> list[float]:
        prompts = [
            self.runtime.format_prompt(JUDGE_PROMPT.format(question=q, gold=g, pred=p), chat=True)
            for q, g, p in triples
        ]
        with self.runtime.adapter_disabled():
            outs = self.runtime.generate(prompts, max_new_tokens=3)
        return [verdict(o[0]) for o in outs]


def make_judge(cfg: EvalConfig, runtime):
    if cfg.judge == "local":
        return LocalJudge(runtime)
    if cfg.judge == "openai":
        return OpenAIJudge(cfg.judge_url, cfg.judge_model, os.environ.get(cfg.judge_api_key_env))
    return None
