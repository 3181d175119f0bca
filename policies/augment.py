"""Data-augmentation tools a self-edit calls (SEAL: a self-edit may "invoke tools for data
augmentation"): they read the passage's own sentences and answer spans, so everything they build
is faithful to it by construction.

    sentences(passage)             the passage split into sentences
    answer_spans(sentence)         what a question about the sentence can ask for: numbers and
                                   dates, names (capitalised runs), quoted text
    cloze_question(sentence, span) the sentence as a question, the span asked for with a wh-word
    direct_question(sentence, span) the question a person would ask, where the sentence is simple
                                   enough to invert ("The launch is on 14 May." -> "When is the
                                   launch?"), else None
    questions(sentence, span)      both: the cloze question, then the direct one where it exists
    is_faithful(text, passage)     every name and number in `text` occurs in the passage

A 135M-parameter writer cannot be trusted to keep a fact straight (asked to paraphrase "Normandy,
a region in France" SmolLM2-135M wrote "a fictional region in France"), so generated text is
kept only when `is_faithful`, and answers are always spans of the passage.
"""

from __future__ import annotations

import re


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_NUMBER = re.compile(
    rf"\b(?:(?:{_MONTHS})\s+\d{{1,2}},?\s+\d{{4}}|\d{{1,2}}\s+(?:{_MONTHS})\s+\d{{4}}"
    rf"|(?:{_MONTHS})\s+\d{{4}}|\d{{1,2}}\s+(?:{_MONTHS})\b|(?:{_MONTHS})\s+\d{{1,2}}\b"
    r"|\d+(?:st|nd|rd|th)(?:\s+(?:century|centuries))?"
    r"|\d[\d,]*(?:\.\d+)?(?![\w])(?:\s+(?:million|billion|thousand|hundred|percent|per cent))?"
    r"(?:\s+(?:[a-z]+s|euros?|dollars?|pounds?|km|kilometres|miles|metres|meters|years?))?)"
)
_PERSON = re.compile(r"^(?:Dr|Mr|Mrs|Ms|Prof|Sir|Dame|Saint|St)\.?\s")
# A run of capitalised words, allowing lower-case joiners inside (of, the, de, van, ...).
_NAME = re.compile(
    r"\b[A-Z][\w'\-.]*(?:\s+(?:(?:of|the|de|la|du|van|von|and|for|del|di)\s+)*[A-Z][\w'\-.]*)*"
)
# What a copula says its subject is: "Mira Okafor is our chief engineer" -> "chief engineer", so a
# fact can be asked from either side.
_COMPLEMENT = re.compile(
    r"\b(?:is|are|was|were|became|becomes)\s+(?:the|our|my|their|his|her|its|a|an)\s+"
    r"(?P<span>[a-z][a-z\-]+(?:\s+[a-z][a-z\-]+){0,3}?)(?=\s*[,.;!?]|\s+(?:of|in|at|for|since)\b|$)"
)
_PREPOSITIONS = _word_set("on in at by for from with to of since about after before")
_QUOTED = re.compile(r"[\"\u201c]([^\"\u201d]{2,60})[\"\u201d]")
_WORD = re.compile(r"[A-Za-z0-9][\w'\-]*")
# Sentence-initial words that are capitalised only because they start the sentence.
FUNCTION_WORDS = _word_set(
    "a an the this that these those it its our their his her he she they we i in on at by for "
    "from with after before during since as when while if but and or of to"
)
# Capitalised at a sentence's start but never a name.
_SENTENCE_STARTERS = FUNCTION_WORDS | _word_set(
    "near however although because then there here today yesterday later also thus still many "
    "most some several all each every both one two three first last next"
)
MAX_SPANS_PER_SENTENCE = 4
MIN_SENTENCE_WORDS = 4


def sentences(passage: str) -> list[str]:
    """The passage's sentences, whitespace collapsed; very short fragments dropped."""
    text = " ".join(passage.split())
    return [s for s in _SENTENCE_END.split(text) if len(s.split()) >= MIN_SENTENCE_WORDS]


def _strip_leading_function_word(span: str) -> str:
    words = span.split()
    while words and words[0].lower() in FUNCTION_WORDS:
        words = words[1:]
    return " ".join(words)


def answer_spans(sentence: str) -> list[str]:
    """Up to MAX_SPANS_PER_SENTENCE spans a question about `sentence` can ask for, in order of
    appearance: dates and numbers, names, quoted text. A span is never the whole sentence."""
    found: list[tuple[int, str]] = []
    for m in _NUMBER.finditer(sentence):
        found.append((m.start(), m.group(0).rstrip(",")))
    for m in _COMPLEMENT.finditer(sentence):
        if m["span"].split()[0] not in _PREPOSITIONS:
            found.append((m.start("span"), m["span"]))
    for m in _QUOTED.finditer(sentence):
        found.append((m.start(1), m.group(1).strip()))
    for m in _NAME.finditer(sentence):
        span = m.group(0).rstrip(".")
        if m.start() == 0:  # "The", "Our", ... start the sentence, not a name
            stripped = _strip_leading_function_word(span)
            if stripped == span and span.lower() in _SENTENCE_STARTERS:  # "Near the end ..."
                continue
            span = stripped
        span = re.sub(r"'s$", "", span)
        if span and span.lower() not in FUNCTION_WORDS:
            found.append((sentence.find(span), span))
    spans: list[str] = []
    for _, span in sorted(found):
        covered = any(span in kept or kept in span for kept in spans)
        if span and not covered and len(span.split()) < len(sentence.split()) - 1:
            spans.append(span)
    return spans[:MAX_SPANS_PER_SENTENCE]


