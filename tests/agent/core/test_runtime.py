import json

import pytest
import torch

from agent.core.config import ModelConfig, PolicyConfig
from agent.core.errors import SealError
from agent.core.inner_loop import train_adapter
from agent.core.runtime import (
    ADAPTER,
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    COMBINATIONS,
    ModelRuntime,
)

PROMPTS = ["The capital of France is", "Rome is a city on the river Tiber. The tower in"]
FACTS = ["The capital of Italy is Rome.", "The bridge in Rome was built in 1990."]


def logits(runtime, text: str = PROMPTS[1]) -> torch.Tensor:
    ids = runtime.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return runtime.model(input_ids=ids, use_cache=False).logits[0]


@pytest.fixture
def trained(runtime, tiny_adapt):
    train_adapter(runtime, FACTS, tiny_adapt(epochs=2))
    return runtime


@pytest.fixture
def saved(trained, tmp_path):
    return trained.save_adapter(tmp_path / "adapter")


def test_save_then_load_gives_identical_logits(trained, saved, make_runtime, tiny_adapt):
    expected = logits(trained)
    assert (saved / ADAPTER_WEIGHTS).is_file() and (saved / ADAPTER_CONFIG).is_file()
    other = make_runtime()
    train_adapter(other, ["Many people visit the museum every year."], tiny_adapt(seed=3))
    assert not torch.equal(logits(other), expected)
    other.load_adapter(saved)
    assert torch.equal(logits(other), expected)


def test_save_writes_peft_config_and_extra_files(trained, tmp_path):
    folder = trained.save_adapter(tmp_path / "a", extra_files={"notes.txt": "hello"})
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    assert config["r"] == 8 and config["base_model_name_or_path"] == "tiny"
    assert (folder / "notes.txt").read_text() == "hello"
    trained.save_adapter(folder)  # overwriting an adapter replaces the folder
    assert not (folder / "notes.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # no temporary folder left behind


def test_reset_adapter_restores_base_logits(trained):
    with trained.adapter_disabled():
        base = logits(trained)
    assert not torch.allclose(logits(trained), base)
    trained.reset_adapter()
    assert torch.equal(logits(trained), base)


def test_load_of_another_rank_reshapes_the_slot_and_reset_restores_it(
    trained, saved, make_runtime, tiny_adapt
):
    other = make_runtime(tiny_adapt(rank=4))
    base = logits(other)
    other.load_adapter(saved)
    assert other.model.peft_config[ADAPTER].r == 8
    assert torch.allclose(logits(other), logits(trained), atol=1e-6)
    other.reset_adapter()
    assert other.model.peft_config[ADAPTER].r == 4
    assert torch.allclose(logits(other), base, atol=1e-6)
    assert list(other.model.peft_config) == [ADAPTER]


@pytest.mark.parametrize("method", COMBINATIONS)
def test_combined_adapters_keep_what_each_one_learned(method, make_runtime, tiny_adapt, tmp_path):
    runtime = make_runtime()
    prompts, answers = (
        ["The capital of Italy is", "The bridge in Rome was built in"],
        [
            " Rome.",
            " 1990.",
        ],
    )
    base = [s.mean_logprob for s in runtime.score(prompts, answers)]
    for i, fact in enumerate(FACTS):
        train_adapter(runtime, [fact] * 4, tiny_adapt(epochs=5))
        runtime.save_adapter(tmp_path / f"doc{i}")
    runtime.combine_adapters([tmp_path / "doc0", tmp_path / "doc1"], [1.0, 1.0], method)
    combined = [s.mean_logprob for s in runtime.score(prompts, answers)]
    assert all(c > b + 1.0 for c, b in zip(combined, base, strict=True)), (base, combined)
    expected_rank = 16 if method == "cat" else 8
    assert runtime.model.peft_config[ADAPTER].r == expected_rank
    assert list(runtime.model.peft_config) == [ADAPTER]  # no helper slots left behind
    saved = runtime.save_adapter(tmp_path / "combined")
    fresh = make_runtime()
    fresh.load_adapter(saved)
    again = [s.mean_logprob for s in fresh.score(prompts, answers)]
    assert again == pytest.approx(combined, abs=1e-5)


def test_load_refuses_adapter_of_other_base_model(other_base_model, make_runtime, tmp_path):
    stranger = make_runtime(model=other_base_model)
    folder = stranger.save_adapter(tmp_path / "stranger")
    ours = make_runtime()
    assert ours.fingerprint() != stranger.fingerprint()
    with pytest.raises(SealError, match="different base model"):
        ours.load_adapter(folder)


def test_an_adapter_moves_between_dtypes_of_the_same_weights(tiny_model, make_runtime, tmp_path):
    import copy

    import torch

    half = make_runtime(model=copy.deepcopy(tiny_model).to(torch.bfloat16))
    full = make_runtime(model=copy.deepcopy(tiny_model).to(torch.bfloat16).float())
    assert half.fingerprint() == full.fingerprint()
    full.load_adapter(half.save_adapter(tmp_path / "trained-in-bf16"))


def test_load_refuses_missing_adapter(runtime, tmp_path):
    with pytest.raises(SealError, match="missing or unreadable"):
        runtime.load_adapter(tmp_path / "nowhere")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_load_refuses_damaged_weights_file(saved, runtime, damage):
    weights = saved / ADAPTER_WEIGHTS
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x07" * 64)
    with pytest.raises(SealError, match=ADAPTER_WEIGHTS.replace(".", r"\.")):
        runtime.load_adapter(saved)


def test_generate_returns_requested_number_of_completions(runtime):
    out = runtime.generate(PROMPTS, max_new_tokens=4, temperature=1.0, num_return_sequences=3)
    assert len(out) == len(PROMPTS)
    assert all(len(texts) == 3 and all(isinstance(t, str) for t in texts) for texts in out)


def test_greedy_generation_is_deterministic(trained):
    first = trained.generate(PROMPTS, max_new_tokens=6)
    assert first == trained.generate(PROMPTS, max_new_tokens=6)
    assert [len(texts) for texts in first] == [1, 1]


def test_sampling_with_a_seed_is_reproducible(runtime):
    a = runtime.generate(PROMPTS[:1], max_new_tokens=6, temperature=1.0, seed=5)
    b = runtime.generate(PROMPTS[:1], max_new_tokens=6, temperature=1.0, seed=5)
    assert a == b


def hf_greedy(runtime, prompts, max_new_tokens, **extra) -> list[str]:
    """Plain transformers decoding: the reference the runtime's own decoding loop must match."""
    tok = runtime.tokenizer
    batch = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = runtime.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tok.pad_token_id,
            **extra,
        )
    return tok.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def test_greedy_decoding_gives_the_tokens_of_transformers_generate(trained):
    prompts = [*PROMPTS, "Which river flows through Rome? It is the"]  # uneven: left padding
    for batch_size in (1, 16):
        ours = trained.generate(prompts, max_new_tokens=12, batch_size=batch_size)
        assert [texts[0] for texts in ours] == hf_greedy(trained, prompts, 12)


