import math

import pytest
import torch

from agent.core.answering import ANSWER_PROMPT
from agent.core.errors import SealError
from agent.core.inner_loop import pack, packed_loss, tokenize_sequences, train_adapter

FACT = "The capital of Italy is Rome."
SEQUENCES = [
    "The capital of France is Paris.",
    "Rome is a city on the river Tiber.",
    "Many people visit the museum every year.",
    "The tower in Paris was built in 1889.",
    "The river Seine flows into the sea.",
]


def adapter_state(runtime) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().clone() for n, p in runtime.model.named_parameters() if ".knowledge." in n
    }


def test_update_raises_logprob_of_trained_fact(runtime, tiny_adapt):
    prompt, target = "The capital of Italy is", " Rome."
    [before] = runtime.score([prompt], [target])
    log = train_adapter(runtime, [FACT], tiny_adapt(epochs=10))
    [after] = runtime.score([prompt], [target])
    assert log.losses[-1] < log.losses[0]
    assert after.logprob > before.logprob + 5  # nats, over 2 target tokens
    assert after.mean_logprob > -1.0


def ids_of(pairs):
    return [[*prompt, *completion] for prompt, completion in pairs]


def test_packed_loss_is_token_weighted_mean_of_each_sequence_loss(runtime):
    seqs = tokenize_sequences(runtime, SEQUENCES[:3], max_tokens=64)
    assert len({len(s) for s in ids_of(seqs)}) > 1  # different lengths: a crossing would show
    with torch.no_grad():
        loss, n = packed_loss(runtime.model, pack(seqs), runtime.device)
        alone = [packed_loss(runtime.model, pack([s]), runtime.device) for s in seqs]
    assert n == sum(k for _, k in alone) == sum(len(s) - 1 for s in ids_of(seqs))
    weighted = sum(float(l_) * k for l_, k in alone) / n
    assert float(loss) == pytest.approx(weighted, rel=1e-5)


def test_packed_logits_equal_each_sequence_run_alone(runtime, tiny_adapt):
    """Attention never crosses a sequence boundary inside a packed row."""
    pairs = tokenize_sequences(runtime, SEQUENCES[:3], max_tokens=64)
    seqs = ids_of(pairs)
    train_adapter(runtime, SEQUENCES, tiny_adapt(epochs=1))  # a non-zero adapter takes part
    batch = pack(pairs)
    assert batch.position_ids[0].tolist() == [i for s in seqs for i in range(len(s))]
    with torch.no_grad():
        alone = [
            runtime.model(input_ids=torch.tensor([s]), use_cache=False).logits[0] for s in seqs
        ]
        with runtime.training():  # the attention that training runs with
            packed = runtime.model(
                input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False
            ).logits[0]
    start = 0
    for seq, logits in zip(seqs, alone, strict=True):
        torch.testing.assert_close(packed[start : start + len(seq)], logits, atol=1e-4, rtol=0)
        start += len(seq)


def test_pack_labels_mask_only_each_sequence_first_token():
    batch = pack([([], [5, 6, 7]), ([], [8, 9])])
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9]]
    assert batch.labels.tolist() == [[-100, 6, 7, -100, 9]]


def test_pack_puts_the_loss_of_a_pair_on_its_completion_only():
    batch = pack([([1, 2, 3], [4, 5]), ([6], [7, 8]), ([], [9, 10])])
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1]]
    assert batch.labels.tolist() == [[-100, -100, -100, 4, 5, -100, 7, 8, -100, 10]]


def test_a_question_answer_pair_trains_the_answer_not_the_question(runtime, tiny_adapt):
    question = ANSWER_PROMPT.format(question="When was the tower built?")
    adapt = tiny_adapt(epochs=10)
    log = train_adapter(runtime, [[question, "1889"]], adapt)
    [(prompt, completion)] = tokenize_sequences(runtime, [[question, "1889"]], 64)
    assert log.loss_tokens == adapt.epochs * len(completion)  # the answer and its EOS only
    [answer] = runtime.score([question], ["1889"])
    assert answer.mean_logprob > -1.0


def test_training_is_deterministic(runtime, tiny_adapt):
    adapt = tiny_adapt(epochs=2)
    train_adapter(runtime, SEQUENCES, adapt)
    first = adapter_state(runtime)
    train_adapter(runtime, ["The king of France lived in a large palace."], adapt)
    train_adapter(runtime, SEQUENCES, adapt)
    second = adapter_state(runtime)
    assert first.keys() == second.keys() and first
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(v.abs().sum() > 0 for k, v in first.items() if "lora_B" in k)


def test_train_log_counts_steps_and_tokens(runtime, tiny_adapt):
    adapt = tiny_adapt(epochs=3, batch_size=2)
    log = train_adapter(runtime, SEQUENCES, adapt)
    lengths = [len(s) for s in ids_of(tokenize_sequences(runtime, SEQUENCES, adapt.max_seq_tokens))]
    steps = adapt.epochs * math.ceil(len(SEQUENCES) / adapt.batch_size)
    assert log.steps == len(log.losses) == steps == 9
    assert log.tokens == adapt.epochs * sum(lengths)
    assert log.loss_tokens == adapt.epochs * sum(n - 1 for n in lengths)
    assert log.n_sequences == len(SEQUENCES)
    assert all(math.isfinite(x) for x in log.losses)
    assert log.seconds > 0 and log.as_dict()["steps"] == steps


def test_sequences_end_in_eos_and_are_truncated(runtime):
    eos = runtime.tokenizer.eos_token_id
    [(prompt, ids)] = tokenize_sequences(runtime, [" ".join(SEQUENCES)], max_tokens=16)
    assert prompt == [] and len(ids) == 16 and ids[-1] == eos
    [(_, ids)] = tokenize_sequences(runtime, ["", FACT], max_tokens=64)  # the empty one dropped
    assert ids[-1] == eos


@pytest.mark.parametrize("sequences", [[], [""], ["", ""]])
def test_nothing_to_train_on_is_a_user_error(runtime, tiny_adapt, sequences):
    with pytest.raises(SealError, match="nothing to train on"):
        train_adapter(runtime, sequences, tiny_adapt())
