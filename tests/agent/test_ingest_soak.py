"""A short version of the ingestion soak (evals/soak_ingest.py): `seal ingest --follow` killed
with SIGKILL or stopped with SIGTERM at random moments while a local news server publishes and
edits stories; then one draining pass. Nothing may be lost or learned twice, memory stays
bounded. About 1 minute of kills plus the drain (a few minutes on a busy 2-core machine), so it
is marked slow; the 10-minute run's results are in results/ingest/soak.json."""

import importlib.util
from pathlib import Path

import pytest


def load_soak():
    path = Path(__file__).resolve().parents[2] / "evals" / "soak_ingest.py"
    spec = importlib.util.spec_from_file_location("soak_ingest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_kills_during_ingestion_lose_and_duplicate_nothing(tmp_path, tiny_model_dir):
    result = load_soak().run_soak(
        tmp_path / "soak",
        minutes=1.0,
        seed=3,
        publish_every=3.0,
        kill_after=(3.0, 15.0),
        model=tiny_model_dir,
    )
    assert result["problems"] == []
    assert result["kills"] + result["sigterms"] >= 3
    assert result["lost"] == 0 and result["learned_twice"] == 0
    assert result["by_state"]["learned"] >= result["stories_published"]
    assert result["peak_rss_mb"] < 2000  # the tiny model, chromadb and MiniLM: ~0.7 GB


def test_soak_check_finds_lost_and_twice_learned_items(tmp_path):
    """The soak's checker is not vacuous: a story without items and an unfinished item fail."""
    from stores.state import State

    soak = load_soak()
    home = tmp_path / "home"
    with State.open(home) as state:
        source = state.ledger.ingest_source("feed", "http://127.0.0.1:1/rss.xml", None)
        state.ledger.ingest_add_items(
            [
                {
                    "source_id": source["id"],
                    "key": "http://127.0.0.1:1/article/1.html",
                    "revision": "r",
                    "url": None,
                    "guid": None,
                    "title": None,
                    "inline_text": None,
                    "published_at": None,
                }
            ]
        )
    problems = soak.check(home, "http://127.0.0.1:1", stories=2)["problems"]
    assert "item 1 not finished" in problems
    assert "story 2 from /atom.xml lost (no item)" in problems
    assert "story 1 never learned" in problems
