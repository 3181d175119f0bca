import json
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from agent.core.errors import SealError
from stores.archive import export_state, import_state
from stores.state import MARKER, State, default_home, split_passages

ROOT = Path(__file__).resolve().parents[2]


def fake_weights(folder):
    (folder / "adapter_model.safetensors").write_bytes(b"w" * 1000)
    (folder / "adapter_config.json").write_text("{}")


def populate(state, n_versions=2):
    doc, _ = state.ledger.add_document(
        namespace="user", source="file", uri="a.txt", title="A", content_hash="h", chars=5,
        passages=[("alpha beta", "p")],
    )  # fmt: skip
    parent = 0
    for _ in range(n_versions):
        parent = state.adapters.commit(
            fake_weights, parent=parent, base_fingerprint="fp", config={}
        )
    state.adapters.set_current(parent)
    return doc


def test_default_home_follows_env():
    assert default_home({"SEAL_HOME": "/x/y"}) == Path("/x/y")
    assert default_home({"XDG_DATA_HOME": "/data"}) == Path("/data/seal-agent")


def test_new_home_created_with_marker(tmp_path):
    home = tmp_path / "deep" / "home"
    with State.open(home) as state:
        assert not state.read_only
    marker = json.loads((home / MARKER).read_text())
    assert marker["format"] == "seal-agent-state"


def test_read_only_open_of_missing_home_says_so(tmp_path):
    with pytest.raises(SealError, match="no seal state"):
        State.open(tmp_path / "none", read_only=True)
    assert not (tmp_path / "none").exists()


def test_foreign_folder_refused_and_untouched(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(SealError, match="not a seal state folder"):
        State.open(tmp_path / "photos")
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["cat.jpg"]


@pytest.mark.parametrize("marker", ["{not json", '{"format": "something-else"}', '{"format": '])
def test_damaged_marker_refused_never_reset(tmp_path, marker):
    home = tmp_path / "home"
    with State.open(home) as state:
        populate(state)
    (home / MARKER).write_text(marker)
    with pytest.raises(SealError, match=str(home)):
        State.open(home)
    assert (home / "ledger.sqlite").exists()


def test_newer_state_format_refused(tmp_path):
    home = tmp_path / "home"
    State.open(home).close()
    (home / MARKER).write_text(json.dumps({"format": "seal-agent-state", "version": 99}))
    with pytest.raises(SealError, match="newer seal-agent"):
        State.open(home, read_only=True)


def test_marker_leftover_of_a_killed_creation_is_not_foreign(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / f".{MARKER}.abc.tmp").write_text("{")
    State.open(home).close()
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".")) == []


def test_damaged_ledger_refused_untouched(tmp_path):
    home = tmp_path / "home"
    State.open(home).close()
    (home / "ledger.sqlite").write_bytes(b"\x00garbage" * 64)
    with pytest.raises(SealError, match="damaged"):
        State.open(home)
    assert (home / "ledger.sqlite").read_bytes() == b"\x00garbage" * 64


def test_single_writer_but_readers_welcome(tmp_path):
    home = tmp_path / "home"
    writer = State.open(home)
    doc = populate(writer)
    with pytest.raises(SealError, match=r"in use by pid \d+"):
        State.open(home)
    script = textwrap.dedent(
        f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        from agent.core.errors import SealError
        from stores.state import State
        try:
            State.open({str(home)!r})
        except SealError as exc:
            print("refused:", exc)
        with State.open({str(home)!r}, read_only=True) as reader:
            print("reader sees", reader.ledger.counts()["documents"], reader.adapters.current())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stdout
    assert "refused:" in out and "in use by pid" in out
    assert "reader sees 1 2" in out
    writer.close()
    with State.open(home) as again:  # the lock is free once the writer is gone
        assert again.ledger.document(doc)["title"] == "A"


def test_lock_released_when_the_writer_is_killed(tmp_path):
    home = tmp_path / "home"
    script = (
        f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from stores.state import State;"
        f" s = State.open({str(home)!r}); print('locked', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    with pytest.raises(SealError, match="in use"):
        State.open(home)
    child.kill()
    child.wait()
    State.open(home).close()


def test_split_passages_keeps_paragraphs_and_bounds_size():
    text = "one two three\n\nfour five\n\n\n" + " ".join(f"w{i}" for i in range(10))
    assert split_passages(text, 5) == [
        "one two three\n\nfour five",
        "w0 w1 w2 w3 w4",
        "w5 w6 w7 w8 w9",
    ]
    assert split_passages("a b c\n\nd e f", 4) == ["a b c", "d e f"]
    assert split_passages("", 10) == []


def test_export_import_round_trip(tmp_path):
    home = tmp_path / "home"
    with State.open(home) as state:
        doc = populate(state, n_versions=3)
        state.adapters.gc(keep_last=2)
        manifest = export_state(state, tmp_path / "backup.tar.gz")
    assert "ledger.sqlite" in manifest["files"]
    assert "adapters/versions/v000001/manifest.json" not in manifest["files"]  # collected
    restored = tmp_path / "restored"
    assert import_state(tmp_path / "backup.tar.gz", restored) is None
    with State.open(restored) as state:
        assert state.adapters.current() == 3
        state.adapters.verify(3)
        assert state.ledger.document(doc)["title"] == "A"
        assert [r["kind"] for r in state.ledger.history()][:2] == ["import", "gc"]


def test_import_refuses_existing_state_unless_replace_and_keeps_it(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    with State.open(a) as state:
        populate(state, n_versions=1)
        export_state(state, tmp_path / "a.tar.gz")
    with State.open(b) as state:
        populate(state, n_versions=2)
    with pytest.raises(SealError, match="already holds a seal state"):
        import_state(tmp_path / "a.tar.gz", b)
    moved = import_state(tmp_path / "a.tar.gz", b, replace=True)
    with State.open(b, read_only=True) as state:
        assert state.adapters.current() == 1
    with State.open(moved, read_only=True) as old:
        assert old.adapters.current() == 2


def test_damaged_archives_refused_and_target_untouched(tmp_path):
    home = tmp_path / "home"
    with State.open(home) as state:
        populate(state)
        export_state(state, tmp_path / "ok.tar.gz")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes((tmp_path / "ok.tar.gz").read_bytes()[:2000])
    with pytest.raises(SealError, match="cannot be read"):
        import_state(truncated, tmp_path / "new")
    # a member altered after export fails its checksum
    tampered_dir = tmp_path / "x"
    with tarfile.open(tmp_path / "ok.tar.gz") as tar:
        tar.extractall(tampered_dir, filter="data")
    weights = next(tampered_dir.rglob("adapter_model.safetensors"))
    weights.write_bytes(b"evil")
    with tarfile.open(tmp_path / "tampered.tar.gz", "w:gz") as tar:
        tar.add(tampered_dir / "seal-state", arcname="seal-state")
    with pytest.raises(SealError, match="fails its checksum"):
        import_state(tmp_path / "tampered.tar.gz", tmp_path / "new")
    not_an_export = tmp_path / "other.tar.gz"
    with tarfile.open(not_an_export, "w:gz") as tar:
        tar.add(weights, arcname="seal-state/x")
    with pytest.raises(SealError, match="not a seal export"):
        import_state(not_an_export, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert not list(tmp_path.glob(".seal-import-*"))
    with pytest.raises(SealError, match="must end in .tar.gz"), State.open(home) as state:
        export_state(state, tmp_path / "backup.zip")
