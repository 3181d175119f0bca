"""A lost or damaged ledger never wipes what was learned (issue 17, items 1-3): writers and readers
refuse it with the fix, nothing is deleted, and `seal doctor --rebuild` rebuilds the ledger from
the adapter manifests, the rows SQLite can still read and the passage store. Real SQLite files,
real folders, real chromadb; the damage is done by the adversarial harness's own functions
(evals/adversary.py)."""

import hashlib

import pytest

from agent.core.errors import SealError
from evals.adversary import dangle_current, delete_current, delete_ledger, empty_ledger, flip_page
from stores.archive import export_state, import_state
from stores.doctor import diagnose, rebuild
from stores.ledger_file import LedgerDamaged
from stores.state import LEDGER, MARKER, State


def fake_weights(folder):
    (folder / "adapter_model.safetensors").write_bytes(b"w" * 1000)
    (folder / "adapter_config.json").write_text("{}")


def learned_home(tmp_path, versions=3):
    """A state with one document, `versions` adapter versions (each the parent of the next,
    each recorded by an accepted update) and the newest one current."""
    home = tmp_path / "home"
    with State.open(home) as state:
        doc, passages = state.ledger.add_document(
            namespace="user", source="file", uri="a.txt", title="A", content_hash="h",
            chars=5, passages=[("alpha beta", "p")],
        )  # fmt: skip
        edit = state.ledger.add_self_edit(
            document_id=doc, format="implications", text="x", sequences=["alpha"]
        )
        parent = 0
        for _ in range(versions):
            version = state.adapters.commit(
                fake_weights, parent=parent, base_fingerprint="fp", config={"n": 1}
            )
            with state.ledger.transaction():
                state.ledger.record_update(
                    decision="accept", reason="test", version=version,
                    parent_version=parent or None, n_sequences=1, new_self_edits=[edit],
                )  # fmt: skip
                state.adapters.set_current(version)
            parent = version
    return home


def folders(home):
    return sorted(p.name for p in (home / "adapters" / "versions").iterdir())


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", [empty_ledger, delete_ledger], ids=["emptied", "deleted"])
def test_a_lost_ledger_is_refused_and_nothing_is_deleted(tmp_path, damage):
    home = learned_home(tmp_path)
    damage(home)
    for read_only in (False, True):
        with pytest.raises(LedgerDamaged, match=r"holds 3 adapter versions.*seal doctor"):
            State.open(home, read_only=read_only)
    assert folders(home) == ["v000001", "v000002", "v000003"]
    assert damage is delete_ledger or (home / LEDGER).stat().st_size == 0  # not re-created


def test_a_new_or_half_created_state_still_opens(tmp_path):
    home = tmp_path / "home"
    State.open(home).close()
    (home / LEDGER).unlink()  # a writer killed after the marker, before the ledger
    State.open(home).close()
    (home / LEDGER).write_bytes(b"")  # killed between creating the file and its first write
    with State.open(home) as state:
        assert state.ledger.counts()["documents"] == 0


def test_a_damaged_page_is_refused_before_anything_is_written(tmp_path):
    home = learned_home(tmp_path)
    flip_page(home)
    before = digest(home / LEDGER)
    refused = r"(damaged|fails SQLite's check).*seal doctor --rebuild"
    with pytest.raises(LedgerDamaged, match=refused):
        State.open(home)
    assert digest(home / LEDGER) == before
    assert folders(home) == ["v000001", "v000002", "v000003"]


def test_doctor_rebuilds_an_emptied_ledger_from_the_manifests(tmp_path):
    home = learned_home(tmp_path)
    empty_ledger(home)
    assert any("is empty" in f for f in diagnose(home))
    report = rebuild(home)
    assert report.from_manifests == [1, 2, 3] and report.current == 3
    assert (report.kept_aside / LEDGER).exists()  # the damaged file is kept, not deleted
    with State.open(home) as state:
        assert state.recovered == []  # recovery finds every version named: deletes nothing
        assert [(r["version"], r["parent"]) for r in state.ledger.adapter_versions()] == [
            (1, None),
            (2, 1),
            (3, 2),
        ]
        assert state.adapters.current() == 3 and state.ledger.integrity_errors() == []
        state.adapters.verify(3)
    assert folders(home) == ["v000001", "v000002", "v000003"]
    assert diagnose(home) == []