def _wh_word(span: str) -> str:
    if _PERSON.match(span):
        return "who"
    if re.match(r"\d+(?:st|nd|rd|th)\b", span):
        return "which"
    if re.search(rf"\b(?:{_MONTHS})\b|^\d{{3,4}}$", span):
        return "when"
    if _NUMBER.fullmatch(span):
        return "how much" if re.search(r"euro|dollar|pound|million|billion", span) else "how many"
    return "what"


def cloze_question(sentence: str, span: str) -> str:
    """The sentence as a question asking for `span`: "Our office moved to Lyon in March." with
    span "Lyon" -> "Our office moved to what in March?". Crude, but in the sentence's own words,
    so it trains the link from the sentence's other words to the span."""
    body = sentence.rstrip(" .!?")
    wh = _wh_word(span)
    # "in 1990" -> "when", not "in when"; "the Normans" -> "what", not "the what"
    joiners = r"in|on|at|by|since" if wh != "what" else r"the|a|an"
    body = re.sub(rf"\b(?:{joiners})\s+{re.escape(span)}", span, body, count=1, flags=re.I)
    if wh == "what" and f"{span}'s" in body:  # "the Shah's army" -> "whose army"
        span, wh = f"{span}'s", "whose"
    asked, n = re.subn(rf"(?<!\w){re.escape(span)}(?!\w)", wh, body, count=1)
    question = _clause(asked if n else body.replace(span, wh, 1), wh)
    return question[0].upper() + question[1:] + "?"


def _clause(text: str, wh: str) -> str:
    """The comma-separated stretch of `text` around the wh-word, so a question about one clause
    of a long sentence does not recite the rest of it; parts under 4 words stay attached."""
    parts = re.split(r"(?<=[,;])\s+", text)
    at = next((i for i, part in enumerate(parts) if wh in part), 0)
    start, end = at, at + 1
    while start > 0 and len(" ".join(parts[start:end]).split()) < 6:
        start -= 1
    while end < len(parts) and len(parts[end].split()) < 4:
        end += 1
    return " ".join(parts[start:end]).rstrip(",;")


# A short simple sentence whose last words are the span: subject, verb, then at most a preposition
# and a determiner before the span ("The launch is on 14 May", "Our team has 37 members", "Our
# office moved to Lyon"). Longer or clause-rich sentences keep only the cloze question.
_LEAD = (
    r"(?:(?P<prep>on|in|at|by|since|to|into|from)\s+)?(?:(?:the|a|an|our|my|their|its|his|her)\s+)?"
)
_SIMPLE = re.compile(
    r"^(?P<subject>[^,;:()]{2,60}?)\s+(?P<verb>is|are|was|were|has|have|had|[a-z]{3,}ed)\s+"
    + _LEAD
    + r"(?P<span>.+)$"
)
_PLURAL_SUBJECTS = _word_set("we they you i")
_PLACE_PREPOSITIONS = _word_set("to in into from at")


def direct_question(sentence: str, span: str) -> str | None:
    """The question a person would ask for `span`, made by inverting a short simple sentence
    that ends with it: a copula ("The project's code name is Bluefin." -> "What is the project's
    code name?"), "has" with a count ("Our team has 37 members." -> "How many members does our
    team have?") or a regular past verb and a place ("Our office moved to Lyon." -> "Where has
    our office moved to?"). None for any other sentence: the cloze question stands alone."""
    m = _SIMPLE.match(sentence.rstrip(" .!?"))
    if not m or m["span"] != span or len(m["subject"].split()) > 6:
        return None
    subject, verb, prep = m["subject"], m["verb"], m["prep"]
    if subject.split()[0].lower() in FUNCTION_WORDS:  # "Our office" inside the question
        subject = subject[0].lower() + subject[1:]
    wh = _wh_word(span)
    is_place = prep in _PLACE_PREPOSITIONS and span[0].isupper()
    if verb in ("is", "are", "was", "were"):
        wh = "where" if is_place and wh == "what" else wh
        question = f"{wh} {verb} {subject}"
    elif verb in ("has", "have", "had"):
        count = re.fullmatch(r"(\d[\d,.]*)\s+([a-z]+s)", span)
        if prep or not count:
            return None
        do = {"has": "does", "have": "do", "had": "did"}[verb]
        question = f"how many {count[2]} {do} {subject} have"
    elif is_place and wh == "what":
        have = "have" if subject.lower() in _PLURAL_SUBJECTS else "has"
        question = f"where {have} {subject} {verb} {prep}"
    else:
        return None
    return question[0].upper() + question[1:] + "?"


def questions(sentence: str, span: str, direct: bool = True) -> list[str]:
    """The questions asking for `span`: the cloze question, then (`direct`) the direct one
    where the sentence inverts into one."""
    asked = [cloze_question(sentence, span)]
    if direct and (question := direct_question(sentence, span)):
        asked.append(question)
    return asked


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text)


def is_faithful(text: str, passage: str) -> bool:
    """Every number and every capitalised word of `text` (but its first) occurs in the passage:
    a cheap check that generated text adds no name, date or figure the passage does not have."""
    known = {t.lower() for t in _tokens(passage)}
    for i, token in enumerate(_tokens(text)):
        named = token[0].isupper() and i > 0 or token[0].isdigit()
        if named and token.lower() not in known:
            return False
    return True
