"""`seal train-policy` end to end on the tiny model: rounds, versions, resume, evaluation."""

import hashlib
import json
import shutil

import pytest
import torch

from agent.cli import main
from agent.core.config import PolicyConfig, SelfEditConfig
from agent.core.io import read_jsonl
from evals import knowledge
from policies.self_edit import write_self_edits
from stores.policies import PolicyStore

WEIGHTS = "adapter_model.safetensors"


@pytest.fixture
def policy_settings(tiny_cli_settings) -> list[str]:
    settings = [
        "self_edit.max_new_tokens=16",
        "self_edit.min_item_chars=1",  # the tiny model's lines are short
        "policy.candidates=2",
        "policy.keep_only_beating_baseline=false",  # keep a pair per passage, so training runs
        "policy.learning_rate=0.01",
    ]
    return [*tiny_cli_settings, *[a for s in settings for a in ("--set", s)]]


def train(squad_file, out, settings, rounds: int) -> int:
    argv = ["train-policy", str(squad_file), "--out", str(out)]
    return main([*argv, *settings, "--set", f"policy.rounds={rounds}"])


def passage_records(out) -> list[dict]:
    return [r for r in read_jsonl(out / "log.jsonl") if r["kind"] == "passage"]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_round_writes_a_loadable_policy_version(squad_file, policy_settings, tmp_path, runtime):
    out = tmp_path / "policies"
    assert train(squad_file, out, policy_settings, rounds=1) == 0
    records = passage_records(out)
    assert [(r["round"], r["index"]) for r in records] == [(1, 0), (1, 1)]
    for r in records:
        assert len(r["candidates"]) == 2
        for c in r["candidates"]:
            assert {"contained", "logprob", "answers"} <= set(c["result"])
            assert len(c["key"]) == 2
    baselines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert sum(b["kind"] == "baselines" for b in baselines) == 2  # once per passage

    store = PolicyStore(out)
    assert store.versions() == [1] and store.current() == 1
    manifest = store.verify(1)
    assert manifest["parent"] == 0 and manifest["stats"]["kept"] == 2
    assert manifest["stats"]["train"]["steps"] > 0 and manifest["stats"]["train"]["seconds"] > 0
    assert manifest["config"]["policy"]["candidates"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"][0]["candidates"] == 4

    # Loadable, and it is not the base model: the policy's B matrices moved off zero.
    folder = store.folder(1)
    tiny = SelfEditConfig(format="implications", max_new_tokens=8, temperature=0.0)
    [plain] = write_self_edits(runtime, "Paris", "The capital of France is Paris.", tiny)
    [edit] = write_self_edits(
        runtime,
        "Paris",
        "The capital of France is Paris.",
        tiny.model_copy(update={"policy": folder}),
    )
    assert runtime.has_policy()
    moved = [p for n, p in runtime.model.named_parameters() if ".policy." in n and "lora_B" in n]
    assert moved and any(bool(p.abs().sum() > 0) for p in moved)
    assert isinstance(edit.raw, str) and isinstance(plain.raw, str)


def test_an_interrupted_run_resumes_at_the_next_passage(
    squad_file, policy_settings, tmp_path, capsys
):
    full = tmp_path / "full"
    assert train(squad_file, full, policy_settings, rounds=2) == 0
    expected = passage_records(full)
    assert [(r["round"], r["index"]) for r in expected] == [(1, 0), (1, 1), (2, 0), (2, 1)]

    # What a run killed during round 2, passage 1 leaves: the log up to round 2 passage 0
    # (fsynced line by line) plus a torn line, version 1, and half a version 2 in a temp folder.
    cut = tmp_path / "cut"
    (cut / "versions").mkdir(parents=True)
    shutil.copy(full / "config.json", cut / "config.json")
    shutil.copytree(full / "versions" / "v0001", cut / "versions" / "v0001")
    (cut / "versions" / ".tmp-2-deadbeef").mkdir()
    (cut / "current").write_text("1\n")
    lines = (full / "log.jsonl").read_text().splitlines()
    last = next(i for i, line in enumerate(lines) if '"round": 2' in line and '"index": 0' in line)
    (cut / "log.jsonl").write_text("\n".join(lines[: last + 1]) + '\n{"kind": "passa')

    capsys.readouterr()
    assert train(squad_file, cut, policy_settings, rounds=2) == 0
    assert "1 passage runs to do" in capsys.readouterr().err
    got = passage_records(cut)
    assert [(r["round"], r["index"]) for r in got] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    # The same samples, rewards and choices as without the kill.
    for a, b in zip(got, expected, strict=True):
        assert [c["raw"] for c in a["candidates"]] == [c["raw"] for c in b["candidates"]]
        flat = lambda r: [k for c in r["candidates"] for k in c["key"]]  # noqa: E731
        assert flat(a) == pytest.approx(flat(b), abs=1e-5)
        assert a["selected"] == b["selected"]
    assert sha(cut / "versions/v0002" / WEIGHTS) == sha(full / "versions/v0002" / WEIGHTS)
    assert not list((cut / "versions").glob(".tmp-*"))
    assert PolicyStore(cut).current() == 2

    capsys.readouterr()  # finished: a rerun trains nothing
    assert train(squad_file, cut, policy_settings, rounds=2) == 0
    assert "0 passage runs to do" in capsys.readouterr().err


def test_rounds_continue_from_the_previous_version(squad_file, policy_settings, tmp_path):
    out = tmp_path / "policies"
    assert train(squad_file, out, policy_settings, rounds=1) == 0
    v1 = sha(out / "versions/v0001" / WEIGHTS)
    assert train(squad_file, out, policy_settings, rounds=2) == 0  # one more round
    store = PolicyStore(out)
    assert store.versions() == [1, 2] and store.verify(2)["parent"] == 1
    assert sha(out / "versions/v0001" / WEIGHTS) == v1
    round2 = [r for r in passage_records(out) if r["round"] == 2]
    assert len(round2) == 2


def test_user_errors_are_one_line(squad_file, policy_settings, tmp_path, capsys):
    missing = tmp_path / "nope.json"
    assert train(missing, tmp_path / "a", policy_settings, rounds=1) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err

    out = tmp_path / "b"
    assert train(squad_file, out, policy_settings, rounds=1) == 0
    capsys.readouterr()
    changed = [*policy_settings, "--set", "policy.candidates=3"]
    assert train(squad_file, out, changed, rounds=1) == 2
    assert "other settings (policy)" in capsys.readouterr().err

    assert main(["train-policy", str(squad_file), "--set", "policy.reward=vibes"]) == 2
    assert "policy.reward" in capsys.readouterr().err


def test_knowledge_eval_compares_policy_versions(
    squad_file, policy_settings, tiny_cli_settings, tmp_path
):
    store = tmp_path / "policies"
    assert train(squad_file, store, policy_settings, rounds=1) == 0
    out = tmp_path / "eval"
    argv = ["--data", str(squad_file), "--out", str(out), "--policy-store", str(store)]
    argv += ["--set", "eval.bootstrap_samples=100", *tiny_cli_settings]
    names = ["implications@0", "implications@1", f"implications@{store}/versions/v0001"]
    assert knowledge.main([*argv, "--conditions", ",".join(names)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["conditions"]) == names
    records = [json.loads(x) for x in (out / "passages.jsonl").read_text().splitlines()]
    raw = {(r["condition"], r["index"]): r["self_edit"]["raw"] for r in records}
    assert raw[(names[1], 0)] == raw[(names[2], 0)]  # version 1, named two ways

    from agent.core.errors import SealError

    with pytest.raises(SealError, match="no policy version 5"):
        knowledge.main([*argv, "--out", str(tmp_path / "e2"), "--conditions", "implications@5"])


def test_policy_slot_keeps_the_knowledge_adapter(runtime, tiny_adapt, tmp_path, squad_file):
    """Writing with a policy never changes the knowledge adapter's weights."""
    from agent.core.inner_loop import train_adapter

    train_adapter(runtime, ["The capital of Italy is Rome."], tiny_adapt())
    before = [p.detach().clone() for p in runtime.adapter_parameters()]
    runtime.reset_policy(PolicyConfig(seed=1))
    runtime.write_policy_files(tmp_path / "p")
    runtime.load_policy(tmp_path / "p")
    with runtime.policy_active():
        runtime.generate(["The capital"], max_new_tokens=4)
    runtime.load_policy(None)
    assert not runtime.has_policy()
    assert all(torch.equal(a, b) for a, b in zip(before, runtime.adapter_parameters(), strict=True))


def teacher_file(tmp_path) -> str:
    """Teacher self-edits of ten made-up passages in SEAL's .jsonl shape (the held-out tenth
    is what distillation's evidence is measured on)."""
    from policies.self_edit import get_format

    fmt = get_format("implications")
    cities = ["Paris", "Rome", "Lyon", "Nice", "Turin", "Milan", "Genoa", "Lille", "Pisa", "Siena"]
    rows = [
        {
            "prompt": fmt.prompt(city, f"The museum in {city} has many old paintings."),
            "completion": f"1. Many people visit the museum in {city}.\n2. The museum is old.",
        }
        for city in cities
    ]
    path = tmp_path / "teacher.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_distillation_teaches_the_teachers_self_edits_and_rest_em_continues_from_it(
    squad_file, tmp_path, policy_settings, capsys
):
    out = tmp_path / "policy"
    settings = [*policy_settings, "--set", "policy.epochs=8", "--set", "policy.batch_size=3"]
    assert (
        main(["train-policy", "--distill", teacher_file(tmp_path), "--out", str(out), *settings])
        == 0
    )
    store = PolicyStore(out)
    manifest = store.verify(1)  # checksummed and loadable
    stats = json.loads((out / "distill.json").read_text())
    assert manifest["round"] == 0 and manifest["stats"] == stats
    assert stats["pairs"] == 9 and stats["held_out_pairs"] == 1
    assert stats["held_out_logprob_after"] > stats["held_out_logprob_before"] + 0.5
    assert store.current() == 1 and store.origin() == 1
    assert "version 1" in capsys.readouterr().out
    # A second distillation into the same store is refused; ReST-EM continues from version 1.
    assert (
        main(["train-policy", "--distill", teacher_file(tmp_path), "--out", str(out), *settings])
        == 2
    )
    assert train(squad_file, out, policy_settings, rounds=1) == 0
    assert store.versions() == [1, 2] and store.current() == 2
    assert store.verify(2)["parent"] == 1 and store.verify(2)["round"] == 1


def test_distill_or_data_one_of_them(squad_file, tmp_path, capsys):
    assert main(["train-policy", "--out", str(tmp_path)]) == 2
    assert "give a SQuAD-format data file" in capsys.readouterr().err
    argv = ["train-policy", str(squad_file), "--distill", str(squad_file), "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "not both" in capsys.readouterr().err