def test_stop_at_newline_ends_on_the_first_newline_like_a_stop_string(trained):
    tok = trained.tokenizer
    ours = [t[0] for t in trained.generate(PROMPTS, max_new_tokens=30, stop_at_newline=True)]
    theirs = hf_greedy(trained, PROMPTS, 30, stop_strings=["\n"], tokenizer=tok)
    assert [t.split("\n")[0] for t in ours] == [t.split("\n")[0] for t in theirs]
    full = [t[0] for t in trained.generate(PROMPTS, max_new_tokens=30)]
    assert all(f.startswith(o) for f, o in zip(full, ours, strict=True))  # cut, same tokens


def test_candidates_share_their_prompt_and_greedy_candidates_agree(trained):
    [texts] = trained.generate(PROMPTS[:1], max_new_tokens=8, num_return_sequences=3)
    assert texts == [hf_greedy(trained, PROMPTS[:1], 8)[0]] * 3
    sampled = trained.generate(PROMPTS, max_new_tokens=8, temperature=1.0, num_return_sequences=4)
    assert [len(t) for t in sampled] == [4, 4]


def test_top_p_keeps_only_the_most_likely_tokens(trained):
    # top_p near 0 leaves the single most likely token: sampling becomes greedy.
    sampled = trained.generate(PROMPTS, max_new_tokens=8, temperature=1.0, top_p=1e-6, seed=3)
    assert sampled == trained.generate(PROMPTS, max_new_tokens=8)


