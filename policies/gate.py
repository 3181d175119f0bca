"""The learning gate: decide at inference time whether a document is worth a self-edit and an
update (SEAL learns every passage it is given; a product has to choose, because one update costs
minutes of CPU).

Three signals, each cheap next to an update:
- novelty: 1 - cosine similarity between the new passages and the nearest stored passage of
  another document (the passage store's vectors). A near copy of a learned document adds nothing.
- uncertainty: the mean log-probability per token the current model gives the answers of the
  document's probes, closed-book. A model that already answers them needs no update.
- budget: the update's estimated seconds against what is left of the compute budget (seconds of
  updates per rolling hour), so a folder of a thousand files cannot occupy the CPU for a day.

It also finds the facts a user states or corrects in the conversation ("our office moved to
Lyon", "no, the meeting is on Tuesday"): those become a small document learned the same way.
Everything here is a pure function of its inputs.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from policies.augment import answer_spans, questions

LEARN = "learn"
SKIP = "skip"


@dataclass(frozen=True)
class GateInputs:
    novelty: float  # 1 - similarity to the nearest stored passage of another document (1: none)
    nearest_document: int | None  # that passage's document
    nearest_learned: bool  # whether that document was learned (its knowledge is in the adapter)
    probe_logprob: float | None  # mean log p(answer) per token over the probes; None: no probes
    estimated_seconds: float  # what the update is expected to cost
    budget_left_seconds: float  # what the compute budget has left
    requested: bool = False  # the user asked to learn it (/learn)


@dataclass(frozen=True)
class GateThresholds:
    min_novelty: float  # below this, a passage is a near copy of a stored one
    known_logprob: float  # at or above this, the model already answers the probes


@dataclass(frozen=True)
class GateDecision:
    decision: str  # LEARN | SKIP
    reason: str

    @property
    def learn(self) -> bool:
        return self.decision == LEARN


def decide_learning(x: GateInputs, t: GateThresholds) -> GateDecision:
    """Learn, or skip with the reason; the first rule that applies wins."""
    minutes = x.estimated_seconds / 60
    if x.estimated_seconds > x.budget_left_seconds:
        return GateDecision(
            SKIP,
            f"over the compute budget: the update would take ~{minutes:.1f} min and "
            f"{max(0.0, x.budget_left_seconds) / 60:.1f} min are left this hour; stored for "
            "retrieval only (/rag on), /learn later",
        )
    if x.requested:
        return GateDecision(LEARN, f"asked to learn it (~{minutes:.1f} min)")
    if x.probe_logprob is not None and x.probe_logprob >= t.known_logprob:
        return GateDecision(
            SKIP,
            f"the model already answers its probes (log-prob {x.probe_logprob:.2f} >= "
            f"{t.known_logprob:.2f} per token)",
        )
    if x.novelty < t.min_novelty and x.nearest_learned:
        return GateDecision(
            SKIP,
            f"a near copy of learned document {x.nearest_document} "
            f"(novelty {x.novelty:.2f} < {t.min_novelty:.2f})",
        )
    unsure = (
        "it has no probes"
        if x.probe_logprob is None
        else f"the model is unsure (log-prob {x.probe_logprob:.2f} < {t.known_logprob:.2f})"
    )
    return GateDecision(LEARN, f"new (novelty {x.novelty:.2f}) and {unsure}; ~{minutes:.1f} min")


def novelty_of(similarities: list[float]) -> float:
    """1 - the highest cosine similarity to a stored passage; 1.0 when nothing is stored."""
    return 1.0 - max(similarities, default=0.0)


def estimate_seconds(n_passages: int, past: list[tuple[int, float]], default_s: float) -> float:
    """Seconds an update of `n_passages` is expected to take: the mean seconds per passage of
    past updates (n_passages, seconds), else `default_s` per passage."""
    per_passage = sum(s for _, s in past) / max(1, sum(n for n, _ in past)) if past else default_s
    return n_passages * per_passage


def gate_record(inputs: GateInputs, decision: GateDecision) -> dict:
    """The ledger event's detail: decision and reason first (they lead `/history`'s line)."""
    values = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(inputs).items()}
    return {"decision": decision.decision, "reason": decision.reason} | values


# ------------------------------------------------------------------ conversation facts
def statement_probes(title: str, text: str) -> list[tuple[str, str]]:
    """Probes for a short stated fact, which has too few words for cloze probes (policies/
    probes.py needs 8): each answer span asked for in the sentence's own words ("Our office moved
    to what?" -> "Lyon", policies/augment.py) and, where the sentence inverts, as a person would
    ask ("Where has our office moved to?"), the shapes a fact is asked in; a sentence with no
    span has its last words held out instead ("Our office moved to ..." -> "Lyon")."""
    probes = []
    for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
        spans = answer_spans(sentence)
        probes += [(q, span) for span in spans for q in questions(sentence, span)]
        words = sentence.rstrip(".!").split()
        if not spans and len(words) >= 3:
            held = max(1, len(words) // 4)
            prefix = " ".join(words[:-held])
            answer = " ".join(words[-held:])
            probes.append((f'How does this sentence about {title} end: "{prefix} ..."?', answer))
    return probes


_QUESTION_START = re.compile(
    r"^(who|whom|whose|what|when|where|which|why|how|is|are|was|were|do|does|did|can|could|"
    r"will|would|should|shall|may|might|tell me|explain|describe|list|give me|show me)\b",
    re.IGNORECASE,
)
_CORRECTION = re.compile(
    r"^(no|nope|wrong|incorrect|actually|in fact|correction)\b|\bthat'?s (wrong|not right|"
    r"incorrect)\b|\bnot .{1,40}\bbut\b|\bno longer\b",
    re.IGNORECASE,
)
_REMEMBER = re.compile(
    r"^(please )?(remember|note|keep in mind|fyi|for your information)\b(:| that)?", re.IGNORECASE
)
# A first-person or named subject followed by a verb of state or change: "our office moved to",
# "my name is", "the launch is on", "we use". Greetings and chit-chat have no such verb.
_FACT = re.compile(
    r"\b(is|are|was|were|moved|moves|became|becomes|has|have|had|lives|works|starts|started|"
    r"opens|opened|closed|closes|costs|changed|uses|use|called|named|born|founded|located)\b",
    re.IGNORECASE,
)
_SUBJECT = re.compile(r"^(our|my|we|i|the|this|their|his|her|[A-Z][a-z]+)\b")
_CHITCHAT = re.compile(
    r"^(hi|hello|hey|thanks|thank you|ok|okay|great|cool|nice|good|bye|goodbye|sorry|please)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Statement:
    kind: str  # "fact" | "correction"
    text: str  # the statement, cleaned of its lead-in ("remember that", "no,")


def detect_statement(message: str) -> Statement | None:
    """A fact the user states or a correction of the model, else None (questions, commands,
    chit-chat). Deliberately conservative: a missed fact can still be taught with /learn, while
    a false alarm would spend minutes learning small talk."""
    text = " ".join(message.split())
    if len(text.split()) < 3 or text.endswith("?") or text.startswith("/"):
        return None
    if _QUESTION_START.match(text) or _CHITCHAT.match(text):
        return None
    correction = _CORRECTION.search(text)
    remember = _REMEMBER.match(text)
    body = text[remember.end() :].strip(" ,:") if remember else text
    if correction and correction.start() == 0:
        body = body[correction.end() :].strip(" ,:;-")
    if len(body.split()) < 3 or not _FACT.search(body):
        return None
    if not (correction or remember or _SUBJECT.match(body)):
        return None
    body = body[0].upper() + body[1:]
    if body[-1] not in ".!":
        body += "."
    return Statement("correction" if correction else "fact", body)
