"""One question formatter for everything that asks the model: the knowledge benchmark's answers,
the retention check's probes and the chat's answer all send the same prompt for a question."""

import copy

import pytest
import torch
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent.core.answering import Question, answer_and_grade
from agent.core.config import SealConfig
from agent.core.runtime import ModelRuntime
from agent.graph import AgentContext, build_graph
from agent.graph.graph import turn
from policies.retention import score_documents
from stores.state import State

QUESTION, ANSWER, TITLE = "Where did the office move?", "Lyon", "Acme"


class RecordingRuntime(ModelRuntime):
    """The real runtime, remembering every prompt it is asked to answer or score."""

    prompts: list[str]

    def generate(self, prompts, **kwargs):
        self.prompts += list(prompts)
        return super().generate(prompts, **kwargs)

    def stream(self, prompt, **kwargs):
        self.prompts.append(prompt)
        return super().stream(prompt, **kwargs)

    def score(self, prompts, targets, batch_size=16):
        self.prompts += list(prompts)
        return super().score(prompts, targets, batch_size)


@pytest.fixture
def recording(tiny_model, tiny_tokenizer, tiny_adapt):
    runtime = RecordingRuntime(
        copy.deepcopy(tiny_model), tiny_tokenizer, torch.device("cpu"), "tiny", tiny_adapt()
    )
    runtime.prompts = []
    return runtime


def prompts_of(runtime, cfg: SealConfig, tmp_path) -> dict[str, set[str]]:
    seen = {}
    runtime.prompts = []
    answer_and_grade(runtime, [Question(QUESTION, ANSWER, TITLE)], cfg.eval)  # knowledge.py
    seen["knowledge"] = set(runtime.prompts)
    with State.open(tmp_path / "home") as state:
        doc = state.add_document(
            "The office is in Lyon now.",
            source="t",
            namespace="user",
            passage_words=50,
            title=TITLE,
        ).document_id
        state.ledger.add_probe(document_id=doc, question=QUESTION, answer=ANSWER, origin="dataset")
        state.ledger.set_document_status(doc, "learned")  # the chat answers it closed-book
        runtime.prompts = []
        score_documents(runtime, state, [doc], cfg)  # the retention check's probes
        seen["probes"] = set(runtime.prompts)
        runtime.prompts = []
        graph = build_graph(InMemorySaver())
        graph.invoke(
            turn("ask", messages=[HumanMessage(QUESTION)]),
            {"configurable": {"thread_id": "t"}},
            context=AgentContext(runtime, state, cfg),
        )
        seen["chat"] = set(runtime.prompts)
    return seen


def test_knowledge_probes_and_chat_ask_the_same_prompt(recording, tmp_path):
    seen = prompts_of(recording, SealConfig(), tmp_path)
    assert seen["knowledge"] == seen["probes"] == seen["chat"]
    assert len(seen["chat"]) == 1 and QUESTION in next(iter(seen["chat"]))


def test_with_question_topic_documents_are_asked_by_their_title(recording, tmp_path):
    cfg = SealConfig()
    cfg.eval = cfg.eval.model_copy(update={"question_topic": True})
    seen = prompts_of(recording, cfg, tmp_path)
    assert seen["knowledge"] == seen["probes"]
    assert f"Topic: {TITLE}\n{QUESTION}" in next(iter(seen["probes"]))
