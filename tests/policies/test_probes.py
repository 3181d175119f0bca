from policies.probes import cloze_probes, make_probes, qa_pairs

PASSAGE = (
    "The tower in Paris was built in 1889 for a world fair. It was the tallest structure in "
    "the world for forty years. Short one. Many people visit the tower every single year now."
)


def test_qa_pairs_parse_self_qa_items_and_skip_the_rest():
    items = [
        "Question 1: When was the tower built? Answer: In 1889, for a fair.",
        "Question 2: The answer is Question 2:",
        "**Question 3:** Who visits? **Answer:** Many people",
        "Question 4: When was the tower built? Answer: In 1889, for a fair.",
    ]
    assert qa_pairs(items) == [
        ("When was the tower built?", "In 1889, for a fair."),
        ("Who visits?", "Many people"),
    ]


def test_cloze_probes_hold_out_sentence_endings():
    probes = cloze_probes("Tower", PASSAGE, 5)
    assert len(probes) == 3  # "Short one." is too short to ask about
    question, answer = probes[0]
    assert question == (
        'How does this sentence about Tower end: "The tower in Paris was built in 1889 ..."?'
    )
    assert answer == "for a world fair"
    assert cloze_probes("Tower", PASSAGE, 2) == [probes[0], probes[2]]  # spread over the passage
    assert cloze_probes("Tower", "Too short.", 3) == []


def test_self_qa_probes_are_filled_up_with_cloze(runtime):
    from agent.core.config import SelfEditConfig

    cfg = SelfEditConfig(max_new_tokens=8)
    probes = make_probes(runtime, "Tower", PASSAGE, cfg, 3, source="self-qa")
    assert len(probes) == 3  # the tiny model writes no usable pairs: all cloze
    assert make_probes(runtime, "Tower", PASSAGE, cfg, 3) == cloze_probes("Tower", PASSAGE, 3)
