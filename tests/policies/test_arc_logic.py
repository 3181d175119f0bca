"""ARC grids, augmentations, configs, leave-out tasks and voting: pure logic, no model."""

import json
import random

import pytest

from agent.core.runtime import TargetScore
from policies.arc.grids import (
    Pair,
    as_grid,
    cell_accuracy,
    format_prompt,
    grid_to_text,
    text_to_grid,
)
from policies.arc.inference import answer_queries, vote
from policies.arc.self_edit import ArcSelfEdit, parse_self_edit
from policies.arc.settings import ArcSettings
from policies.arc.transforms import (
    colour_permutation,
    every_augmentation,
    inference_views,
)
from policies.arc.ttt import build_examples, leave_out_tasks, plan


def random_grid(rng: random.Random, h: int, w: int):
    return tuple(tuple(rng.randint(0, 9) for _ in range(w)) for _ in range(h))


GRIDS = [
    random_grid(random.Random(s), h, w)
    for s, (h, w) in enumerate([(1, 1), (2, 3), (5, 4), (7, 7), (3, 11)])
]


# ----------------------------------------------------------------------------- codec
@pytest.mark.parametrize("grid", [*GRIDS, random_grid(random.Random(9), 30, 30)])
def test_codec_round_trip(grid):
    text = grid_to_text(grid)
    assert text_to_grid(text) == grid
    assert text_to_grid(f"\n{text}\n\ninput:\n123") == grid  # stops at the first non-row line


def test_codec_is_one_token_per_cell_layout():
    assert grid_to_text(((1, 2, 3), (4, 5, 6))) == "123\n456"


@pytest.mark.parametrize("text", ["", "abc", "12\n345", "1 2\n3 4", "\n\n", "9" * 31])
def test_codec_refuses_what_is_not_a_grid(text):
    assert text_to_grid(text) is None


@pytest.mark.parametrize(
    "rows", [[], [[]], [[1, 2], [3]], [[10]], [[-1]], [[True]], [[1.0]], [[0] * 31]]
)
def test_as_grid_refuses_bad_grids(rows):
    with pytest.raises(ValueError):
        as_grid(rows)


def test_partial_credit():
    truth = ((1, 2), (3, 4))
    assert cell_accuracy(truth, truth) == 1.0
    assert cell_accuracy(((1, 2), (3, 0)), truth) == 0.75
    assert cell_accuracy(((1, 2),), truth) == 0.0 and cell_accuracy(None, truth) == 0.0


# ----------------------------------------------------------------------------- augmentations
AUGMENTATIONS = every_augmentation() + [colour_permutation(random.Random(s)) for s in range(3)]


@pytest.mark.parametrize("aug", AUGMENTATIONS, ids=lambda a: a.name)
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{len(g)}x{len(g[0])}")
def test_inverse_of_augment_is_the_grid(aug, grid):
    assert aug.inverse(aug(grid)) == grid


@pytest.mark.parametrize("aug", AUGMENTATIONS, ids=lambda a: a.name)
def test_chained_with_colours_still_inverts(aug):
    full = aug.then(colour_permutation(random.Random(1)))
    for grid in GRIDS:
        assert full.inverse(full(grid)) == grid


def test_every_family_is_there():
    names = {a.name for a in every_augmentation()}
    families = {a.family for a in every_augmentation()}
    assert families == {"basic", "size", "chain", "repeat"}
    assert {
        "rot90",
        "rot180",
        "rot270",
        "flip_lr",
        "flip_ud",
        "transpose",
        "antitranspose",
    } <= names
    assert {"upscale22", "upscale21", "upscale12", "tile22", "translate11"} <= names
    assert all(a(((1, 2), (3, 4))) != ((1, 2), (3, 4)) for a in every_augmentation())


def test_an_impossible_inverse_is_none():
    double = next(a for a in every_augmentation() if a.name == "upscale22")
    assert double.inverse(((1, 2, 3),)) is None  # odd sizes cannot come from doubling


