"""Pre-verification filters: drop malformed, mis-sized and duplicate candidates before a model sees them.

Each filter returns a ``FilterResult`` (keep, and the reason when it drops), in the manner of datatrove;
``apply_filters`` runs them all over the candidates of one positive and returns what it keeps and a
``Rejection(stage="filter")`` for each candidate it drops. A reason reads ``code: detail``; the codes
(``REASONS``) are stable, so rejections can be counted by ``reason.split(":")[0]``.

How near is too near
--------------------
A hard negative is *meant* to be almost the positive: "... in December 1991?" -> "... in December 1988?"
differs in one token. So closeness to the positive is no reason to drop a negative; only two cases are:

- ``identical_to_positive``: the same text after normalisation (case, punctuation, whitespace, ``%`` =
  ``percent``, ``1,000`` = ``1000``, ``lm()`` = ``lm``).
- ``paraphrase_of_positive``: the same *content words* as the positive (a reordering, a change of filler
  words such as articles or auxiliaries, an inflection, a typo): it asks the same thing, so the page answers
  it. Measured as the Jaccard overlap of content-word sets, dropped at ``positive_jaccard`` (default 1.0,
  i.e. only an exact match of the sets). A one-token hard negative of a query with n content words has an
  overlap of (n-1)/(n+1) with it, which is below 1.0 for any n: it is kept. Lowering ``positive_jaccard``
  starts dropping real hard negatives of long queries (at 0.9, those with 19 or more content words).

Between negatives of the same positive, a near-duplicate adds nothing to training, so the later of two
negatives is dropped when it is an exact duplicate after normalisation (always) or when the Jaccard overlap
of their content words reaches ``negative_jaccard`` (default 0.9). Two negatives that change *different*
values ("1988" and "1993") each differ from the other by one content word, an overlap of (n-1)/(n+1)
(0.8 for 9 content words), so they are both kept; two wordings of the *same* change have an overlap of 1.0.

Content words are the word and number tokens minus ``FILLER_WORDS`` (articles, auxiliaries, a few
prepositions that never carry the question; words such as "before", "after", "not" and the question words
do carry it, and count), each reduced to a stem (one ending such as "s" or "ed" dropped). Two content
words without digits and of five or more letters also count as one when their normalised edit similarity
(rapidfuzz's Indel ratio) reaches ``typo_similarity`` (default 0.88): "Hornik"/"Hornick" (0.92),
"colour"/"color" (0.91) are one word; "efp"/"mefp" (0.86), "Kleiber"/"Kleiner" (0.86), "increase"/"decrease"
(0.75), "2018"/"2019" (digits) are two. That is where the edit-distance threshold acts: on single words,
because over a whole query a one-token hard negative and a typo are equally close.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator
from rapidfuzz import fuzz

from docrerank.pipeline.evidence import content_words, stem, tokenize
from docrerank.pipeline.records import QueryRecord, Rejection

__all__ = [
    "FILLER_WORDS",
    "REASONS",
    "FilterResult",
    "FilterSettings",
    "apply_filters",
    "check_against_positive",
    "check_answer",
    "check_not_copied",
    "check_positive",
    "check_self_contained",
    "check_form",
    "check_length",
    "check_not_duplicate",
    "content_overlap",
    "normalize",
    "page_word_share",
]

REASONS = (
    "empty",
    "template_leftover",
    "model_chatter",
    "list_marker",
    "not_a_question",
    "several_questions",
    "too_short",
    "too_long",
    "copied_from_page",
    "answer_not_in_page",
    "points_at_page",
    "identical_to_positive",
    "paraphrase_of_positive",
    "duplicate_negative",
    "near_duplicate_negative",
)

# Words that never change what a query asks. Question words, negations, "before"/"after", "more"/"less",
# "between" and the like are *not* here: changing them changes the question.
FILLER_WORDS = frozenset(
    """
    a an the of to in on at for by with from as into onto is are was were be been being am do does did has
    have had it its this that these those there their they them and also please exactly actually really
    according page document documents mentioned described stated shown given listed reported
    """.split()
)

_QUESTION_WORDS = (
    "what which how when where who whom whose why is are was were does do did can could should would will "
    "has have had may might must shall list give name describe explain compare identify find show state "
    "summarize summarise tell"
).split()
_WH = frozenset({"what", "which", "how", "when", "where", "who", "whom", "whose", "why"})
_PREPOSITIONS = frozenset("in for on at by during from to under with of after before".split())
_CHATTER = (
    r"^(?:here (?:are|is)|sure\b|certainly\b|of course\b|okay\b|ok\b)",
    r"^(?:note|output|answer|query|question|negative|rewritten|rewrite|variant)\s*\d*\s*:",
    r"^(?:the )?(?:rewritten|new|negative|modified|edited) (?:query|queries|question|questions)\b",
    r"\bas an ai\b|\blanguage model\b|\bi (?:cannot|can't|am unable)\b|\bi'm sorry\b|\bi hope this helps\b",
    r"\blet me know\b",
)
_TEMPLATE = ("{{", "}}", "{%", "%}", "<|", "|>", "[INST]", "[/INST]", "<s>", "</s>", "<query>", "</query>")
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*\u2022])\s+")
_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
_QUOTES = "\"'\u201c\u201d\u2018\u2019`\u00ab\u00bb "
_KEEP_SYMBOLS = frozenset("%$\u20ac\u00a3\u00a5")
# "in the text", "this paper", "the document above": a query that leans on a page its user has never seen
_POINTS_AT_PAGE = re.compile(
    r"\b(?:this|the|that|above|below|given|provided)\s+(?:page|text|paper|article|document|passage|excerpt|"
    r"figure|table|chart|section|vignette)s?\b(?!\s+(?:of|for|in|from|with|called|named)\b)",
    flags=re.IGNORECASE,
)


class FilterSettings(BaseModel):
    """Thresholds of the pre-verification filters (see the module docstring for the reasoning).

    Attributes:
        min_words: fewer whitespace-separated words than this is ``too_short`` (a query needs a subject).
        max_words: more than this is ``too_long`` (a rambling output, or several queries run together).
        question_words: a candidate must start with one of these (case-insensitive; "In which ..." also
            counts) or end with "?".
        chatter_patterns: regular expressions (case-insensitive) for model chatter ("Here are ...").
        template_markers: strings left over from a prompt template or chat format ("{{", "<|").
        max_question_marks: more "?" than this is ``several_questions``.
        typo_similarity: normalised edit similarity (0-1) at which two content words count as one spelling
            of the same word; only words of five or more letters, never words with digits.
        positive_jaccard: content-word overlap with the positive at which a candidate is a
            ``paraphrase_of_positive`` (1.0: the same content words only).
        negative_jaccard: content-word overlap with an already kept negative (or rephrasing) of the same
            positive at which a candidate is a ``near_duplicate_negative``.
        reject_copied_positives: drop a generated positive whose words run verbatim in the page text
            (``copied_from_page``): small models copy a FAQ's questions, which teaches a reranker nothing
            but string matching.
        answer_support: a generated positive's answer must have every number on its page and at least this
            share of its content words (``answer_not_in_page``; 0 turns the check off): a small model that
            states an answer the page does not hold did not read its question off the page.
        self_contained: drop a positive or rephrasing that points at the page ("... described in the text?",
            "the method discussed in the paper", ``points_at_page``): its user never saw the page, and any
            page "answers" it. The 1.5B wrote 3 of its first 8 training-set positives so, against its prompt.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_words: int = Field(3, ge=1)
    max_words: int = Field(60, ge=1)
    question_words: tuple[str, ...] = tuple(_QUESTION_WORDS)
    chatter_patterns: tuple[str, ...] = _CHATTER
    template_markers: tuple[str, ...] = _TEMPLATE
    max_question_marks: int = Field(1, ge=1)
    typo_similarity: float = Field(0.88, ge=0.0, le=1.0)
    positive_jaccard: float = Field(1.0, gt=0.0, le=1.0)
    negative_jaccard: float = Field(0.9, gt=0.0, le=1.0)
    reject_copied_positives: bool = True
    answer_support: float = Field(0.5, ge=0.0, le=1.0)
    self_contained: bool = True

    @model_validator(mode="after")
    def _check(self) -> FilterSettings:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is above max_words ({self.max_words}): lower min_words")
        for pattern in self.chatter_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"chatter pattern {pattern!r} is not a regular expression ({exc}): fix it") from None
        return self


