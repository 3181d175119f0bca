"""`seal serve` as a user meets it: a real server process on 127.0.0.1 (the tiny model), the
official `openai` client, plain HTTP with SSE as curl reads it, two users with their own keys.

One server for the module (starting one costs seconds); each test uses its own documents."""

import concurrent.futures
import json
import os
import sys
import time
from pathlib import Path

import httpx
import openai
import pexpect
import pytest

from evals.news_server import NewsWorld, Route, start
from evals.serve_process import add_users, start_server, tiny_settings

PARIS = (
    "The capital of France is Paris. Paris is a city on the river Seine. "
    "The tower in Paris was built in 1889. Many people visit the museum every year."
)
ROME = "The capital of Italy is Rome. Rome is a city on the river Tiber."
MAX_UPLOAD = 20_000


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir):
    home = tmp_path_factory.mktemp("serve")
    keys = add_users(home, ["alice", "bob"])
    # the SSRF test's redirecting server lives on 127.0.0.2; everything else stays refused
    settings = tiny_settings(tiny_model_dir) + [
        'network.allowed_networks=["127.0.0.2/32"]',
        f"serve.max_upload_bytes={MAX_UPLOAD}",
    ]
    process = start_server(home, settings, threads=1)
    yield process, keys, home
    assert process.stop() == 0, "\n".join(process.lines[-20:])
    failures = [line for line in process.lines if "Traceback" in line or "failed" in line]
    assert not failures, "\n".join(process.lines)


def client(server, user="alice") -> openai.OpenAI:
    process, keys, _ = server
    return openai.OpenAI(base_url=process.url + "/v1", api_key=keys[user], max_retries=0)


def http(server, user="alice") -> httpx.Client:
    process, keys, _ = server
    headers = {"Authorization": f"Bearer {keys[user]}"} if user else {}
    return httpx.Client(base_url=process.url, headers=headers, timeout=60)


def wait_state(api: httpx.Client, doc_id: str, states=("learned", "refused"), timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = api.get(f"/v1/documents/{doc_id}").json()
        if doc["state"] in states:
            return doc
        time.sleep(0.3)
    raise AssertionError(f"{doc_id} still {doc['state']}")


def test_openai_client_models_chat_and_stream(server):
    c = client(server)
    assert [m.id for m in c.models.list()] == ["seal", "base"]
    reply = c.chat.completions.create(
        model="seal", messages=[{"role": "user", "content": "When was the tower built?"}]
    )
    assert reply.object == "chat.completion" and reply.choices[0].finish_reason == "stop"
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.usage.total_tokens > 0
    stream = c.chat.completions.create(
        model="base",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stream=True,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert text.strip()
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        c.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="non-empty list"):
        c.chat.completions.create(model="seal", messages=[])


def test_plain_http_sse_as_curl_reads_it(server):
    body = {"model": "seal", "stream": True, "messages": [{"role": "user", "content": "Rome?"}]}
    with http(server).stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2][len("data: ") :])
    assert last["choices"][0]["finish_reason"] == "stop" and "adapter_version" in last["seal"]


def test_auth_is_required_and_checked(server):
    process, _, _ = server
    anonymous = httpx.Client(base_url=process.url, timeout=30)
    for method, path in [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/status"),
        ("POST", "/v1/documents"),
        ("GET", "/v1/updates"),
        ("POST", "/v1/rollback"),
        ("DELETE", "/v1/documents/doc-00000000-1"),
    ]:
        for headers in (
            {},
            {"Authorization": "Bearer sk-seal-wrong"},
            {"Authorization": "Basic x"},
        ):
            response = anonymous.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["type"] == "authentication_error"
    page = anonymous.get("/")
    assert page.status_code == 200 and "seal" in page.text  # the page holds no user data
    assert page.headers["x-frame-options"] == "DENY"
    assert (
        "access-control-allow-origin"
        not in anonymous.get("/", headers={"Origin": "http://evil.example"}).headers
    )


