import json
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.answering import question_prompt
from agent.core.config import EvalConfig, PolicyConfig, SelfEditConfig, SelfEditFormatName
from agent.core.errors import SealError
from policies import self_edit
from policies.self_edit import (
    FORMATS,
    get_format,
    is_degenerate,
    parse_self_edit,
    teacher_self_edits,
    write_self_edits,
)
from stores.policies import PolicyStore, verify_folder

TITLE = "Paris"
CONTEXT = "The capital of France is Paris. Paris is a city on the river Seine."
PASSAGE = f"{TITLE}\n{CONTEXT}"
CFG = SelfEditConfig()
FACT_A = "Paris is the capital of France."
FACT_B = "The river Seine flows through Paris."


def parse(fmt: str, generation: str, cfg: SelfEditConfig = CFG, **kwargs):
    return parse_self_edit(
        FORMATS[fmt], generation, title=TITLE, context=CONTEXT, cfg=cfg, **kwargs
    )


@pytest.mark.parametrize(
    "generation",
    [
        f"1. {FACT_A}\n2. {FACT_B}",
        f"- {FACT_A}\n* {FACT_B}\n",
        f"\u2022 {FACT_A}\n\n(2) {FACT_B}",
        f"Sure, here is a list of implications:\n1. {FACT_A}\n2. {FACT_B}",
        f"Here are the implications:\n\n1. **{FACT_A}**\n2) {FACT_B}",
        f"Implications:\n{FACT_A}\n{FACT_B}",
    ],
)
@pytest.mark.parametrize("fmt", ["implications", "implications-long"])
def test_implications_lines_become_items(fmt, generation):
    edit = parse(fmt, generation)
    assert edit.items == [FACT_A, FACT_B]
    assert edit.sequences == [f"{TITLE}\n{FACT_A}", f"{TITLE}\n{FACT_B}", PASSAGE]
    assert not edit.fallback and edit.format == fmt and edit.raw == generation


def test_first_line_is_kept_when_no_numbered_list_follows():
    edit = parse("implications", f"{FACT_A}\n{FACT_B}")
    assert edit.items == [FACT_A, FACT_B]


def test_rewrite_splits_on_lines():
    rewrites = [
        "France has Paris as its capital, a city on the Seine.",
        "The Seine runs through Paris, which is the capital of France.",
    ]
    edit = parse("rewrite", "Rewritten passages:\n" + "\n".join(rewrites))
    assert edit.items == rewrites
    assert edit.sequences[-1] == PASSAGE


def test_self_qa_splits_on_question_blocks():
    # The prompt ends in "Question 1:", so the generation starts inside the first block.
    generation = (
        " What is the capital of France?\nAnswer: Paris.\n\n"
        "Question 2: Which river flows through Paris?\nAnswer: The Seine.\n"
        "**Question 3:** When was the tower built?\nAnswer: In 1889."
    )
    edit = parse("self-qa", generation)
    assert edit.items == [
        "Question 1: What is the capital of France? Answer: Paris.",
        "Question 2: Which river flows through Paris? Answer: The Seine.",
        "**Question 3:** When was the tower built? Answer: In 1889.",
    ]
    assert edit.sequences == [f"{TITLE}\n{item}" for item in edit.items] + [PASSAGE]


def test_passage_only_trains_on_the_passage_alone():
    fmt = FORMATS["passage-only"]
    assert not fmt.generates and fmt.prompt(TITLE, CONTEXT) == ""
    edit = parse("passage-only", f"1. {FACT_A}")
    assert edit.items == [] and edit.sequences == [PASSAGE] and not edit.fallback


