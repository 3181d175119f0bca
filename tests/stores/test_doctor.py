"""A lost or damaged ledger never wipes what was learned (issue 17, items 1-3): writers and readers
refuse it with the fix, nothing is deleted, and `seal doctor --rebuild` rebuilds the ledger from
the adapter manifests and the rows SQLite can still read. Real SQLite files, real folders; the
damage is done by the adversarial harness's own functions (evals/adversary.py)."""

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
