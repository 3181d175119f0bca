"""ReST-EM: reward and selection on hand-made candidates, the policy slot, policy finetuning with
the prompt masked, and the policy store."""

import json

import pytest
import torch

from agent.core.config import PolicyConfig, SelfEditConfig
from agent.core.errors import SealError
from agent.core.inner_loop import train_adapter
from policies.executor import InnerLoopResult
from policies.rest_em import (
    finetune_policy,
    kept_pairs,
    reward_key,
    round_stats,
    select_best,
)
from policies.self_edit import FORMATS, self_edit_prompt, write_self_edits
from stores.policies import PolicyStore, resolve_policy

TITLE, CONTEXT = "Paris", "The capital of France is Paris. Paris is a city on the river Seine."
TAUGHT = "The tower in Paris was built in 1889.\nThe museum in Paris has many old paintings."


def result(contained: float, logprob: float) -> InnerLoopResult:
    return InnerLoopResult("k", contained, 0.0, logprob, (), 0.0, None)


BASE = result(0.0, -3.0)


# ----------------------------------------------------------------------------- reward, selection
def test_logprob_reward_ranks_by_gain_then_contained():
    a, b, c = result(0.0, -2.0), result(0.2, -2.5), result(0.4, -2.0)
    keys = [reward_key(x, BASE, "logprob") for x in (a, b, c)]
    assert keys[0] == (1.0, 0.0) and keys[1] == (0.5, 0.2)
    assert select_best(keys, [True] * 3, None) == 2  # same gain as a, more answers contained


def test_graded_reward_ranks_by_contained_then_gain():
    a, b, c = result(0.2, -1.0), result(0.4, -2.9), result(0.4, -2.5)
    keys = [reward_key(x, BASE, "graded") for x in (a, b, c)]
    assert select_best(keys, [True] * 3, None) == 2  # b and c tie on accuracy; c gains more


def test_select_skips_ineligible_and_prefers_the_first_of_equals():
    keys = [(1.0, 0.0), (1.0, 0.0), (2.0, 0.0)]
    assert select_best(keys, [True, True, False], None) == 0
    assert select_best(keys, [False, False, False], None) is None
    assert select_best([], [], None) is None


def test_select_keeps_only_what_beats_the_baseline():
    keys = [(0.5, 0.0), (0.8, 0.0)]
    assert select_best(keys, [True, True], (0.7, 0.0)) == 1
    assert select_best(keys, [True, True], (0.8, 0.0)) is None  # equal is not better
    assert select_best(keys, [True, True], (0.8, -1.0)) == 1  # the tie-break decides


def test_unknown_reward_is_refused():
    with pytest.raises(ValueError):
        reward_key(BASE, BASE, "vibes")


def test_kept_pairs_and_round_stats_read_the_log():
    cand = lambda raw, c, k: {  # noqa: E731
        "raw": raw,
        "fallback": False,
        "result": {"contained": c, "logprob": -1.0},
        "key": [k, c],
    }
    records = [
        {
            "kind": "passage",
            "round": 1,
            "index": 1,
            "selected": None,
            "candidates": [cand("x", 0, 0)],
        },
        {
            "kind": "passage",
            "round": 1,
            "index": 0,
            "selected": 1,
            "candidates": [cand("a", 0.0, 0.1), cand("b", 0.5, 0.3)],
        },
        {"kind": "passage", "round": 2, "index": 0, "selected": 0, "candidates": [cand("z", 1, 1)]},
    ]
    assert kept_pairs(records, 1) == [(0, "b")]
    stats = round_stats(records, 1)
    assert (stats["passages"], stats["candidates"], stats["kept"]) == (2, 3, 1)
    assert stats["kept_reward"] == pytest.approx(0.3)
    assert stats["best_of_k_contained"] == pytest.approx(0.25)


# ----------------------------------------------------------------------------- policy training
def completion_logprob(runtime, prompt: str, completion: str) -> float:
    return runtime.score([prompt], [completion])[0].mean_logprob


