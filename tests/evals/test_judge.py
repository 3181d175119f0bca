import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.core.config import EvalConfig
from agent.core.errors import SealError
from evals.judge import JUDGE_PROMPT, LocalJudge, OpenAIJudge, make_judge, verdict


class ChatServer:
    """A local OpenAI-compatible endpoint on 127.0.0.1 that records the requests it gets.

    Each reply is the assistant's text (a str), a raw JSON payload (a dict), or None to close the
    connection without answering.
    """

    def __init__(self, replies: list, status: int = 200):
        self.replies, self.status, self.requests = list(replies), status, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                reply = server.replies.pop(0) if server.replies else {"error": "boom"}
                if reply is None:
                    self.close_connection = True
                    return
                if isinstance(reply, str):
                    reply = {"choices": [{"message": {"role": "assistant", "content": reply}}]}
                payload = json.dumps(reply).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


TRIPLES = [
    ("When was the tower built?", "1889", "It was built in 1889."),
    ("What is the capital of France?", "Paris", "Rome"),
]


def test_openai_judge_sends_seal_prompt_and_parses_verdicts():
    with ChatServer(["Yes.", "no"]) as server:
        judge = OpenAIJudge(server.url + "/", "gpt-test", api_key="sk-test", timeout=10)
        assert judge.grade(TRIPLES) == [1.0, 0.0]
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["Authorization"] == "Bearer sk-test"
    body = first["body"]
    assert body["model"] == "gpt-test" and body["temperature"] == 0
    [message] = body["messages"]
    assert message["role"] == "user"
    assert message["content"] == JUDGE_PROMPT.format(
        question=TRIPLES[0][0], gold=TRIPLES[0][1], pred=TRIPLES[0][2]
    )
    assert message["content"].startswith("You are a grading assistant.")
    assert "Gold answer: 1889\nStudent answer: It was built in 1889.\n" in message["content"]


def test_openai_judge_without_key_sends_no_authorization():
    with ChatServer(["yes"]) as server:
        assert OpenAIJudge(server.url, "m", api_key=None).grade(TRIPLES[:1]) == [1.0]
    assert "Authorization" not in server.requests[0]["headers"]


def test_server_error_is_a_user_error():
    with ChatServer([], status=500) as server:
        judge = OpenAIJudge(server.url, "m", api_key="k", timeout=10)
        with pytest.raises(SealError, match="judge endpoint .*/v1/chat/completions failed"):
            judge.grade(TRIPLES[:1])


def test_unreachable_endpoint_is_a_user_error():
    with ChatServer([]) as server:
        url = server.url
    with pytest.raises(SealError, match="eval.judge_url"):
        OpenAIJudge(url, "m", api_key=None, timeout=5).grade(TRIPLES[:1])


@pytest.mark.parametrize(
    "reply", [{"error": {"message": "quota"}}, {"choices": []}, {"choices": [{"text": "yes"}]}]
)
def test_reply_without_a_message_is_a_user_error(reply):
    with ChatServer([reply]) as server:
        judge = OpenAIJudge(server.url, "m", api_key=None, timeout=10)
        with pytest.raises(SealError, match="failed"):
            judge.grade(TRIPLES[:1])


@pytest.mark.parametrize("reply", [None, {"choices": ["yes"]}, ["yes"]])
def test_dropped_connection_or_odd_reply_is_a_user_error(reply):
    with ChatServer([reply]) as server:
        judge = OpenAIJudge(server.url, "m", api_key=None, timeout=10)
        with pytest.raises(SealError, match="failed"):
            judge.grade(TRIPLES[:1])


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", 1.0),
        ("Yes.", 1.0),
        ("  'yes'", 1.0),
        ("**Yes**", 1.0),
        ('"YES"', 1.0),
        ("no", 0.0),
        ("No, it is not", 0.0),
        ("", 0.0),
        ("The answer is yes", 0.0),
    ],
)
def test_verdict(text, value):
    assert verdict(text) == value


def test_make_judge(runtime, monkeypatch):
    assert make_judge(EvalConfig(), runtime) is None
    assert isinstance(make_judge(EvalConfig(judge="local"), runtime), LocalJudge)
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-env")
    judge = make_judge(
        EvalConfig(judge="openai", judge_url="http://h/v1", judge_api_key_env="MY_JUDGE_KEY"),
        runtime,
    )
    assert isinstance(judge, OpenAIJudge)
    assert judge.api_key == "sk-env" and judge.url == "http://h/v1/chat/completions"


def test_local_judge_returns_one_verdict_per_triple(runtime):
    verdicts = LocalJudge(runtime).grade(TRIPLES)
    assert len(verdicts) == 2 and set(verdicts) <= {0.0, 1.0}