def test_feed_learn_answer_history_and_undo(server):
    api = http(server)
    fed = api.post("/v1/documents", json={"text": PARIS, "title": "paris"})
    assert fed.status_code == 202, fed.text
    doc = fed.json()
    assert doc["poll"] == f"/v1/documents/{doc['id']}"
    assert wait_state(api, doc["id"])["state"] == "learned"
    status = api.get("/v1/status").json()
    assert status["adapter_version"] >= 1 and status["update"]["learning"] is False
    reply = client(server).chat.completions.create(
        model="seal", messages=[{"role": "user", "content": "When was the tower built?"}]
    )
    assert reply.model_extra["seal"]["adapter_version"] == status["adapter_version"]
    # the same text again is a duplicate, not a second document
    again = api.post("/v1/documents", json={"text": PARIS, "title": "paris"}).json()
    assert again["duplicate"] and again["id"] == doc["id"] and again["state"] == "learned"
    history = api.get("/v1/updates").json()["data"]
    kinds = [
        (h["kind"], h.get("decision") or (h.get("detail") or {}).get("decision")) for h in history
    ]
    assert ("update", "accept") in kinds and ("gate", "learn") in kinds
    # a fact stated in a chat turn goes through the gate
    said = client(server).chat.completions.create(
        model="seal", messages=[{"role": "user", "content": "Our office moved to Rome."}]
    )
    assert said.model_extra["seal"]["gate"], said.model_extra
    undo = api.post("/v1/rollback", json={})
    if undo.status_code == 409:  # the stated fact is being learned: wait for it
        time.sleep(5)
        undo = api.post("/v1/rollback", json={})
    assert undo.status_code == 200, undo.text
    assert api.get("/v1/status").json()["adapter_version"] == undo.json()["to"]
    forgot = api.delete(f"/v1/documents/{doc['id']}")
    assert forgot.status_code == 200 and forgot.json()["deleted"]
    assert api.get(f"/v1/documents/{doc['id']}").json()["state"] == "forgotten"


