"""`python evals/bench.py serve`: `seal serve` under load while it learns.

A server (the configured model, by default SmolLM2-135M) with `users` users; one user feeds a
document, and once its update runs, `clients` streaming chats (spread over the users, through the
official `openai` client) are sent at once, `rounds` times. Each request's time to first token,
tokens and adapter version are recorded; the answers during the update must come from the last
committed adapter of their user. Then the web page is driven in headless Chromium (feed, learned,
ask, undo) and photographed.
"""

from __future__ import annotations

import concurrent.futures
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import openai

from evals.serve_page import drive, find_browser, open_browser, screenshot
from evals.serve_process import add_users, start_server

DOCUMENT = (
    "Halvorsen Robotics was founded in 2019 by the engineer Marta Lindqvist in the town of "
    "Tromso. Its first product, the Kestrel arm, sorted fish on trawlers. In 2023 the company "
    "moved its workshop to Bergen and hired forty people."
)
QUESTIONS = [
    "Who founded Halvorsen Robotics?",
    "What is the capital of France?",
    "Where did the company move its workshop?",
    "What did the Kestrel arm do?",
]
PAGE_TEXT = "The lighthouse of Varnes was painted red in 1987 by the keeper Ola Brekke."


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def one_chat(url: str, key: str, question: str) -> dict:
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=900)
    start = time.perf_counter()
    first, text, usage, seal = None, "", None, {}
    try:
        stream = client.chat.completions.create(
            model="seal", messages=[{"role": "user", "content": question}], stream=True
        )
        for chunk in stream:
            piece = chunk.choices[0].delta.content if chunk.choices else None
            if piece and first is None:
                first = time.perf_counter() - start
            text += piece or ""
            usage = chunk.usage or usage
            seal = (chunk.model_extra or {}).get("seal") or seal
    except openai.APIError as exc:
        return {"failed": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - start}
    return {
        "failed": None,
        "ttft_s": first if first is not None else time.perf_counter() - start,
        "seconds": time.perf_counter() - start,
        "tokens": usage.completion_tokens if usage else 0,
        "version": seal.get("adapter_version"),
        "answer": text,
    }


def learning(api: httpx.Client) -> bool:
    return bool(api.get("/v1/status").json()["update"]["learning"])


def run(
    settings: list[str],
    config: Path | None = None,
    users: int = 4,
    clients: int = 8,
    rounds: int = 1,
    *,
    page: Path | None = None,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="seal-bench-serve-") as tmp:
        names = [f"user{i}" for i in range(users)]
        keys = add_users(Path(tmp) / "home", [*names, "web"])
        started = time.perf_counter()
        server = start_server(Path(tmp) / "home", settings, config=config)
        startup_s = time.perf_counter() - started
        try:
            return _load(server.url, keys, names, clients, rounds, startup_s, page)
        finally:
            server.stop()


def _load(url, keys, names, clients, rounds, startup_s, page) -> dict:
    learner = httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {keys[names[0]]}"}, timeout=120
    )
    before = {n: _version(url, keys[n]) for n in names}
    fed = learner.post("/v1/documents", json={"text": DOCUMENT, "title": "Halvorsen Robotics"})
    fed.raise_for_status()
    doc = fed.json()
    deadline = time.monotonic() + 120
    while not learning(learner) and time.monotonic() < deadline:
        time.sleep(0.2)
    update_running = learning(learner)
    results = []
    wall = 0.0
    all_during = update_running
    for _ in range(rounds):
        jobs = [(names[i % len(names)], QUESTIONS[i % len(QUESTIONS)]) for i in range(clients)]
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(one_chat, url, keys[n], q) for n, q in jobs]
            round_results = [
                f.result() | {"user": n} for f, (n, _) in zip(futures, jobs, strict=True)
            ]
        wall += time.perf_counter() - start
        all_during = all_during and learning(learner)
        results += round_results
    ok = [r for r in results if not r["failed"]]
    wrong_version = [r for r in ok if r["version"] != before[r["user"]]]
    ttft = [r["ttft_s"] for r in ok]
    tokens = sum(r["tokens"] for r in ok)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        state = learner.get(doc["poll"]).json()
        if state["state"] in ("learned", "refused"):
            break
        time.sleep(2)
    result = {
        "clients": clients,
        "users": len(names),
        "requests": len(results),
        "failed": len(results) - len(ok),
        "ttft_p50_s": round(statistics.median(ttft), 2) if ttft else None,
        "ttft_p95_s": round(percentile(ttft, 0.95), 2) if ttft else None,
        "tokens_per_s": round(tokens / wall, 2) if wall else None,
        "during_update": bool(all_during and update_running),
        "answers_from_last_committed_adapter": len(ok) - len(wrong_version),
        "completion_tokens": tokens,
        "load_wall_s": round(wall, 2),
        "server_startup_s": round(startup_s, 1),
        "update": {"document": doc["id"], "state": state["state"], "reason": state["reason"]},
        "failures": [r["failed"] for r in results if r["failed"]],
        "requests_detail": [
            {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k != "answer"}
            for r in results
        ],
        "sample_answers": [
            {"user": r["user"], "answer": r["answer"], "ttft_s": round(r["ttft_s"], 2)}
            for r in ok[: len(names)]
        ],
    }
    if page is not None:
        result["page"] = _page(url, keys["web"], page)
    return result


def _version(url: str, key: str) -> int:
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    return api.get("/v1/status").json()["adapter_version"]


def _page(url: str, key: str, path: Path) -> dict:
    if find_browser() is None:
        return {"skipped": "no chromium/chromedriver installed"}
    driver = open_browser()
    try:
        seen = drive(
            driver, url + "/", key, PAGE_TEXT, "Who painted the lighthouse of Varnes?", timeout=900
        )
        screenshot(driver, path)
    finally:
        driver.quit()
    return seen | {"screenshot": str(path)}


def report(result: dict) -> str:
    return (
        f"seal serve: {result['clients']} concurrent streaming chats from {result['users']} users, "
        f"{result['requests']} requests, {result['failed']} failed; time to first token p50 "
        f"{result['ttft_p50_s']} s, p95 {result['ttft_p95_s']} s; {result['tokens_per_s']} "
        f"tokens/s; during an update: {result['during_update']} "
        f"({result['answers_from_last_committed_adapter']} answers from the last committed "
        f"adapter); the update: {result['update']['state']}"
    )