class FilterResult(NamedTuple):
    """One filter's decision: keep, or drop with a reason (``code: detail``)."""

    keep: bool
    reason: str = ""


KEEP = FilterResult(True)


def _drop(code: str, detail: str) -> FilterResult:
    return FilterResult(False, f"{code}: {detail}")


def normalize(text: str) -> str:
    """The text as a comparison key: casefolded word and number tokens, ``%`` and currency signs kept."""
    return " ".join(t.norm for t in tokenize(text) if t.kind != "sym" or t.norm in _KEEP_SYMBOLS)


def _content(text: str) -> dict[str, str]:
    """Content words of ``text``: stem -> the word as written (casefolded)."""
    words: dict[str, str] = {}
    for token in tokenize(text):
        if token.kind == "sym" and token.norm not in _KEEP_SYMBOLS:
            continue
        if token.norm in FILLER_WORDS:
            continue
        words.setdefault(token.norm if token.kind != "word" else stem(token.norm, None), token.norm)
    return words


def _typo_pair(a: str, b: str, threshold: float) -> bool:
    if len(a) < 5 or len(b) < 5 or any(c.isdigit() for c in a + b):
        return False
    return fuzz.ratio(a, b) / 100.0 >= threshold


def _overlap(a: dict[str, str], b: dict[str, str], typo_similarity: float) -> float:
    shared = a.keys() & b.keys()
    only_b = [b[k] for k in sorted(b.keys() - shared)]
    matched = 0
    for key in sorted(a.keys() - shared):
        for k, word in enumerate(only_b):
            if _typo_pair(a[key], word, typo_similarity):
                matched += 1
                del only_b[k]
                break
    union = len(a) + len(b) - len(shared) - matched
    return (len(shared) + matched) / union if union else 1.0