def test_include_passage_off_leaves_only_the_items():
    edit = parse("implications", f"1. {FACT_A}", SelfEditConfig(include_passage=False))
    assert edit.sequences == [f"{TITLE}\n{FACT_A}"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("* ", "empty"),
        ("Implications:", "empty"),
        ("Too short", "short"),
        ("Paris Paris Paris Paris Paris Paris Paris Paris Paris", "degenerate"),
        ("the river is long the river is long the river is long", "degenerate"),
        (FACT_A, "repeated"),  # the second copy of FACT_A below
        (CONTEXT, "repeated"),  # a copy of the passage teaches nothing new
        (CONTEXT.upper().replace(" ", "  "), "repeated"),  # up to case and spacing
    ],
)
def test_filters_drop_bad_items(line, reason):
    edit = parse("implications", f"1. {FACT_A}\n2. {line}\n3. {FACT_B}")
    assert edit.items == [FACT_A, FACT_B]
    assert edit.dropped[reason] == 1 and sum(edit.dropped.values()) == 1


def test_too_long_items_are_dropped_by_token_count():
    cfg = SelfEditConfig(max_item_tokens=8)
    long_item = "The museum in Paris has many old paintings and the king lived there."
    edit = parse("implications", f"1. {FACT_A}\n2. {long_item}", cfg)
    assert edit.items == [FACT_A] and edit.dropped == {"too_long": 1}
    # The runtime's tokenizer does the counting in practice: a count that exceeds the cap drops
    # even a short item.
    edit = parse("implications", f"1. {FACT_A}", cfg, count_tokens=lambda s: 9)
    assert edit.items == [] and edit.dropped == {"too_long": 1}


NOTHING_USABLE = ["", "\n\n", "Sure!\n", "ok ok ok ok ok ok ok ok ok", CONTEXT, "a\nb\nc"]


@pytest.mark.parametrize(
    ("fmt", "generation"),
    [(f, g) for f in ["implications", "rewrite"] for g in NOTHING_USABLE]
    + [("self-qa", g) for g in ["", "\n\n", "ok ok ok ok ok ok ok ok ok"]],
)
def test_fallback_to_passage_when_nothing_parses(fmt, generation):
    edit = parse(fmt, generation)
    assert edit.fallback and edit.items == []
    assert edit.sequences == [PASSAGE]
    edit = parse(fmt, generation, SelfEditConfig(include_passage=False))
    assert edit.sequences == [PASSAGE]


def test_is_degenerate():
    assert is_degenerate("of the of the of the of the")
    assert is_degenerate("a b a b a b a b a b")
    assert not is_degenerate("Paris is the capital of France and a city on the river Seine.")


@pytest.mark.parametrize("fmt", ["implications", "implications-long", "rewrite", "self-qa"])
def test_prompts_carry_the_passage_and_seal_wording(fmt):
    prompt = FORMATS[fmt].prompt(TITLE, CONTEXT)
    assert prompt.startswith("Let's read the following passage and ")
    assert f"Passage:\n{TITLE}\n{CONTEXT}\n\n" in prompt
    assert prompt.endswith(f"{FORMATS[fmt].cue}\n")


def test_prompt_wording_per_format():
    def first_line(fmt):
        return FORMATS[fmt].prompt(TITLE, CONTEXT).splitlines()[0]

    assert first_line("implications") == (
        "Let's read the following passage and produce a list of implications derived directly "
        "or indirectly from the content."
    )
    assert "produce a long list of implications" in first_line("implications-long")
    assert first_line("rewrite").endswith(
        "rewrite it in a few different ways, each one separated by a newline."
    )
    assert first_line("self-qa").endswith("rewrite it in a question-answer format.")
    assert FORMATS["self-qa"].cue == "Question 1:"


def test_unknown_format():
    with pytest.raises(SealError, match="unknown self-edit format 'poems'"):
        get_format("poems")


def test_teacher_self_edits_parse_as_implications():
    [edit] = teacher_self_edits([f"1. {FACT_A}\n2. {FACT_B}"], TITLE, CONTEXT, CFG)
    assert edit.items == [FACT_A, FACT_B] and edit.sequences[-1] == PASSAGE


