"""`seal chat --url URL`: the terminal chat talking to a running `seal serve`, so a terminal user
and a browser user (the same API key) share one memory. The commands are `seal chat`'s; each is
one request to the server's API, and answers stream as the server writes them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from agent.core.errors import SealError
from agent.documents import folder_files, is_url

PROMPT = "you> "
HELP = """commands (answered by the server at {url}):
  /feed PATH|URL|DIR   send a document; the server stores it and learns it if the gate agrees
  /status              adapter version, counts, the running update
  /history             updates and gate decisions, newest first
  /undo                roll back the last update
  /forget DOC          forget a document (its id, as /history and /feed show it)
  /rag on|off          answer with retrieved passages, or closed-book
  /quit                leave (everything learned stays on the server)
anything else is a question, or a fact to remember"""


class RemoteChat:
    def __init__(self, url: str, key: str | None, rag: bool | None):
        import httpx  # here, not at the top: `seal --help` need not load an HTTP client

        self.httpx = httpx
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        timeout = httpx.Timeout(30.0, read=600.0)  # an answer waits behind others' on a CPU
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.rag = rag

    def request(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self.http.request(method, path, **kwargs)
        except self.httpx.HTTPError as exc:
            raise SealError(f"cannot reach {self.url} ({exc}); is `seal serve` running?") from None
        body = response.json() if response.content else {}
        if response.status_code >= 400:
            raise SealError(body.get("error", {}).get("message") or f"HTTP {response.status_code}")
        return body

    # ---------------------------------------------------------------- run
    def run(self) -> None:
        status = self.request("GET", "/v1/status")
        version = status["adapter_version"]
        print(
            f"seal chat: {self.url} as {status['user']}, adapter "
            f"{'v' + str(version) if version else 'none (base)'}\n/help lists the commands",
            flush=True,
        )
        while True:
            try:
                line = input(PROMPT).strip()
            except EOFError:
                print()
                return
            except KeyboardInterrupt:
                print()
                continue
            if not line:
                continue
            try:
                if line.startswith("/"):
                    if self.command(line) == "quit":
                        return
                else:
                    self.ask(line)
            except SealError as exc:
                print(f"error: {exc}")

    def ask(self, text: str) -> None:
        body = {"model": "seal", "stream": True, "messages": [{"role": "user", "content": text}]}
        if self.rag is not None:
            body["rag"] = self.rag
        seal, started = {}, False
        try:
            with self.http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise SealError(response.json()["error"]["message"])
                for line in response.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[len("data: ") :])
                    if "error" in event:
                        raise SealError(event["error"]["message"])
                    piece = event["choices"][0]["delta"].get("content")
                    if piece:
                        print(("" if started else "seal> ") + piece, end="", flush=True)
                        started = True
                    seal = event.get("seal") or seal
        except self.httpx.HTTPError as exc:
            raise SealError(f"cannot reach {self.url} ({exc})") from None
        print()
        for g in seal.get("gate") or []:
            verb = "learning in the background" if g["decision"] == "learn" else "not learning"
            print(f"      ({g['document_id']}: {verb}: {g['reason']})")

    def command(self, line: str) -> str | None:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/quit", "/exit"):
            return "quit"
        handlers = {
            "/feed": lambda: self.feed(arg),
            "/status": self.status,
            "/history": self.history,
            "/undo": self.undo,
            "/forget": lambda: self.forget(arg),
            "/rag": lambda: self.set_rag(arg),
            "/help": lambda: print(HELP.format(url=self.url)),
        }
        if name not in handlers:
            print(f"unknown command {name}; /help lists the commands")
            return None
        handlers[name]()
        return None

    def feed(self, source: str) -> None:
        if not source:
            print("usage: /feed PATH|URL|DIR")
            return
        if is_url(source):
            self._fed(self.request("POST", "/v1/documents", json={"url": source}))
            return
        path = Path(source).expanduser()
        if not path.exists():
            raise SealError(f"{path} does not exist (give a file, a folder or an http(s) URL)")
        for file in folder_files(path) if path.is_dir() else [path]:
            with open(file, "rb") as fh:
                doc = self.request("POST", "/v1/documents", files={"file": (file.name, fh)})
            self._fed(doc)

    def _fed(self, doc: dict) -> None:
        what = "already stored" if doc.get("duplicate") else "stored"
        reason = f": {doc['reason']}" if doc.get("reason") else ""
        print(f"{what} '{doc['title']}' as {doc['id']}; {doc['state']}{reason}")

    def status(self) -> None:
        s = self.request("GET", "/v1/status")
        c, u, b = s["counts"], s["update"], s["budget"]
        version = s["adapter_version"]
        print(f"user:    {s['user']} on {self.url}\nmodel:   {s['model']}")
        print(f"adapter: {'v' + str(version) if version else 'none (the base model answers)'}")
        print(
            f"stored:  {c['documents']} documents, {c['passages']} passages; updates: "
            f"{c['updates_accepted']} accepted, {c['updates_rolled_back']} rolled back"
        )
        print(
            f"budget:  {b['seconds_used_last_hour']:.0f} of {b['seconds_per_hour']:.0f} s of "
            "updates this hour"
        )
        if u["learning"]:
            print(f"learning: update running ({u['seconds']:.0f} s): {u['progress']}")
        else:
            print(f"learning: {'idle' if not u['queued'] else str(len(u['queued'])) + ' queued'}")

    def history(self) -> None:
        rows = self.request("GET", "/v1/updates", params={"limit": 15})["data"]
        if not rows:
            print("no updates yet")
        for row in rows:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["at"]))
            if row["kind"] == "update":
                made = f"v{row['version']}" if row.get("version") else "no version"
                print(f"{when}  update {row['id']}: {row['decision']} -> {made}: {row['reason']}")
                continue
            detail = row.get("detail") or {}
            extra = f": {detail.get('decision', '')} {detail.get('reason', '')}".rstrip(": ")
            print(f"{when}  {row['kind']} {row.get('subject', '')}{extra}")

    def undo(self) -> None:
        r = self.request("POST", "/v1/rollback", json={})
        now = f"v{r['to']}" if r["to"] else "none (base)"
        print(f"rolled back: adapter {now} (was v{r['from']})")

    def forget(self, arg: str) -> None:
        if not arg:
            print("usage: /forget DOC (a document id, see /history)")
            return
        r = self.request("DELETE", f"/v1/documents/{arg}")
        print(f"forgot {arg}: {r['passages']} passages and {r['vectors']} vectors removed")

    def set_rag(self, arg: str) -> None:
        if arg not in ("on", "off"):
            print("usage: /rag on|off")
            return
        self.rag = arg == "on"
        print(f"answers: {'with retrieved passages' if self.rag else 'closed-book'}")


def run_remote(url: str, key: str | None, rag: bool | None) -> int:
    key = key or os.environ.get("SEAL_API_KEY")
    chat = RemoteChat(url, key, rag)
    try:
        chat.run()
    finally:
        chat.http.close()
    print("bye: what was learned is kept by the server")
    return 0
