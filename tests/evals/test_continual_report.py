import json
import math
import subprocess
import sys

import pytest

from evals.continual_report import (
    StrategyRun,
    markdown_report,
    metrics,
    results_json,
    summarize,
    write_report,
)

NAN = math.nan

# T=3, base knows nothing, every passage is learned and kept.
PERFECT = [
    [0.0, 0.0, 0.0],
    [1.0, 0.0, 0.0],
    [1.0, 1.0, 0.0],
    [1.0, 1.0, 1.0],
]
# T=3, each update learns its passage and wipes out every earlier one.
FORGETS_ALL = [
    [0.0, 0.0, 0.0],
    [1.0, 0.0, 0.0],
    [0.0, 1.0, 0.0],
    [0.0, 0.0, 1.0],
]
# T=3, the base already knows a little and learning one passage helps the next ones.
TRANSFER = [
    [0.2, 0.2, 0.2],
    [0.8, 0.5, 0.3],
    [0.8, 0.9, 0.6],
    [0.7, 0.9, 1.0],
]


def test_perfect_learner_never_forgets() -> None:
    m = metrics(PERFECT)
    assert m["acc"] == 1.0
    assert m["bwt"] == 0.0
    assert m["fwt"] == 0.0
    assert m["forgetting"] == 0.0
    assert m["just_learned"] == 1.0
    assert m["first_passage_retention"] == [1.0, 1.0, 1.0]
    assert m["first_passage_retention_ratio"] == 1.0


def test_learner_that_forgets_everything_earlier() -> None:
    m = metrics(FORGETS_ALL)
    assert m["acc"] == pytest.approx(1 / 3)  # only the last passage is still known
    assert m["bwt"] == -1.0  # (0 - 1) for p1 and p2
    assert m["forgetting"] == 1.0  # best 1, final 0 for p1 and p2
    assert m["fwt"] == 0.0
    assert m["just_learned"] == 1.0
    assert m["first_passage_retention"] == [1.0, 0.0, 0.0]
    assert m["first_passage_retention_ratio"] == 0.0


def test_forward_transfer_is_measured_against_the_base_row() -> None:
    m = metrics(TRANSFER)
    assert m["fwt"] == pytest.approx(0.35)  # p2: 0.5 - 0.2, p3: 0.6 - 0.2
    assert m["bwt"] == pytest.approx(-0.05)  # p1: 0.7 - 0.8, p2: 0.9 - 0.9
    assert m["forgetting"] == pytest.approx(0.05)  # p1: 0.8 - 0.7, p2: 0.9 - 0.9
    assert m["acc"] == pytest.approx(2.6 / 3)
    assert m["just_learned"] == pytest.approx(2.7 / 3)
    assert m["first_passage_retention_ratio"] == pytest.approx(0.7 / 0.8)


def test_forgetting_takes_the_best_row_after_learning_but_not_the_base_or_final_row() -> None:
    R = [
        [1.0, 0.0, 0.0],  # base is best on p1: must not count, it was before learning p1
        [0.5, 0.0, 0.0],
        [0.9, 0.4, 0.0],  # p1 peaks after learning p2
        [0.6, 0.4, 0.2],
    ]
    m = metrics(R)
    assert m["forgetting"] == pytest.approx(0.15)  # p1: 0.9 - 0.6, p2: 0.4 - 0.4
    assert m["bwt"] == pytest.approx(0.05)  # p1: 0.6 - 0.5, p2: 0.4 - 0.4
    # T=2 where the final row is the best: forgetting goes negative (Chaudhry's max stops at T-1).
    assert metrics([[0.0, 0.0], [0.5, 0.0], [0.9, 1.0]])["forgetting"] == pytest.approx(-0.4)


def test_nan_cells_are_skipped() -> None:
    R = [row[:] for row in TRANSFER]
    R[3][1] = NAN  # final accuracy on p2 not measured
    R[0][2] = NAN  # base accuracy on p3 not measured
    m = metrics(R)
    assert m["acc"] == pytest.approx(0.85)  # (0.7 + 1.0) / 2
    assert m["bwt"] == pytest.approx(-0.1)  # only p1's term is left
    assert m["forgetting"] == pytest.approx(0.1)
    assert m["fwt"] == pytest.approx(0.3)  # only p2's term is left


def test_metrics_without_terms_are_none() -> None:
    m = metrics([[NAN], [NAN]])  # T=1: nothing before or after, and nothing measured
    assert m["acc"] is None
    assert m["bwt"] is None
    assert m["fwt"] is None
    assert m["forgetting"] is None
    assert m["just_learned"] is None
    assert m["first_passage_retention"] == [None]
    assert m["first_passage_retention_ratio"] is None


def test_retention_ratio_is_none_when_passage_1_was_never_learned() -> None:
    R = [[0.0, 0.0], [0.0, 1.0], [0.5, 1.0]]
    m = metrics(R)
    assert m["first_passage_retention"] == [0.0, 0.5]
    assert m["first_passage_retention_ratio"] is None


@pytest.mark.parametrize(
    "R",
    [
        [[1.0, 0.0], [1.0, 0.0]],  # T x T: the base row is missing
        [[0.0, 0.0], [1.0], [1.0, 1.0]],  # ragged
        [[0.0], [1.5]],  # not a fraction
        [],
    ],
)
def test_malformed_matrix_is_rejected(R: list) -> None:
    with pytest.raises(ValueError, match="accuracy matrix|fractions"):
        metrics(R)


