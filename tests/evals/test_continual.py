"""evals/continual.py end to end with the tiny model: every strategy, the report, and resume."""

import json

from evals.continual import FAMILIES, STRATEGIES, main, make_sequences


def test_sequences_are_disjoint_and_seeded():
    seqs = make_sequences(20, 3, 4, seed=1)
    flat = [i for s in seqs for i in s]
    assert len(flat) == len(set(flat)) == 12
    assert seqs == make_sequences(20, 3, 4, seed=1) != make_sequences(20, 3, 4, seed=2)


def test_every_strategy_on_a_tiny_sequence_then_resume(squad_file, tiny_cli_settings, tmp_path):
    out = tmp_path / "continual"
    args = ["--data", str(squad_file), "--length", "2", "--sequences", "1", "--out", str(out)]
    args += ["--merge-every", "1"]
    assert main([*args, *tiny_cli_settings]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["strategies"]) == STRATEGIES
    for name, summary in results["strategies"].items():
        assert len(summary["R"]) == 3 and all(len(row) == 2 for row in summary["R"]), name
        assert summary["R"][0] == results["strategies"]["naive"]["R"][0]  # one shared base row
        assert summary["n_sequences"] == 1
    assert results["strategies"]["rag"]["adapter_bytes"] is None
    assert "updates_rolled_back" in results["strategies"]["replay+gate"]
    assert "merges_into_base" in results["strategies"]["replay+gate+base"]
    for name in ["report.md", "heatmaps.png", "retention.png", "prepared.jsonl"]:
        assert (out / name).is_file()
    rows = (out / "runs.jsonl").read_text().splitlines()
    assert len(rows) == len(STRATEGIES)
    # a rerun finds everything done and only rewrites the report
    assert main([*args, *tiny_cli_settings, "--strategies", ",".join(FAMILIES)]) == 0
    assert (out / "runs.jsonl").read_text().splitlines() == rows