def test_stream_emits_the_greedy_first_line_piece_by_piece(trained):
    pieces: list[str] = []
    text = trained.stream(PROMPTS[1], max_new_tokens=20, emit=pieces.append)
    assert "".join(pieces) == text
    [[expected]] = trained.generate(PROMPTS[1:], max_new_tokens=20, stop_at_newline=True)
    assert text == expected


def test_score_matches_manual_log_softmax(trained):
    prompt, target = PROMPTS[0], " Paris."
    tok = trained.tokenizer
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    t_ids = tok(target, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = trained.model(input_ids=torch.tensor([p_ids + t_ids]), use_cache=False).logits[0]
    logprobs = torch.log_softmax(out.float(), dim=-1)
    expected = sum(float(logprobs[len(p_ids) - 1 + i, t]) for i, t in enumerate(t_ids))
    [score] = trained.score([prompt], [target])
    assert score.n_tokens == len(t_ids) == 2
    assert score.logprob == pytest.approx(expected, abs=1e-4)
    assert score.mean_logprob == pytest.approx(expected / 2, abs=1e-4)


def test_batched_score_equals_one_at_a_time(trained):
    prompts = [PROMPTS[0], PROMPTS[1], "Which river flows through Rome?"]
    targets = [" Paris.", " 1889 and the museum in Paris has many old paintings.", " Tiber"]
    batched = trained.score(prompts, targets)
    single = [trained.score([p], [t])[0] for p, t in zip(prompts, targets, strict=True)]
    for b, s in zip(batched, single, strict=True):
        assert b.n_tokens == s.n_tokens
        assert b.logprob == pytest.approx(s.logprob, abs=1e-4)
    in_twos = trained.score(prompts, targets, batch_size=2)
    assert [s.logprob for s in in_twos] == pytest.approx([s.logprob for s in batched], abs=1e-4)


def test_auto_device_and_dtype_are_chosen_once_and_recorded_in_the_config(
    tiny_model_dir, tiny_adapt
):
    model_cfg = ModelConfig(name=str(tiny_model_dir), device="auto", dtype="auto")
    runtime = ModelRuntime.load(model_cfg, tiny_adapt())
    assert model_cfg.device == runtime.device.type
    assert model_cfg.dtype == str(runtime.base_model.dtype).removeprefix("torch.")
    again = ModelRuntime.load(model_cfg, tiny_adapt())  # the recorded choice reloads
    assert again.base_model.dtype == runtime.base_model.dtype


def test_folded_decoding_computes_the_adapters_logits_and_gives_the_weights_back(trained):
    before = {n: p.detach().clone() for n, p in trained.model.named_parameters()}
    adapted = logits(trained)
    with trained.folded():
        folded = logits(trained)
        changed = [n for n, p in trained.model.named_parameters() if not torch.equal(p, before[n])]
    torch.testing.assert_close(folded, adapted, atol=1e-4, rtol=0)
    assert changed and all("base_layer" in n for n in changed)  # the adapted weights, folded
    assert all(torch.equal(p, before[n]) for n, p in trained.model.named_parameters())
    torch.testing.assert_close(logits(trained), adapted, atol=0, rtol=0)
    with trained.adapter_disabled(), trained.folded():  # no active adapter: nothing to fold
        assert all(torch.equal(p, before[n]) for n, p in trained.model.named_parameters())


def test_folded_decoding_folds_the_policy_when_the_policy_writes(trained):
    trained.reset_policy(PolicyConfig(seed=1))
    for p in trained.policy_parameters():  # a policy unlike the knowledge adapter
        p.data.normal_(0, 0.2)
    with trained.policy_active():
        expected = logits(trained)
        with trained.folded():
            torch.testing.assert_close(logits(trained), expected, atol=1e-4, rtol=0)
    trained.load_policy(None)


def test_a_batch_streams_each_row_as_it_would_stream_alone(trained):
    prompts = [PROMPTS[1], "Which river flows through Rome? It is the", PROMPTS[0]]
    pieces: list[list[str]] = [[] for _ in prompts]
    texts = trained.stream_batch(prompts, max_new_tokens=20, emits=[p.append for p in pieces])
    assert ["".join(p) for p in pieces] == texts
    assert texts == [trained.stream(p, max_new_tokens=20, emit=lambda _: None) for p in prompts]