def _run(name: str, matrices: list, **kw) -> StrategyRun:
    return StrategyRun(
        name=name, matrices=matrices, wall_seconds=12.5, adapter_bytes=2_500_000, **kw
    )


def test_summarize_averages_over_sequences_with_an_interval_around_the_mean() -> None:
    run = _run("naive", [PERFECT, FORGETS_ALL, FORGETS_ALL], extra={"updates_rejected": 3})
    s = summarize(run, seed=1)
    assert s["acc"] == pytest.approx(5 / 9)  # (1 + 1/3 + 1/3) / 3
    assert s["bwt"] == pytest.approx(-2 / 3)  # (0 - 1 - 1) / 3
    assert s["forgetting"] == pytest.approx(2 / 3)
    assert s["first_passage_retention_ratio"] == pytest.approx(1 / 3)
    for key in ("acc", "bwt", "forgetting"):
        lo, hi = s["ci95"][key]
        assert lo <= s[key] <= hi
        assert lo < hi
    lo, hi = s["ci95"]["acc"]
    assert lo >= 1 / 3 - 1e-12 and hi <= 1.0  # never outside the per-sequence values
    assert s["ci95"]["fwt"] == [0.0, 0.0]
    assert s["R"][3] == pytest.approx([1 / 3, 1 / 3, 1.0])
    assert s["first_passage_retention"] == pytest.approx([1.0, 1 / 3, 1 / 3])
    assert s["n_sequences"] == 3
    assert s["wall_seconds"] == 12.5
    assert s["adapter_bytes"] == 2_500_000
    assert s["updates_rejected"] == 3
    assert summarize(run, seed=1)["ci95"] == s["ci95"]  # seeded: reruns agree


def test_summarize_one_sequence_gives_a_degenerate_interval() -> None:
    s = summarize(_run("replay", [TRANSFER]))
    assert s["ci95"]["acc"] == [s["acc"], s["acc"]]
    assert s["ci95"]["bwt"] == [s["bwt"], s["bwt"]]


def test_summarize_mean_matrix_skips_missing_cells() -> None:
    a = [row[:] for row in PERFECT]
    b = [row[:] for row in FORGETS_ALL]
    a[0][0] = b[0][0] = NAN  # never measured in any sequence
    a[3][0] = NAN  # measured in one sequence only
    s = summarize(_run("rag", [a, b]))
    assert s["R"][0][0] is None
    assert s["R"][3][0] == 0.0  # b's value alone
    assert s["R"][2] == pytest.approx([0.5, 1.0, 0.0])


def test_summarize_rejects_inconsistent_runs() -> None:
    with pytest.raises(ValueError, match="different numbers of passages"):
        summarize(_run("naive", [PERFECT, [[0.0], [1.0]]]))
    with pytest.raises(ValueError, match="no accuracy matrices"):
        summarize(_run("naive", []))
    with pytest.raises(ValueError, match="clash"):
        summarize(_run("naive", [PERFECT], extra={"acc": 0.5}))


def _results() -> dict:
    runs = [
        _run("naive", [FORGETS_ALL], extra={"diverged": NAN}),
        _run("replay+gate", [PERFECT, PERFECT]),
        StrategyRun("rag", [TRANSFER], wall_seconds=3.0, adapter_bytes=None),
    ]
    return results_json(runs, {"T": 3, "seeds": [0, 1]})


def test_results_json_round_trips_without_nan() -> None:
    results = _results()
    assert set(results) == {"strategies", "config"}
    assert list(results["strategies"]) == ["naive", "replay+gate", "rag"]
    assert results["strategies"]["naive"]["diverged"] is None
    text = json.dumps(results, allow_nan=False)
    assert json.loads(text) == results


def test_results_json_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError, match="unique"):
        results_json([_run("naive", [PERFECT]), _run("naive", [PERFECT])], {})


def test_markdown_report_shows_every_strategy_in_points() -> None:
    results = _results()
    md = markdown_report(results)
    naive = next(line for line in md.splitlines() if line.startswith("| naive |"))
    assert "33.3 [33.3, 33.3]" in naive  # ACC 1/3 with its one-sequence interval
    assert "-100.0 [-100.0, -100.0]" in naive  # BWT -1
    assert "0.0%" in naive  # passage 1 fully forgotten
    assert "2.5" in naive  # 2,500,000 adapter bytes in MB
    perfect = next(line for line in md.splitlines() if line.startswith("| replay+gate |"))
    assert "100.0 [100.0, 100.0]" in perfect
    rag = next(line for line in md.splitlines() if line.startswith("| rag |"))
    assert rag.endswith("| 3.0 | n/a |")  # wall seconds, no adapter
    assert "| after 3 | 70.0 | 90.0 | 100.0 |" in md  # rag's matrix
    assert "| base | 0.0 | 0.0 | 0.0 |" in md
    assert "1 sequence of T=3 passages; 2 sequences of T=3 passages" in md
    assert markdown_report(json.loads(json.dumps(results))) == md  # works from results.json


def test_write_report_writes_the_four_files(tmp_path) -> None:
    results = _results()
    paths = write_report(results, tmp_path / "report")
    assert [p.name for p in paths] == ["results.json", "report.md", "heatmaps.png", "retention.png"]
    assert json.loads(paths[0].read_text()) == results
    assert "| rag |" in paths[1].read_text()
    for png in paths[2:]:
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_import_loads_neither_torch_nor_matplotlib() -> None:
    code = (
        "import sys, evals.continual_report; "
        "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