def test_finetuned_policy_writes_what_it_was_taught_and_leaves_knowledge_alone(runtime, tiny_adapt):
    prompt = self_edit_prompt(runtime, FORMATS["implications"], TITLE, CONTEXT, SelfEditConfig())
    train_adapter(runtime, ["The capital of Italy is Rome."], tiny_adapt())  # some knowledge
    knowledge = [p.detach().clone() for p in runtime.adapter_parameters()]
    answer_before = completion_logprob(runtime, "The capital of Italy is", " Rome.")
    runtime.reset_policy(PolicyConfig(seed=0))
    with runtime.policy_active():
        before = completion_logprob(runtime, prompt, TAUGHT)
        prompt_before = runtime.score([prompt[:20]], [prompt[20:120]])[0].mean_logprob
    policy = PolicyConfig(learning_rate=1e-2, epochs=30, batch_size=1)
    log = finetune_policy(runtime, [(prompt, TAUGHT)], policy, max_tokens=512)
    assert log.losses[-1] < log.losses[0] / 3
    with runtime.policy_active():
        after = completion_logprob(runtime, prompt, TAUGHT)
        prompt_after = runtime.score([prompt[:20]], [prompt[20:120]])[0].mean_logprob
    assert after > before + 2.0
    # The prompt carried no loss: the policy did not learn to write prompts.
    assert abs(prompt_after - prompt_before) < abs(after - before) / 4
    # Outside policy_active the knowledge adapter answers, untouched.
    assert all(
        torch.equal(a, b) for a, b in zip(knowledge, runtime.adapter_parameters(), strict=True)
    )
    assert completion_logprob(runtime, "The capital of Italy is", " Rome.") == pytest.approx(
        answer_before, abs=1e-5
    )


# ----------------------------------------------------------------------------- the store
def commit_taught_policy(runtime, root, version=1):
    prompt = self_edit_prompt(runtime, FORMATS["implications"], TITLE, CONTEXT, SelfEditConfig())
    runtime.reset_policy(PolicyConfig(seed=0))
    finetune_policy(
        runtime,
        [(prompt, TAUGHT)],
        PolicyConfig(learning_rate=1e-2, epochs=40, batch_size=1),
        max_tokens=512,
    )
    store = PolicyStore(root)
    folder = store.commit(
        runtime.write_policy_files,
        version=version,
        parent=version - 1,
        base_fingerprint=runtime.fingerprint(),
        config={"note": "test"},
    )
    store.set_current(version)
    runtime.load_policy(None)
    return store, folder


def test_committed_policy_writes_self_edits_through_the_config(runtime, tmp_path):
    store, folder = commit_taught_policy(runtime, tmp_path / "policies")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["round"] == 1 and manifest["parent"] == 0
    assert manifest["base_fingerprint"] == runtime.fingerprint()
    assert set(manifest["files"]) == {"adapter_model.safetensors", "adapter_config.json"}
    greedy = SelfEditConfig(format="implications", temperature=0.0, max_new_tokens=24)
    [plain] = write_self_edits(runtime, TITLE, CONTEXT, greedy)
    [taught] = write_self_edits(
        runtime, TITLE, CONTEXT, greedy.model_copy(update={"policy": folder})
    )
    assert taught.raw.startswith("The tower in Paris") and not plain.raw.startswith("The tower")
    assert "The tower in Paris was built in 1889." in taught.items
    # The store folder means its current version.
    [again] = write_self_edits(
        runtime, TITLE, CONTEXT, greedy.model_copy(update={"policy": store.root})
    )
    assert again.raw == taught.raw


def test_store_refuses_damaged_or_unknown_versions(runtime, tmp_path):
    store, folder = commit_taught_policy(runtime, tmp_path / "policies")
    assert store.versions() == [1] and store.current() == 1
    assert resolve_policy("0", store.root) is None
    assert resolve_policy("1", store.root) == folder
    with pytest.raises(SealError, match="no policy version 3"):
        resolve_policy("3", store.root)
    with pytest.raises(SealError, match="neither a policy version folder"):
        resolve_policy(tmp_path, None)
    with pytest.raises(SealError, match="already exists"):
        store.commit(lambda d: None, version=1, parent=0, base_fingerprint="x", config={})
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(SealError, match="fails its checksum"):
        resolve_policy(folder)
    with pytest.raises(SealError, match="fails its checksum"):
        resolve_policy("current", store.root)


def test_a_killed_commit_leaves_nothing_loadable(runtime, tmp_path):
    store = PolicyStore(tmp_path / "policies")

    def crash(folder):
        runtime.reset_policy(PolicyConfig(seed=0))
        runtime.write_policy_files(folder)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.commit(crash, version=1, parent=0, base_fingerprint="x", config={})
    assert store.versions() == [] and store.current() == 0
    assert list(store.versions_dir.iterdir()) == []


def test_policy_of_another_base_model_is_refused(runtime, make_runtime, other_base_model, tmp_path):
    _, folder = commit_taught_policy(runtime, tmp_path / "policies")
    other = make_runtime(model=other_base_model)
    with pytest.raises(SealError, match="different base model"):
        other.load_policy(folder)