def test_upload_limits_and_bad_input(server, tmp_path):
    api = http(server)
    big = api.post("/v1/documents", files={"file": ("big.txt", b"word " * MAX_UPLOAD)})
    assert big.status_code == 413 and "bytes" in big.json()["error"]["message"]
    exe = api.post("/v1/documents", files={"file": ("tool.exe", b"MZ\x90\x00")})
    assert exe.status_code == 415
    binary = api.post("/v1/documents", files={"file": ("notes.txt", b"\x00\x01\x02" * 50)})
    assert binary.status_code == 400 and "binary" in binary.json()["error"]["message"]
    for body in ({"url": "/etc/passwd"}, {"url": "file:///etc/passwd"}, {"nothing": 1}):
        assert api.post("/v1/documents", json=body).status_code == 400, body
    assert (
        api.post(
            "/v1/documents", content=b"{not json", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    ok = api.post("/v1/documents", files={"file": ("rome.md", ROME.encode())})
    assert ok.status_code == 202 and ok.json()["title"] == "rome"


def test_url_feeding_refuses_every_non_public_address_and_redirects_to_one(server):
    api = http(server)
    world = NewsWorld(seed=3)
    world.publish(1)
    trap = start(world)  # 127.0.0.1: loopback, never allowed here
    relay = start(world, host="127.0.0.2")  # allowed by the test's network.allowed_networks
    try:
        relay.route("/to-trap", Route(302, b"", {"Location": f"{trap.base}/rss.xml"}))
        relay.route("/to-metadata", Route(302, b"", {"Location": "http://169.254.169.254/x"}))
        port = trap.server_address[1]
        refused = [
            f"{trap.base}/rss.xml",
            f"http://localhost:{port}/rss.xml",
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://0.0.0.0/",
            f"{relay.base}/to-trap",
            f"{relay.base}/to-metadata",
        ]
        for url in refused:
            response = api.post("/v1/documents", json={"url": url})
            assert response.status_code == 400, (url, response.text)
            assert response.json()["error"]["code"] == "address_refused", url
        assert trap.requests == []  # not one request reached the loopback server
        fed = api.post("/v1/documents", json={"url": f"{relay.base}/rss.xml"})
        assert fed.status_code == 202, fed.text
    finally:
        trap.shutdown()
        relay.shutdown()


def test_two_users_never_reach_each_others_memory(server):
    alice, bob = http(server, "alice"), http(server, "bob")
    doc = alice.post(
        "/v1/documents", json={"text": ROME + " The bridge in Rome was built in 1990."}
    ).json()
    wait_state(alice, doc["id"])
    versions = alice.get("/v1/status").json()["adapter_versions"]
    other = doc["id"]
    checks = {
        "GET document": bob.get(f"/v1/documents/{other}"),
        "DELETE document": bob.delete(f"/v1/documents/{other}"),
        "rollback to alice's version": bob.post("/v1/rollback", json={"version": max(versions)}),
        "undo with nothing learned": bob.post("/v1/rollback", json={}),
    }
    for what, response in checks.items():
        assert response.status_code in (403, 404, 409), (what, response.text)
        assert "alice" not in response.text and "Rome" not in response.text, what
    assert bob.get("/v1/documents").json()["data"] == []
    assert all("Rome" not in json.dumps(h) for h in bob.get("/v1/updates").json()["data"])
    status = bob.get("/v1/status").json()
    assert status["adapter_version"] == 0 and status["counts"]["documents"] == 0
    asked = client(server, "bob").chat.completions.create(
        model="seal",
        messages=[{"role": "user", "content": "Which river flows through Rome?"}],
        extra_body={"rag": True},
    )
    assert asked.model_extra["seal"] == {"adapter_version": 0, "mode": "closed-book", "gate": []}
    mine = client(server, "alice").chat.completions.create(
        model="seal",
        messages=[{"role": "user", "content": "Which river flows through Rome?"}],
        extra_body={"rag": True},
    )
    assert mine.model_extra["seal"]["mode"] == "with retrieved passages"
    assert alice.get(f"/v1/documents/{other}").status_code == 200  # still alice's own


def test_seal_chat_url_shares_the_servers_memory(server, tmp_path):
    process, keys, _ = server
    doc = tmp_path / "museum.txt"
    doc.write_text(
        "The museum in Paris has many old paintings. The king of France lived in a large palace."
    )
    env = {**os.environ, "SEAL_API_KEY": keys["bob"], "TERM": "dumb"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "agent.cli", "chat", "--url", process.url],
        cwd=str(Path(__file__).resolve().parents[2]),
        env=env,
        encoding="utf-8",
        timeout=60,
    )
    child.expect("as bob, adapter")
    child.expect_exact("you> ")
    child.sendline(f"/feed {doc}")
    child.expect(r"stored 'museum' as (doc-\S+);")
    doc_id = child.match.group(1)
    child.expect_exact("you> ")
    child.sendline("Who lived in the palace?")
    child.expect_exact("seal> ")
    child.expect_exact("you> ")
    child.sendline("/history")
    child.expect(f"gate {doc_id}: learn")
    child.expect_exact("you> ")
    child.sendline("/status")
    child.expect("user: +bob")
    child.expect_exact("you> ")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    # the browser user with the same key sees the same document
    assert http(server, "bob").get(f"/v1/documents/{doc_id}").json()["title"] == "museum"


def test_questions_for_one_adapter_are_answered_in_one_batch(server):
    process, _, _ = server
    c = client(server, "bob")
    question = [{"role": "user", "content": "What is the capital of Italy?"}]
    alone = c.chat.completions.create(model="base", messages=question).choices[0].message.content
    before = sum("answered in one batch" in line for line in process.lines)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [
            pool.submit(
                lambda: "".join(
                    ch.choices[0].delta.content or ""
                    for ch in c.chat.completions.create(
                        model="base", messages=question, stream=True
                    )
                )
            )
            for _ in range(6)
        ]
        streamed = [f.result() for f in futures]
    assert all(text.strip() == alone for text in streamed), (alone, streamed)
    time.sleep(0.5)
    assert sum("answered in one batch" in line for line in process.lines) > before
