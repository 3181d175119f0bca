"""The memory commands end to end: `seal learn` with the tiny model, then status, history,
rollback, forget, pin, gc, export and import on the real state (SQLite, chromadb, files)."""

import json

import pytest

from agent.cli import main
from stores.state import State


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def seal(capsys, *args):
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_status_of_an_empty_home(home, capsys):
    status, out, _ = seal(capsys, "status", "--home", str(home))
    assert status == 0 and "nothing stored yet" in out
    assert not home.exists()  # reading never creates state


def test_learn_then_steer_the_memory(home, squad_file, tiny_cli_settings, capsys, tmp_path):
    # the tiny random model learns too little to pass the retention gate (tests/agent/test_update)
    no_gate = ["--set", "update.gate=false"]
    learn = ["learn", str(squad_file), "--home", str(home), *tiny_cli_settings, *no_gate]
    status, out, err = seal(capsys, *learn)
    assert status == 0, err
    assert "learned document 1: adapter version 1 (parent base)" in out
    status, out, _ = seal(capsys, *learn, "--index", "1")
    assert status == 0 and "adapter version 2 (parent 1)" in out
    status, out, _ = seal(capsys, *learn)
    assert status == 0 and "already known as document 1" in out

    status, out, _ = seal(capsys, "status", "--home", str(home), "--json")
    info = json.loads(out)
    assert info["current_version"] == 2 and info["current_damage"] is None
    assert info["counts"]["documents"] == 2 and info["counts"]["updates_accepted"] == 2
    assert info["counts"]["probes"] == 3  # the SQuAD questions, kept as probes
    assert info["self_edit_writers"] == {"tools": 2}  # qa-spans, the default, is built by tools
    status, out, _ = seal(capsys, "status", "--home", str(home))
    assert (
        "writer:  qa-spans, built by tools from the passage; stored self-edits by writer: "
        "tools 2" in out
    )

    status, out, _ = seal(capsys, "history", "--home", str(home))
    assert out.count("accept -> v") == 2 and "accept -> v2 (from v1" in out
    assert "1 replayed" in out  # the second update replayed the first one's self-edit

    status, out, _ = seal(capsys, "rollback", "1", "--home", str(home), "--reason", "testing")
    assert status == 0 and "current adapter: v1 (was v2)" in out
    status, out, _ = seal(capsys, "history", "--home", str(home), "--limit", "1")
    assert "rollback version 1" in out and "reason testing" in out

    status, out, _ = seal(capsys, "forget", "2", "--home", str(home))
    assert status == 0 and "forgot document 2" in out and "1 self-edits excluded" in out
    with State.open(home, read_only=True) as state:
        assert [r.document_id for r in state.ledger.replay_pool()] == [1]
        assert state.ledger.counts()["passages"] == 1
    status, out, _ = seal(capsys, "forget", "1", "--home", str(home))
    assert "may still know it" in out and "`seal rollback 0`" in out

    status, out, _ = seal(capsys, "pin", "1", "--home", str(home))
    assert status == 0 and "pinned" in out
    status, out, _ = seal(capsys, "gc", "--keep", "0", "--home", str(home))
    assert "removed 1 adapter versions: [2]" in out

    archive = tmp_path / "state.tar.gz"
    status, out, _ = seal(capsys, "export", str(archive), "--home", str(home))
    assert status == 0 and archive.is_file()
    copy = tmp_path / "copy"
    status, out, _ = seal(capsys, "import", str(archive), "--home", str(copy))
    assert status == 0
    status, out, _ = seal(capsys, "status", "--home", str(copy))
    assert "adapter: v1" in out and "pinned" in out and "2 forgotten" in out


def test_learn_refuses_bad_input_with_one_line(home, tmp_path, tiny_cli_settings, capsys):
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02 binary")
    status, _, err = seal(capsys, "learn", str(binary), "--home", str(home), *tiny_cli_settings)
    assert status == 2 and err.startswith("error: ") and str(binary) in err
    status, _, err = seal(capsys, "rollback", "7", "--home", str(home))
    assert status == 2 and "no adapter version 7" in err


def test_writer_commands_refused_while_another_writes(home, capsys):
    with State.open(home):
        status, _, err = seal(capsys, "rollback", "0", "--home", str(home))
        assert status == 2 and "in use by pid" in err
        status, out, _ = seal(capsys, "status", "--home", str(home))
        assert status == 0 and "adapter: none" in out


def test_merge_base_from_the_command_line(home, squad_file, tiny_cli_settings, capsys):
    flags = ["--home", str(home), *tiny_cli_settings, "--set", "update.gate=false"]
    assert seal(capsys, "merge-base", *flags)[0] == 2  # nothing learned yet: nothing to merge
    # update.merge_every=2: the second accepted update is followed by a merge
    every = ["--set", "update.merge_every=2"]
    assert seal(capsys, "learn", str(squad_file), *flags, *every)[0] == 0
    status, out, err = seal(capsys, "learn", str(squad_file), "--index", "1", *flags, *every)
    assert status == 0, err
    assert "merge into the base (2 updates since the last): version 3 (parent v2)" in out
    status, out, _ = seal(capsys, "status", *flags)
    assert status == 0 and "base:    " in out and "b000001" in out
    status, out, _ = seal(capsys, "history", *flags)
    assert "merge 3: accept -> v3 (adapter v2 into the base" in out
    # a rollback to before the merge needs the original model; gc then drops the merged base
    assert seal(capsys, "rollback", "1", *flags)[0] == 0
    status, out, _ = seal(capsys, "gc", "--keep", "0", *flags)
    assert status == 0 and "removed 2 adapter versions: [2, 3]" in out
    assert "removed 1 merged bases" in out
    status, out, _ = seal(capsys, "status", *flags)
    assert "base:    " not in out and "adapter: v1" in out
