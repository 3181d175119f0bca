"""The inner-loop benchmark's frozen floor: the same rows with every adapter off."""

import torch

from evals.bench_inner_loop import frozen_floor_tokens_per_s


def test_the_frozen_floor_runs_the_rows_without_touching_the_adapter(runtime, tiny_adapt):
    before = [p.detach().clone() for p in runtime.adapter_parameters()]
    rate = frozen_floor_tokens_per_s(
        runtime, ["Rome is in Italy.", "Lyon is in France."], tiny_adapt(), steps=2
    )
    assert rate > 0
    after = runtime.adapter_parameters()
    assert all(p.grad is None for p in after)  # the adapter was off: nothing flowed into it
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert not runtime.model.get_input_embeddings()._forward_hooks  # the hook is removed
