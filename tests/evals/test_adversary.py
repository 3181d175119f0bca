"""The adversarial harness (evals/adversary.py) in a reduced form: every damage class against
`seal status`, the repairs against `seal rollback`, one writer of each kind, and `seal doctor
--rebuild` then `seal learn` after an emptied ledger, each a real process on a real damaged copy
of a learned state (the full table: results/hardening/)."""

from agent.cli import main
from evals.adversary import DAMAGES, SETTINGS, Setup, run_pairs, write_documents

PAIRS = [
    *((damage, "status") for damage in DAMAGES),
    *(
        (damage, "rollback")
        for damage in ("ledger-page-flipped", "current-dangling", "current-row-deleted")
    ),
    ("ledger-emptied", "learn"),  # the data loss of issue 17: a fresh ledger, versions deleted
    ("read-only-home", "chat"),  # starts read-only and answers
    ("read-only-home", "export"),
]


def test_no_damage_makes_a_command_lose_versions_reset_or_crash(tmp_path, tiny_model_dir):
    docs = write_documents(tmp_path)
    baseline = tmp_path / "baseline"
    settings = [f"model.name={tiny_model_dir}", *SETTINGS]
    for name in ("paris.txt", "rome.txt"):  # learned in-process: torch is loaded already
        flags = [a for s in settings for a in ("--set", s)]
        assert main(["learn", str(docs / name), "--home", str(baseline), *flags]) == 0
    result = run_pairs(Setup(baseline, docs, settings, tmp_path), PAIRS, ["ledger-emptied"])
    summary = result["summary"]
    rows = [*result["rows"], *result["after_rebuild"]]
    keys = ("damage", "command", "step_exit_codes", "lost_passages", "unnamed_passages", "message")
    failed = [{k: r.get(k) for k in keys} for r in rows if not r.get("ok", True)]
    assert summary["failures"] == [], failed
    assert summary["tracebacks"] == summary["deleted_versions"] == summary["silent_resets"] == 0
    assert summary["lost_passages"] == 0 and summary["passages_baseline"] == 2  # a passage each
    counted = {(r["damage"], r["passages_damaged"], r["passages_after"]) for r in result["rows"]}
    assert ("vectors-deleted", 0, 0) in counted and ("ledger-emptied", 2, 2) in counted
    # Issue 17's data loss: after the rebuild, the next writer deleted every passage the
    # rebuilt ledger did not name, the last copy of the documents' text.
    [rebuilt] = result["after_rebuild"]
    assert rebuilt["step_exit_codes"] == [0, 0] and rebuilt["versions_after"][:2] == [1, 2]
    assert rebuilt["lost_passages"] == rebuilt["unnamed_passages"] == []
    assert rebuilt["learned_passages"] and rebuilt["passages_after"] > rebuilt["passages_damaged"]
    rows = {(r["damage"], r["command"]): r for r in result["rows"]}
    lost = rows["ledger-emptied", "learn"]
    assert lost["exit_code"] == 2 and lost["versions_after"] == [1, 2]
    assert "`seal doctor --home" in lost["message"]
    assert rows["current-dangling", "status"]["exit_code"] == 0  # a warning, and the way back
    assert rows["current-dangling", "rollback"]["exit_code"] == 0  # ... which works
