"""Test-time training on an ARC task with the tiny model: it raises the gold output's log-prob."""

import json
import random

from agent.core.config import SealConfig
from policies.arc.grids import Pair
from policies.arc.settings import ArcSettings
from policies.arc.ttt import ArcResult, ArcTTTTask
from policies.executor import LocalExecutor


def flip_pairs(n: int, seed: int) -> tuple[Pair, ...]:
    rng = random.Random(seed)
    grids = [
        tuple(tuple(rng.choice((0, 1, 2)) for _ in range(3)) for _ in range(3)) for _ in range(n)
    ]
    return tuple(Pair(g, tuple(row[::-1] for row in g)) for g in grids)


CONFIG = {
    "data_generation": {
        "use_basic_augmentations": True,
        "use_size_augmentations": False,
        "use_chain_augmentations": False,
        "use_repeat_augmentations": False,
    },
    "training": {
        "strategy": "train_using_output_tokens",
        "learning_rate": 0.01,
        "num_train_epochs": 3,
    },
}
SETTINGS = ArcSettings(
    max_examples=12, step_budget=100, views=2, max_answer_tokens=16, max_seq_tokens=512
)


def test_test_time_training_on_a_flip_task_raises_the_gold_logprob(runtime, tiny_adapt):
    cfg = SealConfig(adapt=tiny_adapt())
    demos, test = flip_pairs(4, 0), flip_pairs(1, 1)
    before, after, refused = LocalExecutor(runtime, cfg).map(
        [
            ArcTTTTask("icl", demos, test, None, SETTINGS, 0, 2),
            ArcTTTTask("oracle", demos, test, json.dumps(CONFIG), SETTINGS, 0, 2),
            ArcTTTTask("bad", demos, test, '{"training": 1}', SETTINGS, 0, 2),
        ]
    )
    assert not before.trained and before.steps == 0
    assert after.trained and after.examples == 12 and after.steps == 18
    assert after.gold_logprob > before.gold_logprob + 0.5, (before.gold_logprob, after.gold_logprob)
    assert 0.0 <= after.partial <= 1.0 and after.final_loss is not None
    # a refused config trains nothing: the answers are the untrained model's
    assert refused.refused.startswith("missing key(s)") and not refused.trained
    assert refused.gold_logprob == before.gold_logprob
    assert ArcResult.from_dict(json.loads(json.dumps(after.as_dict()))) == after