def test_colour_permutation_keeps_the_background():
    perm = colour_permutation(random.Random(0))
    assert perm(((0, 0), (0, 1)))[0] == (0, 0)


# ----------------------------------------------------------------------------- configs
SETTINGS = ArcSettings(max_examples=20, step_budget=10, max_epochs=5)
VALID = {
    "data_generation": {
        "use_basic_augmentations": True,
        "use_size_augmentations": False,
        "use_chain_augmentations": False,
        "use_repeat_augmentations": True,
    },
    "training": {
        "strategy": "train_using_output_tokens",
        "learning_rate": 0.001,
        "num_train_epochs": 2,
    },
}


def with_change(section: str, key: str, value) -> str:
    config = json.loads(json.dumps(VALID))
    config[section][key] = value
    return json.dumps(config)


def test_a_valid_config_parses():
    parsed = parse_self_edit("```json\n" + json.dumps(VALID) + "\n```", SETTINGS)
    assert parsed.reason is None
    assert parsed.edit == ArcSelfEdit(
        frozenset({"basic", "repeat"}), "train_using_output_tokens", 1e-3, 2
    )
    assert json.loads(parsed.edit.as_json()) == VALID


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("no json here", "no JSON object"),
        ('{"data_generation": {"use_basic_augmentations": ...', "bad JSON"),
        ("[" * 5000, "no JSON object"),
        ("{" + '"a":' * 3000, "bad JSON"),
        ('{"data_generation": 1, "training": 2}', "not an object"),
        (json.dumps({**VALID, "extra": 1}), "unknown key(s) in the config: extra"),
        (json.dumps({"training": VALID["training"]}), "missing key(s) in the config"),
        (with_change("data_generation", "use_colour_augmentations", True), "unknown key(s)"),
        (with_change("data_generation", "use_size_augmentations", "yes"), "true or false"),
        (with_change("data_generation", "use_size_augmentations", 2), "true or false"),
        (with_change("training", "strategy", "train_on_everything"), "strategy must be"),
        (with_change("training", "learning_rate", "fast"), "must be a number"),
        (with_change("training", "learning_rate", 5.0), "out of range"),
        (with_change("training", "learning_rate", -1e-4), "out of range"),
        (with_change("training", "learning_rate", True), "must be a number"),
        (with_change("training", "num_train_epochs", 0), "out of range"),
        (with_change("training", "num_train_epochs", 99), "out of range"),
        (with_change("training", "num_train_epochs", 2.5), "must be an integer"),
    ],
)
def test_invalid_configs_are_refused_with_their_reason(text, reason):
    parsed = parse_self_edit(text, SETTINGS)
    assert parsed.edit is None
    assert reason in parsed.reason


def test_json_nan_learning_rate_is_refused():
    parsed = parse_self_edit(with_change("training", "learning_rate", float("nan")), SETTINGS)
    assert parsed.edit is None and "must be a number" in parsed.reason


# ----------------------------------------------------------------------------- leave-out tasks
def flip_task(n: int, seed: int = 0) -> tuple[Pair, ...]:
    rng = random.Random(seed)
    grids = [random_grid(rng, 3, 3) for _ in range(n)]
    return tuple(Pair(g, tuple(row[::-1] for row in g)) for g in grids)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_leave_out_sizes(n):
    demos = flip_task(n)
    one = leave_out_tasks(demos, 1)
    assert len(one) == n and all(len(d) == n - 1 and q not in d for d, q in one)
    two = leave_out_tasks(demos, 2)
    if n >= 3:
        assert len(two) == n + n * (n - 1)
        assert all(len(d) == n - 2 for d, _ in two[n:])
    else:
        assert len(two) == n
    assert leave_out_tasks(demos[:1], 2) == []


def count(text: str) -> int:
    return len(text)