def test_doctor_copies_every_readable_row_of_a_damaged_ledger(tmp_path):
    home = learned_home(tmp_path)
    flip_page(home)  # the adapter_versions table's root page
    report = rebuild(home)
    assert "adapter_versions" in report.unreadable
    assert report.copied["documents"] == 1 and report.copied["updates"] == 3
    with State.open(home) as state:
        assert [r["version"] for r in state.ledger.adapter_versions()] == [1, 2, 3]
        assert len(state.ledger.history()) == 4  # three updates and the doctor's event
        assert state.adapters.current() == 3


def test_doctor_refuses_a_sound_ledger_and_restores_a_lost_marker(tmp_path):
    home = learned_home(tmp_path)
    with pytest.raises(SealError, match="nothing to rebuild"):
        rebuild(home)
    (home / MARKER).unlink()
    with pytest.raises(SealError, match=r"marker .* is missing.*seal doctor --rebuild"):
        State.open(home)
    assert rebuild(home).marker_written
    with State.open(home) as state:
        assert state.adapters.current() == 3


@pytest.mark.parametrize(
    "damage, message",
    [
        (dangle_current, "names version 99, that the ledger does not hold"),
        (delete_current, "lost its `current` adapter pointer"),
    ],
    ids=["dangling", "deleted-row"],
)
def test_a_damaged_current_pointer_is_named_with_the_way_back(tmp_path, damage, message):
    home = learned_home(tmp_path)
    damage(home)
    with State.open(home, read_only=True) as state, pytest.raises(SealError) as err:
        state.adapters.current()
    assert message in str(err.value) and "`seal rollback 3`" in str(err.value)
    assert any(message in f for f in diagnose(home))
    with State.open(home) as state:
        state.adapters.rollback(3)  # the way back works on the damaged pointer
        assert state.adapters.current() == 3
        assert state.base_for(3) is None
        with pytest.raises(SealError, match="no adapter version 7"):
            state.base_for(7)


@pytest.mark.parametrize(
    "damage", [empty_ledger, delete_ledger, flip_page], ids=["emptied", "deleted", "page"]
)
def test_an_export_replaces_a_damaged_state_which_is_kept_aside(tmp_path, damage):
    """The refusal's other way out: `seal import ARCHIVE --replace` over the damaged state."""
    home = learned_home(tmp_path)
    with State.open(home) as state:
        export_state(state, tmp_path / "backup.tar.gz")
    damage(home)
    moved = import_state(tmp_path / "backup.tar.gz", home, replace=True)
    with State.open(home) as state:
        assert state.adapters.current() == 3 and state.ledger.integrity_errors() == []
    assert folders(moved) == ["v000001", "v000002", "v000003"]  # kept aside, nothing deleted
    assert any("ledger" in f for f in diagnose(moved))  # ... still damaged: for the doctor


# Three paragraphs each: with 16-word passages, every document has several passages.
DOCUMENTS = [
    "The capital of France is Paris. Paris is a city on the river Seine.\n\n"
    "The tower in Paris was built in 1889. Many people visit the museum every year.\n\n"
    "The bridge in Paris is old. It crosses the river near the tower.",
    "The capital of Italy is Rome. Rome is a city on the river Tiber.\n\n"
    "The bridge in Rome was built in 1990. The city of Rome has a famous old temple.",
]


def stored_home(tmp_path):
    """A state whose ledger and passage store hold DOCUMENTS (real chromadb, real embeddings)."""
    home = tmp_path / "home"
    with State.open(home) as state:
        for text in DOCUMENTS:
            state.add_document(text, source="file", namespace="user", passage_words=16, title="T")
        passages = {r["id"]: r for r in state.ledger.live_passages("user")}
        documents = state.ledger.documents()
    return home, passages, documents


