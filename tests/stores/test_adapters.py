import json

import pytest
import torch

from agent.core.errors import SealError
from agent.core.inner_loop import train_adapter
from stores.adapters import BASE, MANIFEST, AdapterStore
from stores.ledger import Ledger

FACTS = ["The capital of Italy is Rome.", "The bridge in Rome was built in 1990."]


@pytest.fixture
def store(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    yield AdapterStore(tmp_path / "adapters", ledger)
    ledger.close()


def files(content: bytes = b"weights"):
    def write(folder):
        (folder / "adapter_model.safetensors").write_bytes(content)
        (folder / "adapter_config.json").write_text("{}")

    return write


def commit(store, parent=None, content=b"weights"):
    return store.commit(files(content), parent=parent, base_fingerprint="fp", config={"r": 8})


def logits(runtime):
    ids = runtime.tokenizer("The capital of Italy is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return runtime.model(input_ids=ids, use_cache=False).logits[0]


def test_commit_writes_manifest_with_checksums_and_ledger_row(store):
    v1 = commit(store)
    v2 = commit(store, parent=v1)
    assert (v1, v2) == (1, 2)
    manifest = store.verify(v2)
    assert manifest["parent"] == 1 and manifest["config"] == {"r": 8}
    assert set(manifest["files"]) == {"adapter_model.safetensors", "adapter_config.json"}
    assert store.ledger.adapter_version(2)["parent"] == 1
    assert store.current() == BASE  # committing does not move `current`
    assert not [p for p in store.versions_dir.iterdir() if p.name.startswith(".")]


def test_failed_writer_leaves_no_version(store):
    def broken(folder):
        (folder / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.commit(broken, parent=None, base_fingerprint="fp", config={})
    assert list(store.versions_dir.iterdir()) == []
    assert store.ledger.adapter_versions() == []
    assert commit(store) == 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: (p / "adapter_model.safetensors").write_bytes(b"weighty"),
        lambda p: (p / "adapter_model.safetensors").write_bytes(b"weig"),  # truncated
        lambda p: (p / "adapter_config.json").unlink(),
        lambda p: (p / MANIFEST).write_text(json.dumps({"files": {}})),  # forged manifest
    ],
)
def test_damaged_version_refused(store, damage):
    v = commit(store)
    damage(store.path(v))
    with pytest.raises(SealError, match=f"adapter version {v} .* is damaged"):
        store.verify(v)
    with pytest.raises(SealError, match="damaged"):
        store.set_current(v)
    assert store.current() == BASE


def test_rollback_and_history(store):
    v1, v2 = commit(store), commit(store, parent=1)
    store.set_current(v2)
    assert store.rollback(v1) == v2
    assert store.current() == v1
    assert store.rollback(BASE) == v1 and store.current() == BASE
    with pytest.raises(SealError, match="no adapter version 9"):
        store.rollback(9)
    events = [r for r in store.ledger.history() if r["kind"] == "rollback"]
    assert [e["detail"]["to"] for e in events] == [BASE, v1]


def test_gc_keeps_recent_current_and_pinned(store):
    versions = [commit(store, content=bytes([i])) for i in range(6)]
    store.set_current(versions[1])
    store.pin(versions[2])
    removed = store.gc(keep_last=2)
    assert removed == [versions[0], versions[3]]
    assert [r["version"] for r in store.ledger.adapter_versions()] == [2, 3, 5, 6]
    assert not store.path(versions[0]).exists()
    with pytest.raises(SealError, match="garbage-collected"):
        store.rollback(versions[0])
    store.pin(versions[2], False)
    store.set_current(versions[5])
    assert store.gc(keep_last=1) == [versions[1], versions[2], versions[4]]


def test_recover_removes_leftovers_of_killed_writers(store):
    v1 = commit(store)
    store.set_current(v1)
    (store.versions_dir / ".tmp-2-abcd").mkdir()  # killed while writing
    orphan = store.path(2)  # renamed into place, killed before its ledger row
    orphan.mkdir()
    (orphan / "adapter_model.safetensors").write_bytes(b"x")
    (store.versions_dir / "notes").mkdir()  # not ours: left alone
    cleaned = store.recover()
    assert len(cleaned) == 2
    assert sorted(p.name for p in store.versions_dir.iterdir()) == ["notes", "v000001"]
    assert commit(store) == 2


def test_damaged_current_version_fails_loading_but_rollback_repairs(store, runtime):
    v1, v2 = commit(store), commit(store, parent=1)
    store.set_current(v2)
    (store.path(v2) / "adapter_model.safetensors").write_bytes(b"bitrot")
    assert store.recover() == []  # the damage stays visible, nothing is deleted
    with pytest.raises(SealError, match="fails its checksum"):
        store.load_into(runtime)
    store.rollback(v1)
    assert store.current() == v1


def test_real_adapter_round_trip_and_fingerprint_check(
    store, make_runtime, other_base_model, tiny_adapt
):
    runtime = make_runtime()
    train_adapter(runtime, FACTS, tiny_adapt(epochs=2))
    trained = logits(runtime)
    v = store.commit(
        runtime.write_adapter_files,
        parent=None,
        base_fingerprint=runtime.fingerprint(),
        config={"adapt": tiny_adapt().model_dump(mode="json")},
    )
    store.set_current(v)

    fresh = make_runtime()
    base = logits(fresh)
    assert store.load_into(fresh) == v
    assert torch.allclose(logits(fresh), trained, atol=1e-6)
    store.load_into(fresh, BASE)
    assert torch.allclose(logits(fresh), base, atol=1e-6)

    other = make_runtime(model=other_base_model)
    with pytest.raises(SealError, match="another base model"):
        store.load_into(other, v)