def content_overlap(a: str, b: str, settings: FilterSettings | None = None) -> float:
    """Jaccard overlap (0-1) of two texts' content words, words within ``typo_similarity`` counted as one."""
    settings = settings or FilterSettings()
    return _overlap(_content(a), _content(b), settings.typo_similarity)


def page_word_share(text: str, page_text: str) -> float:
    """The share (0-1) of ``text``'s content words that its page also uses: how much a question copies its page.
    People's questions reuse fewer of a page's words than generated ones (bench/data/quality-queries.md)."""
    words = _content(text).keys() - _WH  # "what", "how": the question's form, not the page's vocabulary
    return len(words & _content(page_text).keys()) / len(words) if words else 0.0


def check_form(text: str, settings: FilterSettings | None = None) -> FilterResult:
    """Is ``text`` one well-formed question, with no template leftovers or model chatter?"""
    settings = settings or FilterSettings()
    stripped = text.strip()
    if not stripped:
        return _drop("empty", "no text")
    for marker in settings.template_markers:
        if marker in stripped:
            return _drop("template_leftover", f"contains {marker!r}")
    placeholder = _PLACEHOLDER.search(stripped)
    if placeholder:
        return _drop("template_leftover", f"contains the placeholder {placeholder.group()!r}")
    bare = stripped.strip(_QUOTES)
    for pattern in settings.chatter_patterns:
        match = re.search(pattern, bare, flags=re.IGNORECASE)
        if match:
            return _drop("model_chatter", f"matches {match.group()!r}")
    if _LIST_MARKER.match(bare):
        return _drop("list_marker", f"starts with {_LIST_MARKER.match(bare).group().strip()!r}")
    words = [w.casefold() for w in re.findall(r"[^\W\d_]+", bare)[:2]]
    starts = bool(words) and (
        words[0] in {w.casefold() for w in settings.question_words}
        or (len(words) > 1 and words[0] in _PREPOSITIONS and words[1] in _WH)
    )
    if not (starts or bare.endswith("?")):
        return _drop("not_a_question", "neither ends with '?' nor starts with a question word")
    if bare.count("?") > settings.max_question_marks:
        return _drop("several_questions", f"{bare.count('?')} question marks")
    return KEEP


def check_length(text: str, settings: FilterSettings | None = None) -> FilterResult:
    """Is the number of words within ``[min_words, max_words]``?"""
    settings = settings or FilterSettings()
    n = len(text.split())
    if n < settings.min_words:
        return _drop("too_short", f"{n} words, at least {settings.min_words}")
    if n > settings.max_words:
        return _drop("too_long", f"{n} words, at most {settings.max_words}")
    return KEEP


def check_against_positive(
    text: str, positive: str, settings: FilterSettings | None = None, *, rephrasing: bool = False
) -> FilterResult:
    """Is ``text`` more than the positive again? (A rephrasing may, and should, share its content words.)"""
    settings = settings or FilterSettings()
    if normalize(text) == normalize(positive):
        return _drop("identical_to_positive", "the same text after normalisation")
    if not rephrasing:
        overlap = content_overlap(text, positive, settings)
        if overlap >= settings.positive_jaccard:
            return _drop("paraphrase_of_positive", f"content-word overlap {overlap:.2f}")
    return KEEP


def check_not_copied(text: str, page_text: str, settings: FilterSettings | None = None) -> FilterResult:
    """Is ``text`` more than a sentence copied from the page (the same tokens in a row, question mark aside)?"""
    settings = settings or FilterSettings()
    key = normalize(text)
    copied = len(key.split()) >= settings.min_words and f" {key} " in f" {normalize(page_text)} "
    if settings.reject_copied_positives and copied:
        return _drop("copied_from_page", "the query's words run verbatim in the page text")
    return KEEP