def shape(passages):
    """What the ledger says of each passage, by id."""
    keys = ("document_id", "idx", "text", "content_hash")
    return {i: tuple(r[k] for k in keys) for i, r in passages.items()}


def test_doctor_restores_the_documents_and_passages_the_passage_store_holds(tmp_path):
    """Issue 17, item 1: the passage store is the last copy of the documents' text once the
    ledger is lost; the rebuild names every passage again, with its own ids, and the next writer
    (whose reconciliation removes vectors the ledger does not name) keeps them all."""
    home, before, documents = stored_home(tmp_path)
    assert len(before) > len(DOCUMENTS)  # several passages per document
    empty_ledger(home)
    report = rebuild(home)
    assert (report.restored_documents, report.restored_passages) == (2, len(before))
    assert report.unrestored_passages == []
    with State.open(home) as state:
        assert shape({r["id"]: r for r in state.ledger.live_passages("user")}) == shape(before)
        for old, new in zip(documents, state.ledger.documents(), strict=True):
            assert (new["id"], new["namespace"], new["content_hash"]) == (
                old["id"], old["namespace"], old["content_hash"]
            )  # fmt: skip
            assert new["status"] == "learned" and "seal doctor" in new["status_reason"]
            assert new["title"] is None and new["added_at"] > 0
        assert state.ledger.integrity_errors() == []
        # a writer: its reconciliation runs before it stores the new document
        added = state.add_document(
            "The river Seine flows to the sea.", source="file", namespace="user", passage_words=16
        )
        assert min(added.passage_ids) > max(before)  # no id of a restored passage is reused
        assert state.passages.passage_ids("user") == {*before, *added.passage_ids}
        texts = state.passages.texts("user", list(before))
        assert texts == {i: r["text"] for i, r in before.items()}
        # the restored content hash is the ledger's: the same document is known, not stored twice
        again = state.add_document(DOCUMENTS[0], source="file", namespace="user", passage_words=16)
        assert again.duplicate_of == documents[0]["id"]


def test_after_a_rebuild_a_writer_never_deletes_vectors_the_ledger_cannot_name(tmp_path):
    """A passage the doctor cannot restore (its document is another namespace's) is kept and
    reported; a write rolled back after the rebuild (vectors beyond what the doctor saw, of a
    document the ledger never held) is still cleaned up, as before."""
    from stores.passages import PassageRecord, PassageStore  # deferred: chromadb

    home, before, documents = stored_home(tmp_path)
    with PassageStore(home / "vectors") as store:
        store.add("other", [PassageRecord(50, documents[0]["id"], "The Seine is long.", 1.0)])
    delete_ledger(home)
    report = rebuild(home)
    assert report.restored_passages == len(before) and report.unrestored_passages == [50]
    with State.open(home) as state:
        state.passages.add("user", [PassageRecord(900, 77, "A rolled back write.", 2.0)])
        assert state.reconcile_vectors("other") == {"removed": 0, "added": 0, "kept": 1}
        assert state.reconcile_vectors("user") == {"removed": 1, "added": 0, "kept": 0}
        assert state.passages.texts("other", [50]) == {50: "The Seine is long."}
        assert state.passages.passage_ids("user") == set(before)
        state.forget(documents[1]["id"])  # a forget still removes what it names
        assert state.reconcile_vectors("user") == {"removed": 0, "added": 0, "kept": 0}


def test_a_passage_store_the_doctor_cannot_read_is_reported_and_never_emptied(tmp_path):
    """The ledger is still rebuilt from the manifests; the store's problem is reported, and a
    writer that can read the store later keeps every vector, named or not."""
    home, before, _ = stored_home(tmp_path)
    database = home / "vectors" / "chroma.sqlite3"
    saved = database.read_bytes()
    database.write_bytes(b"not a database" * 100)
    empty_ledger(home)
    report = rebuild(home)
    assert report.passage_store_problem and report.restored_passages == 0
    database.write_bytes(saved)  # repaired by hand, say from a backup
    with State.open(home) as state:
        assert state.reconcile_vectors("user") == {"removed": 0, "added": 0, "kept": len(before)}
        assert state.passages.passage_ids("user") == set(before)
