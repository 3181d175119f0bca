"""Odd inputs to the ledger, adapter store and state APIs (hypothesis): empty, huge, binary-ish,
non-UTF-8 text, unusual ids. Each either works and reads back, or raises one SealError."""

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.errors import SealError
from stores.ledger import Ledger
from stores.state import State

# Any code point, lone surrogates and NUL included; short and huge.
TEXT = st.text(st.characters(codec=None), max_size=300) | st.builds(
    lambda c, n: c * n, st.characters(codec=None), st.integers(50_000, 200_000)
)
IDS = st.integers().filter(lambda i: i != 0)  # 0 is a real version: the base model
SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    ledger = Ledger(tmp_path_factory.mktemp("ledger") / "ledger.sqlite")
    yield ledger
    ledger.close()


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    with State.open(tmp_path_factory.mktemp("state") / "home") as state:
        yield state


@SETTINGS
@given(title=TEXT, uri=TEXT, text=TEXT, digest=st.text(string.hexdigits, min_size=1))
def test_ledger_stores_any_text(ledger, title, uri, text, digest):
    if ledger.find_document("user", digest):
        return
    doc, [passage] = ledger.add_document(
        namespace="user", source="file", uri=uri, title=title, content_hash=digest,
        chars=len(text), passages=[(text, digest)],
    )  # fmt: skip
    row = ledger.document(doc)
    stored = ledger.passages(doc)[0]["text"]
    assert len(stored) == len(text)  # same length: only unencodable code points were replaced
    assert row["title"] == title.encode("utf-8", "replace").decode()
    edit = ledger.add_self_edit(document_id=doc, format="f", text=text, sequences=[text, title])
    assert edit > 0 and passage > 0
    assert ledger.integrity_errors() == []


@SETTINGS
@given(version=IDS, document=IDS)
def test_unknown_ids_give_one_clear_error(state, version, document):
    for call in (
        lambda: state.adapters.rollback(version),
        lambda: state.adapters.pin(version),
        lambda: state.forget(document),
        lambda: state.ledger.provenance(version) if version > 0 else state.ledger.document(version),
    ):
        with pytest.raises(SealError):
            call()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=TEXT, title=TEXT)
def test_state_add_document_any_text(state, text, title):
    try:
        result = state.add_document(
            text, source="file", namespace="props", passage_words=50, title=title
        )
    except SealError as exc:
        assert "empty" in str(exc)
        assert not text.strip()
        return
    if result.duplicate_of is not None:
        return
    passages = state.ledger.passages(result.document_id)
    assert [p["id"] for p in passages] == result.passage_ids
    assert set(result.passage_ids) - {p for p, _ in result.refused_passages} <= (
        state.passages.passage_ids("props")
    )
    assert all(len(p["text"].split()) <= 50 for p in passages)


def test_reconcile_repairs_a_crash_between_ledger_and_vectors(tmp_path):
    with State.open(tmp_path / "home") as state:
        kept = state.add_document(
            "Paris is the capital of France.", source="file", namespace="user", passage_words=50
        )
        # a writer killed after its ledger rows, before its vectors
        doc, [lost] = state.ledger.add_document(
            namespace="user", source="file", uri=None, title=None, content_hash="x", chars=30,
            passages=[("The Seine flows through Paris.", "y")],
        )  # fmt: skip
        # and a forget killed after its vector deletion, before its ledger rows
        state.passages.delete_document("user", kept.document_id)
        assert state.reconcile_vectors("user") == {"removed": 0, "added": 2, "kept": 0}
        assert state.passages.passage_ids("user") == {*kept.passage_ids, lost}
        assert state.reconcile_vectors("user") == {"removed": 0, "added": 0, "kept": 0}
        state.ledger.forget_document(doc)  # a forgotten document's vectors go
        assert state.reconcile_vectors("user") == {"removed": 1, "added": 0, "kept": 0}
        [hit] = state.passages.query("user", "Which river flows through Paris?", k=1)
        assert hit.document_id == kept.document_id