def check_answer(answer: str | None, page_text: str, settings: FilterSettings | None = None) -> FilterResult:
    """Does the page hold ``answer``: each of its numbers, and ``answer_support`` of its content words (stemmed,
    as ``evidence`` compares them)? No answer, or one of stopwords only, is not checked."""
    settings = settings or FilterSettings()
    words = content_words(answer or "")
    if not words or settings.answer_support == 0:
        return KEEP
    on_page = set(content_words(page_text))
    numbers = [w for w in words if any(c.isdigit() for c in w) and w not in on_page]
    if numbers:
        return _drop("answer_not_in_page", f"the answer's {numbers[0]!r} is not on the page")
    share = sum(w in on_page for w in words) / len(words)
    if share < settings.answer_support:
        return _drop("answer_not_in_page", f"{share:.0%} of the answer's words are on the page")
    return KEEP


def check_self_contained(text: str, settings: FilterSettings | None = None) -> FilterResult:
    """Does ``text`` stand on its own, without pointing at "the text", "this page" or "the paper"? ("the table
    of contents", "the text of a license" name things and are kept.)"""
    settings = settings or FilterSettings()
    match = _POINTS_AT_PAGE.search(text) if settings.self_contained else None
    return _drop("points_at_page", f"says {match.group()!r}") if match else KEEP


def check_positive(
    text: str, page_text: str, settings: FilterSettings | None = None, answer: str | None = None
) -> FilterResult:
    """The filters a generated positive goes through: one well-formed question that stands on its own, not
    copied from its page, with an answer the page holds."""
    for decision in (check_form(text, settings), check_length(text, settings), check_self_contained(text, settings)):
        if not decision.keep:
            return decision
    decision = check_not_copied(text, page_text, settings)
    return decision if not decision.keep else check_answer(answer, page_text, settings)


def check_not_duplicate(text: str, kept: Sequence[str], settings: FilterSettings | None = None) -> FilterResult:
    """Is ``text`` neither a duplicate nor a near-duplicate of the ``kept`` texts?"""
    settings = settings or FilterSettings()
    key, words = normalize(text), _content(text)
    for other in kept:
        if key == normalize(other):
            return _drop("duplicate_negative", f"the same as {other!r} after normalisation")
        overlap = _overlap(words, _content(other), settings.typo_similarity)
        if overlap >= settings.negative_jaccard:
            return _drop("near_duplicate_negative", f"content-word overlap {overlap:.2f} with {other!r}")
    return KEEP


def _first_drop(
    candidate: QueryRecord, positive: QueryRecord, kept: list[str], settings: FilterSettings
) -> FilterResult:
    """The filters in order; the first that drops decides."""
    for result in (
        lambda: check_form(candidate.text, settings),
        lambda: check_length(candidate.text, settings),
        lambda: check_self_contained(candidate.text, settings) if candidate.kind == "rephrased" else KEEP,
        lambda: check_against_positive(
            candidate.text, positive.text, settings, rephrasing=candidate.kind == "rephrased"
        ),
        lambda: check_not_duplicate(candidate.text, kept, settings),
    ):
        decision = result()
        if not decision.keep:
            return decision
    return KEEP


def apply_filters(
    positive: QueryRecord, candidates: Sequence[QueryRecord], settings: FilterSettings | None = None
) -> tuple[list[QueryRecord], list[Rejection]]:
    """Run every filter over the candidates (negatives or rephrasings) of one positive, in order.

    A candidate is compared with the positive and with the candidates of its kind kept before it, so the
    first of two near-duplicates is the one kept.

    Returns:
        The kept candidates, in order, and a ``Rejection(stage="filter", reason=..., record=...)`` for each
        dropped one.

    Raises:
        ValueError: a candidate is a positive, or belongs to another positive (``parent_id``).
    """
    settings = settings or FilterSettings()
    kept: list[QueryRecord] = []
    rejections: list[Rejection] = []
    for candidate in candidates:
        if candidate.kind == "positive":
            raise ValueError(f"candidate {candidate.query_id} is a positive: filter negatives or rephrasings")
        if candidate.parent_id != positive.query_id:
            raise ValueError(
                f"candidate {candidate.query_id} belongs to positive {candidate.parent_id!r}, not "
                f"{positive.query_id!r}: filter each positive's candidates with that positive"
            )
        result = _first_drop(candidate, positive, [k.text for k in kept if k.kind == candidate.kind], settings)
        if result.keep:
            kept.append(candidate)
        else:
            rejections.append(
                Rejection(stage="filter", reason=result.reason, record=candidate, page_id=candidate.page_id)
            )
    return kept, rejections
