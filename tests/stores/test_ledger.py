import sqlite3

import pytest

from agent.core.errors import SealError
from stores.ledger import SCHEMA_VERSION, Ledger


@pytest.fixture
def ledger(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    yield ledger
    ledger.close()


def add_doc(ledger, n=0, namespace="user"):
    return ledger.add_document(
        namespace=namespace,
        source="file",
        uri=f"doc{n}.txt",
        title=f"Doc {n}",
        content_hash=f"hash{n}",
        chars=100,
        passages=[(f"passage {n}.{i}", f"p{n}.{i}") for i in range(2)],
    )


def accept(ledger, version, parent, self_edits, replay=()):
    ledger.add_adapter_version(
        version, parent=parent, base_fingerprint="fp", manifest_sha256="x", created_at=0.0
    )
    return ledger.record_update(
        decision="accept",
        reason="better",
        version=version,
        parent_version=parent,
        n_sequences=3,
        new_self_edits=self_edits,
        replay_self_edits=replay,
    )


def test_fresh_ledger_is_migrated_wal_and_healthy(ledger):
    assert ledger.schema_version() == SCHEMA_VERSION
    assert ledger.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert ledger.integrity_errors() == []


def test_document_and_passages_written_together(ledger):
    doc, passages = add_doc(ledger)
    assert [p["id"] for p in ledger.passages(doc)] == passages
    assert ledger.find_document("user", "hash0")["id"] == doc
    assert ledger.find_document("other", "hash0") is None
    with pytest.raises(sqlite3.IntegrityError):
        add_doc(ledger)  # the same content twice in one namespace
    assert ledger.counts()["documents"] == 1 and ledger.counts()["passages"] == 2


def test_failed_transaction_leaves_nothing(ledger):
    with pytest.raises(RuntimeError), ledger.transaction():
        add_doc(ledger)
        raise RuntimeError("killed halfway")
    assert ledger.counts()["documents"] == 0 and ledger.counts()["passages"] == 0


def test_foreign_keys_enforced(ledger):
    with pytest.raises(sqlite3.IntegrityError):
        ledger.add_self_edit(document_id=99, format="implications", text="", sequences=["a"])


def test_replay_only_from_accepted_updates_and_not_forgotten(ledger):
    doc0, [p0, _] = add_doc(ledger, 0)
    doc1, _ = add_doc(ledger, 1)
    e0 = ledger.add_self_edit(document_id=doc0, passage_id=p0, format="f", text="", sequences=["a"])
    e1 = ledger.add_self_edit(document_id=doc1, format="f", text="", sequences=["b", "c"])
    orphan = ledger.add_self_edit(document_id=doc1, format="f", text="", sequences=["d"])
    accept(ledger, 1, None, [e0])
    accept(ledger, 2, 1, [e1], replay=[e0])
    ledger.record_update(
        decision="rollback", reason="forgot", version=None, parent_version=2, n_sequences=1,
        new_self_edits=[orphan],
    )  # fmt: skip
    assert {r.self_edit_id for r in ledger.replay_pool()} == {e0, e1}
    assert ledger.document(doc0)["status"] == "learned"
    counts = ledger.forget_document(doc0)
    assert counts == {"passages": 2, "probes": 0, "self_edits_excluded": 1}
    assert [r.self_edit_id for r in ledger.replay_pool()] == [e1]
    assert ledger.document(doc0)["status"] == "forgotten"
    assert ledger.integrity_errors() == []
    with pytest.raises(SealError, match="already forgotten"):
        ledger.forget_document(doc0)
    # a forgotten document may be read again
    again, _ = add_doc(ledger, 0)
    assert again != doc0


def test_sample_replay_is_seeded_and_without_repetition(ledger):
    doc, _ = add_doc(ledger)
    edits = [
        ledger.add_self_edit(document_id=doc, format="f", text="", sequences=[str(i)])
        for i in range(20)
    ]
    accept(ledger, 1, None, edits)
    a = [r.self_edit_id for r in ledger.sample_replay(5, seed=1)]
    assert a == [r.self_edit_id for r in ledger.sample_replay(5, seed=1)]
    assert len(set(a)) == 5
    assert len(ledger.sample_replay(50, seed=0)) == 20
    recent = ledger.sample_replay(5, seed=2, half_life_s=1e-9, exclude_documents=[doc])
    assert recent == []


def test_recency_weighting_prefers_new_self_edits(ledger):
    doc, _ = add_doc(ledger)
    edits = [
        ledger.add_self_edit(document_id=doc, format="f", text="", sequences=[str(i)])
        for i in range(40)
    ]
    accept(ledger, 1, None, edits)
    for i, edit in enumerate(edits):  # one self-edit per hour, the last one newest
        ledger.db["self_edits"].update(edit, {"created_at": 3600.0 * i})
    picked = [
        r.self_edit_id for s in range(20) for r in ledger.sample_replay(4, seed=s, half_life_s=3600)
    ]
    newer_half = sum(1 for e in picked if e > edits[19])
    assert newer_half > 0.9 * len(picked)


def test_provenance_walks_to_the_base(ledger):
    doc0, _ = add_doc(ledger, 0)
    doc1, _ = add_doc(ledger, 1)
    e0 = ledger.add_self_edit(document_id=doc0, format="f", text="", sequences=["a"])
    e1 = ledger.add_self_edit(document_id=doc1, format="f", text="", sequences=["b"])
    accept(ledger, 1, None, [e0])
    accept(ledger, 2, 1, [e1], replay=[e0])
    chain = ledger.provenance(2)
    assert [c["version"]["version"] for c in chain] == [2, 1]
    assert {(d["id"], d["role"]) for d in chain[0]["documents"]} == {
        (doc0, "replay"),
        (doc1, "new"),
    }
    assert ledger.versions_trained_on(doc0) == [1, 2]


def test_history_lists_updates_and_events_newest_first(ledger):
    doc, _ = add_doc(ledger)
    edit = ledger.add_self_edit(document_id=doc, format="f", text="", sequences=["a"])
    accept(ledger, 1, None, [edit])
    ledger.add_event("rollback", "version 0", {"from": 1, "to": 0})
    rows = ledger.history()
    assert [r["kind"] for r in rows] == ["rollback", "update"]
    assert rows[0]["detail"] == {"from": 1, "to": 0}
    assert rows[1]["decision"] == "accept" and rows[1]["reason"] == "better"
    assert len(ledger.history(limit=1)) == 1


def test_read_only_sees_writes_and_cannot_write(ledger, tmp_path):
    add_doc(ledger)
    reader = Ledger(tmp_path / "ledger.sqlite", read_only=True)
    assert reader.counts()["documents"] == 1
    add_doc(ledger, 1)  # a writer keeps writing while the reader is open
    assert reader.counts()["documents"] == 2
    with pytest.raises(SealError, match="read-only"):
        reader.add_event("x", "y")
    reader.close()


def test_foreign_or_damaged_file_refused_untouched(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(SealError, match="not an SQLite database"):
        Ledger(garbage)
    assert garbage.read_bytes() == b"not a database at all" * 100
    foreign = tmp_path / "foreign.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(SealError, match="did not create"):
        Ledger(foreign)


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "ledger.sqlite"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(SealError, match="newer"):
        Ledger(path)


def test_reopen_keeps_everything(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with_data = Ledger(path)
    add_doc(with_data)
    with_data.close()
    again = Ledger(path)
    assert again.counts()["passages"] == 2 and again.schema_version() == SCHEMA_VERSION
    again.close()


def test_an_older_ledger_is_upgraded_in_place_keeping_its_rows(tmp_path, monkeypatch):
    import stores.ledger as ledger_module

    path = tmp_path / "ledger.sqlite"
    old = Ledger(path)
    add_doc(old)
    old.close()

    def add_language(db):
        db["documents"].add_column("language", str)

    monkeypatch.setattr(ledger_module, "MIGRATIONS", [*ledger_module.MIGRATIONS, add_language])
    monkeypatch.setattr(ledger_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(SealError, match="run any writing seal command"):
        Ledger(path, read_only=True)
    upgraded = Ledger(path)
    assert upgraded.schema_version() == SCHEMA_VERSION + 1
    assert upgraded.document(1)["language"] is None and upgraded.counts()["passages"] == 2
    upgraded.close()
