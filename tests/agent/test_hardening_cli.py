"""The `seal` command against hostile input, end to end (issue 17, items 4, 5 and 10): each case
is one clear error with exit status 2 and no traceback, or works and says what is odd."""

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from agent.cli import main
from stores.state import State

REPO = Path(__file__).resolve().parents[2]


def seal(capsys, *args):
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_learn_refuses_urls_devices_and_pipes(tmp_path, capsys):
    home = ["--home", tmp_path / "home"]
    status, _, err = seal(capsys, "learn", "https://example.org/news.html", *home)
    assert status == 2 and "is a URL" in err and "`seal ingest URL`" in err and "/feed" in err
    status, _, err = seal(capsys, "learn", "/dev/zero", *home)  # endless, reports 0 bytes
    assert status == 2 and "not a regular file" in err
    fifo = tmp_path / "notes.txt"
    os.mkfifo(fifo)
    started = time.monotonic()
    status, _, err = seal(capsys, "learn", fifo, *home)  # nothing writes: it would block
    assert status == 2 and "not a regular file" in err and time.monotonic() - started < 30
    status, _, err = seal(capsys, "learn", tmp_path, *home)
    assert status == 2 and "is a folder" in err
    status, _, err = seal(capsys, "status", "--config", tmp_path, *home)
    assert status == 2 and "config file" in err and "is a folder" in err


def test_status_names_the_trained_model_and_counts_only_versions_on_disk(
    tmp_path, squad_file, tiny_cli_settings, tiny_model_dir, capsys
):
    home = ["--home", tmp_path / "home"]
    learn = ["learn", squad_file, *home, *tiny_cli_settings, "--set", "update.gate=false"]
    assert seal(capsys, *learn)[0] == 0
    assert seal(capsys, *learn, "--index", "1")[0] == 0
    shutil.rmtree(tmp_path / "home" / "adapters" / "versions" / "v000001")
    status, out, _ = seal(capsys, "status", *home)  # the configured model is the default one
    assert status == 0 and f"model:   {tiny_model_dir}" in out
    assert f"trained on model '{tiny_model_dir}', the configuration names 'default'" in out
    assert "1 adapter versions kept" in out and "adapter versions v1 are missing" in out
    info = json.loads(seal(capsys, "status", "--json", *home, *tiny_cli_settings)[1])
    assert info["model"] == str(tiny_model_dir) and info["missing_version_folders"] == [1]
    assert info["current_version"] == 2 and info["current_damage"] is None

    (tmp_path / "home" / "ledger.sqlite").write_bytes(b"")  # `: > ledger.sqlite`
    status, _, err = seal(capsys, "learn", squad_file, *home, *tiny_cli_settings)
    assert status == 2 and "is empty (0 bytes) but" in err and "seal doctor" in err
    status, out, _ = seal(capsys, "doctor", *home)
    assert status == 1 and "problem: ledger" in out and "fix: `seal doctor --rebuild" in out
    status, out, _ = seal(capsys, "doctor", "--rebuild", *home)
    assert status == 0 and "adapter versions restored from their manifests: v2" in out
    assert "current adapter: v2" in out
    status, out, _ = seal(capsys, "status", *home, *tiny_cli_settings)
    assert status == 0 and "adapter: v2" in out


def test_learning_after_the_doctor_rebuilt_a_lost_ledger_keeps_every_earlier_passage(
    tmp_path, squad_file, tiny_cli_settings, capsys
):
    """Issue 17, item 1: the passage store holds the only copy of the documents' text once the
    ledger is lost; after `seal doctor --rebuild`, the next `seal learn` (whose writer removes
    vectors its ledger does not name) keeps every earlier passage, in the store and the ledger."""
    home = tmp_path / "home"
    settings = [*tiny_cli_settings, "--set", "update.gate=false", "--set", "store.passage_words=16"]
    for index in (0, 1):
        learn = ["learn", squad_file, "--index", index, "--home", home, *settings]
        assert seal(capsys, *learn)[0] == 0
    with State.open(home, read_only=True) as state:
        before = {r["id"]: r["text"] for r in state.ledger.live_passages("user")}
    assert len(before) >= 3
    (home / "ledger.sqlite").write_bytes(b"")  # `: > ledger.sqlite`
    status, out, _ = seal(capsys, "doctor", "--rebuild", "--home", home)
    assert status == 0 and "adapter versions restored from their manifests: v1, v2" in out
    assert f"restored 2 documents, {len(before)} passages from the passage store" in out
    notes = tmp_path / "notes.txt"
    notes.write_text("The museum in Rome is new. Many people visit it.", encoding="utf-8")
    assert seal(capsys, "learn", notes, "--home", home, *settings)[0] == 0
    with State.open(home, read_only=True) as state:
        ledger = {r["id"]: r["text"] for r in state.ledger.live_passages("user")}
        assert ledger.items() >= before.items() and len(ledger) > len(before)
        assert state.passages.texts("user", list(before)) == before
        statuses = state.ledger.document_statuses([1, 2, 3])
        assert statuses == {1: "learned", 2: "learned", 3: "learned"}


class _Hub(http.server.BaseHTTPRequestHandler):
    """Stands in for the Hugging Face Hub: records every request it gets."""

    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.requests.append(self.path)
        self.send_response(404)
        self.end_headers()

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


def test_an_unknown_model_is_an_error_naming_it_and_no_hub_is_reached(tmp_path):
    hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    doc = tmp_path / "notes.txt"
    doc.write_text("The capital of France is Paris.", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{hub.server_address[1]}"
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache
    cmd = [sys.executable, "-m", "agent.cli", "learn", doc, "--home", tmp_path / "home"]
    cmd += ["--set", "model.name=no-such-org/no-such-model", "--set", "model.device=cpu"]
    done = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    hub.shutdown()
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot load model 'no-such-org/no-such-model'" in done.stderr
    assert "model.allow_download" in done.stderr and "Traceback" not in done.stderr
    assert _Hub.requests == []  # offline mode: not one request to the hub
