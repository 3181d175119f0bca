"""The base model's anchor answers: adapters off, generated once per base and reused."""

import random

from agent.core.answering import first_line, question_prompt
from agent.core.config import EvalConfig
from agent.core.inner_loop import train_adapter
from policies.anchors import ANCHOR_QUESTIONS, base_answers, choose_anchors

ASKING = EvalConfig(max_answer_tokens=6, use_chat_template=False)


class Counting:
    """The runtime, counting the prompts that reach generation."""

    def __init__(self, runtime):
        self.runtime, self.prompts = runtime, 0
        self._generate = runtime.generate

    def __enter__(self):
        def generate(prompts, **kwargs):
            self.prompts += len(prompts)
            return self._generate(prompts, **kwargs)

        self.runtime.generate = generate
        return self

    def __exit__(self, *exc):
        del self.runtime.generate


def test_anchor_answers_are_the_base_models_whatever_the_adapter(runtime, tiny_adapt):
    train_adapter(runtime, ["Rome is the answer to every question."] * 4, tiny_adapt(epochs=5))
    questions = list(ANCHOR_QUESTIONS[:4])
    prompts = [question_prompt(runtime, q, ASKING) for q in questions]
    with runtime.adapter_disabled():
        outputs = runtime.generate(prompts, max_new_tokens=ASKING.max_answer_tokens)
    expected = [first_line(out[0]) for out in outputs]
    adapted = [first_line(out[0]) for out in runtime.generate(prompts, max_new_tokens=6)]
    assert adapted != expected  # the adapter changed the answers; the anchors keep the base's
    assert base_answers(runtime, questions, ASKING) == expected


def test_each_base_answer_is_generated_once_per_base(runtime):
    with Counting(runtime) as counting:
        first = choose_anchors(runtime, ASKING, 3, random.Random(0))
        again = choose_anchors(runtime, ASKING, 3, random.Random(0))
        assert again == first and counting.prompts == 6
        choose_anchors(runtime, ASKING, 3, random.Random(1))  # only the unseen questions
        assert counting.prompts < 12
        runtime._fingerprint = "another base"  # as after a merge into the base
        choose_anchors(runtime, ASKING, 3, random.Random(0))
        assert counting.prompts >= 12