def test_examples_keep_the_plain_tasks_and_the_cap():
    demos = flip_task(4)
    edit = ArcSelfEdit(frozenset({"basic", "size"}), "train_using_all_tokens", 1e-3, 1)
    settings = ArcSettings(max_examples=9, max_held_out=1)
    examples = build_examples(demos, edit, settings, 0, count)
    assert len(examples) == 9
    assert [e.view for e in examples[:4]] == ["identity"] * 4
    assert {e.view for e in examples[4:]} <= {a.name for a in every_augmentation()}
    none = ArcSelfEdit(frozenset(), "train_using_all_tokens", 1e-3, 1)
    assert len(build_examples(demos, none, settings, 0, count)) == 4
    assert build_examples(demos, edit, settings, 0, count) == examples  # seeded


def test_plan_refuses_a_config_over_the_step_budget():
    demos = flip_task(4)
    settings = ArcSettings(max_examples=8, max_held_out=1, step_budget=8)
    cheap = ArcSelfEdit(frozenset({"basic"}), "train_using_output_tokens", 1e-3, 2)
    dear = ArcSelfEdit(frozenset({"basic"}), "train_using_output_tokens", 1e-3, 3)
    ok = plan(demos, cheap, settings, batch_size=2, seed=0, count_tokens=count)
    assert ok.refused is None and ok.steps == 8 and ok.examples == 8
    assert all(isinstance(s, list) and len(s) == 2 for s in ok.sequences)  # output tokens only
    over = plan(demos, dear, settings, batch_size=2, seed=0, count_tokens=count)
    assert over.refused == "needs 12 optimizer steps, over the step budget of 8"
    short = ArcSettings(max_examples=8, max_held_out=1, max_seq_tokens=64)
    assert "no training example fits" in plan(demos, cheap, short, 2, 0, count).refused


# ----------------------------------------------------------------------------- voting
def test_vote_picks_the_majority_then_the_first_seen():
    a, b, c = ((1,),), ((2,),), ((3,),)
    assert vote([b, a, None, a, c, a, b]) == [(a, 3), (b, 2)]
    assert vote([c, b]) == [(c, 1), (b, 1)]
    assert vote([None, None]) == []


class FakeRuntime:
    """Answers every view with `answer(view index)`: a stand-in for the model's generations."""

    def __init__(self, answers):
        self.answers = answers
        self.prompts = []

    def count_tokens(self, text: str) -> int:
        return len(text)

    def generate(self, prompts, max_new_tokens, batch_size):
        self.prompts = list(prompts)
        return [[self.answers[i % len(self.answers)]] for i in range(len(prompts))]

    def score(self, prompts, targets):
        return [TargetScore(-1.0 * len(t), len(t)) for t in targets]


def test_answers_on_views_are_mapped_back_and_voted():
    demos = flip_task(3)
    truth = ((1, 2, 3), (4, 5, 6))
    query = Pair(((7, 7, 7), (7, 7, 7)), truth)
    views = inference_views(4)  # identity, transpose, flip_lr, rot90
    wrong = ((9, 9, 9), (9, 9, 9))
    # each view answers the truth in its own frame, but the rot90 view answers something else
    answers = [grid_to_text(v(truth)) + "\n\ninput:" for v in views[:3]] + [grid_to_text(wrong)]
    runtime = FakeRuntime(answers)
    [result] = answer_queries(runtime, demos, [query], views=4, max_answer_tokens=50)
    assert result.attempts[0] == truth and result.votes[0] == 3
    assert result.solved and result.partial == 1.0 and result.parsed == 4
    assert result.gold_logprob == -1.0
    assert runtime.prompts[0] == format_prompt(demos, query.input)  # view 0: as written
    # a minority answer is the second attempt, and only it does not solve the task
    # (all-9 grids look alike from identity and flip_lr: two votes)
    runtime = FakeRuntime([grid_to_text(g) for g in (wrong, views[1](truth), wrong)])
    [result] = answer_queries(runtime, demos, [query], views=3, max_answer_tokens=50)
    assert result.attempts == (wrong, truth) and result.solved  # pass@2
    runtime = FakeRuntime(["garbage"])
    [result] = answer_queries(runtime, demos, [query], views=2, max_answer_tokens=50)
    assert result.attempts == () and not result.solved and result.partial == 0.0