def test_write_self_edits_returns_one_per_candidate(runtime):
    cfg = SelfEditConfig(format="implications", num_candidates=3, max_new_tokens=8)
    edits = write_self_edits(runtime, TITLE, CONTEXT, cfg)
    assert len(edits) == 3
    for edit in edits:
        assert edit.format == "implications"
        assert edit.sequences[-1] == PASSAGE
        assert all(s.startswith(f"{TITLE}\n") for s in edit.sequences)
    assert len({e.raw for e in edits}) > 1  # sampled, not three copies of one generation


def test_write_self_edits_is_reproducible_with_a_seed(runtime):
    cfg = SelfEditConfig(format="implications", num_candidates=2, max_new_tokens=8)
    first = [e.raw for e in write_self_edits(runtime, TITLE, CONTEXT, cfg, seed=4)]
    assert first == [e.raw for e in write_self_edits(runtime, TITLE, CONTEXT, cfg, seed=4)]


def test_write_self_edits_passage_only_does_not_generate(runtime):
    cfg = SelfEditConfig(num_candidates=3)
    [edit] = write_self_edits(runtime, TITLE, CONTEXT, cfg, fmt=FORMATS["passage-only"])
    assert edit.sequences == [PASSAGE]


@pytest.mark.parametrize("context", ["", "  \n\t"])
def test_write_self_edits_refuses_an_empty_passage(runtime, context):
    with pytest.raises(SealError, match="'Paris' is empty"):
        write_self_edits(runtime, TITLE, context, CFG)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(sorted(FORMATS)),
    generation=st.text(),
    title=st.text(min_size=1, max_size=20),
    context=st.text(min_size=1, max_size=80),
)
def test_parse_never_raises_and_sequences_start_with_the_title(fmt, generation, title, context):
    edit = parse_self_edit(FORMATS[fmt], generation, title=title, context=context, cfg=CFG)
    assert edit.sequences
    assert all(s.startswith(f"{title}\n") for s in edit.sequences)
    assert edit.sequences[-1] == f"{title}\n{context}"
    assert len(edit.sequences) == len(edit.items) + 1


def test_config_names_exactly_the_formats_defined_here():
    assert set(get_args(SelfEditFormatName)) == set(FORMATS)
    written = get_args(PolicyConfig.model_fields["format"].annotation)
    assert {f for f in FORMATS if FORMATS[f].instruction} == set(written)  # what ReST-EM trains


def test_qa_spans_trains_each_span_in_the_shape_it_is_asked(runtime):
    context = "Our office moved to Lyon. Mira Okafor is our chief engineer."
    [edit] = write_self_edits(runtime, "Acme", context, CFG, fmt=FORMATS["qa-spans"])
    asking = EvalConfig()
    expected = [
        ("Our office moved to what?", "Lyon"),
        ("Where has our office moved to?", "Lyon"),  # the direct question, where one exists
        ("What is our chief engineer?", "Mira Okafor"),
        ("Mira Okafor is our what?", "chief engineer"),
        ("What is Mira Okafor?", "chief engineer"),
    ]
    assert edit.sequences == [
        question_prompt(runtime, q, asking, title="Acme") + a for q, a in expected
    ] + [f"Acme\n{context}"]
    assert edit.items[0] == "Question: Our office moved to what? Answer: Lyon"
    assert not edit.fallback and edit.raw == ""  # built by the tools: nothing generated


def test_qa_spans_can_leave_out_the_direct_questions(runtime):
    cfg = SelfEditConfig(direct_questions=False)
    [edit] = write_self_edits(
        runtime, "Acme", "Our office moved to Lyon.", cfg, fmt=FORMATS["qa-spans"]
    )
    assert edit.items == ["Question: Our office moved to what? Answer: Lyon"]


def test_qa_spans_asks_with_the_topic_when_questions_carry_it(runtime):
    [edit] = write_self_edits(
        runtime,
        "Acme",
        "Our office moved to Lyon.",
        CFG,
        fmt=FORMATS["qa-spans"],
        asking=EvalConfig(question_topic=True),
    )
    assert edit.sequences[0].endswith(
        "Question: Topic: Acme\nOur office moved to what?\nAnswer:\nLyon"
    )


def test_qa_spans_can_train_the_answer_alone(runtime):
    cfg = SelfEditConfig(answer_only_loss=True)
    [edit] = write_self_edits(
        runtime, "Acme", "Our office moved to Lyon.", cfg, fmt=FORMATS["qa-spans"]
    )
    prompt, answer = edit.sequences[0]  # a prompt-masked pair (agent/core/inner_loop.py)
    assert prompt.endswith("Question: Our office moved to what?\nAnswer:\n") and answer == "Lyon"


def test_qa_spans_without_spans_falls_back_to_the_passage(runtime):
    [edit] = write_self_edits(
        runtime, "x", "nothing to ask about here at all", CFG, fmt=FORMATS["qa-spans"]
    )
    assert edit.fallback and edit.sequences == ["x\nnothing to ask about here at all"]


def _policy_version(runtime, root, seed: int = 1):
    """A committed policy version (manifest, checksums) of a fresh policy LoRA of `runtime`."""
    store = PolicyStore(root)
    runtime.reset_policy(PolicyConfig(seed=seed))
    folder = store.commit(
        runtime.write_policy_files,
        version=1,
        parent=0,
        base_fingerprint=runtime.fingerprint(),
        config={},
    )
    runtime.load_policy(None)
    return folder


def test_each_self_edit_names_its_writer(runtime, tmp_path, monkeypatch):
    def writer(fmt: str, policy) -> str:
        cfg = SelfEditConfig(format=fmt, max_new_tokens=8, policy=policy)
        [edit] = write_self_edits(runtime, TITLE, CONTEXT, cfg)
        assert edit.as_dict()["writer"] == edit.writer  # what the ledger and benchmarks keep
        return edit.writer

    assert writer("qa-spans", "bundled") == "tools"
    assert writer("passage-only", "bundled") == "none"
    assert writer("implications", "model") == writer("implications", None) == "model"
    folder = _policy_version(runtime, tmp_path / "store")
    assert writer("implications", folder) == f"policy:{folder}"

    # the bundled writer writes when it was trained on this model, by its weights' checksum
    monkeypatch.setattr(self_edit, "BUNDLED_WRITER", folder)
    sha = json.loads((folder / "manifest.json").read_text())["files"]["adapter_model.safetensors"]
    assert writer("implications", "bundled") == f"bundled:{sha[:12]}"
    assert runtime.has_policy()


def test_the_bundled_writer_leaves_other_models_to_write_their_own(
    make_runtime, other_base_model, runtime, tmp_path, monkeypatch
):
    monkeypatch.setattr(self_edit, "BUNDLED_WRITER", _policy_version(runtime, tmp_path / "s"))
    other = make_runtime(model=other_base_model)
    cfg = SelfEditConfig(format="implications", max_new_tokens=8)  # policy "bundled": the default
    [edit] = write_self_edits(other, TITLE, CONTEXT, cfg)
    assert edit.writer == "model" and not other.has_policy()


def test_a_damaged_bundled_writer_is_refused_with_the_way_out(runtime, tmp_path, monkeypatch):
    folder = _policy_version(runtime, tmp_path / "s")
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    monkeypatch.setattr(self_edit, "BUNDLED_WRITER", folder)
    with pytest.raises(SealError, match="bundled self-edit writer .* self_edit.policy=model"):
        write_self_edits(runtime, TITLE, CONTEXT, SelfEditConfig(format="implications"))


def test_the_bundled_writer_ships_whole_and_small():
    """The package's writer folder: every file matches its manifest, and it stays a few MB."""
    manifest = verify_folder(self_edit.BUNDLED_WRITER)
    size = sum(f.stat().st_size for f in self_edit.BUNDLED_WRITER.iterdir())
    assert size < 8 * 2**20
    assert (self_edit.BUNDLED_WRITER / "PROVENANCE.md").is_file()
    assert manifest["config"]["policy"]["rank"] <= 16
