"""Pre-verification filters: what they drop, with which reason, and the hard negatives they must keep."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from docrerank.pipeline.filters import (
    REASONS,
    FilterSettings,
    apply_filters,
    check_against_positive,
    check_answer,
    check_form,
    check_length,
    check_not_duplicate,
    check_positive,
    content_overlap,
    normalize,
)
from docrerank.pipeline.rulebased import EntityPool, rule_based_negatives
from tests.pipeline import make_negative, make_positive, sample_texts

POSITIVE = "Was the structural break detected at observation 72 in December 1991?"


def code(result) -> str:
    assert not result.keep
    return result.reason.split(":")[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("What is {{ query }} about?", "template_leftover"),
        ("Which year did {company} report?", "template_leftover"),
        ("<|im_start|>What is the break date?", "template_leftover"),
        ("Here are 12 rewritten queries:", "model_chatter"),
        ("Sure! What was the break date?", "model_chatter"),
        ("Negative query 3: When was the break?", "model_chatter"),
        ("As an AI language model, which date is it?", "model_chatter"),
        ("1. When was the structural break detected?", "list_marker"),
        ("- When was the structural break detected?", "list_marker"),
        ("The break was detected in 1991.", "not_a_question"),
        ("When was the break detected? And where?", "several_questions"),
    ],
)
def test_malformed_candidates_are_dropped_with_their_reason(text, reason):
    assert code(check_form(text)) == reason


@pytest.mark.parametrize(
    "text",
    [
        "When was the structural break detected?",
        "List the tests that belong to the F test framework",
        "In which month was the break detected",
        "Name the package that implements the MOSUM test.",
        '"Which observation marks the break?"',
        "The break was detected at which observation?",
        "Was the break detected in 1991?",
    ],
)
def test_well_formed_questions_pass(text):
    assert check_form(text).keep


def test_length_bounds_are_configurable():
    assert code(check_length("Break date?")) == "too_short"
    assert code(check_length("Why " * 61)) == "too_long"
    assert check_length("When was it?").keep
    strict = FilterSettings(min_words=5, max_words=8)
    assert code(check_length("When was it detected?", strict)) == "too_short"
    assert code(check_length("When was the break in the series first detected?", strict)) == "too_long"
    assert check_length("When was the break detected?", strict).keep


def test_identical_after_normalisation_is_dropped():
    assert normalize("Does lm() use 1,000 rows, 5 percent?") == normalize("does LM use 1000 rows 5 %")
    for same in (POSITIVE, POSITIVE.upper(), POSITIVE.replace("?", " ?"), "  " + POSITIVE.lower() + "  "):
        assert code(check_against_positive(same, POSITIVE)) == "identical_to_positive"


def test_a_paraphrase_of_the_positive_is_dropped():
    reordered = "In December 1991, at observation 72, was the structural break detected?"
    filler = "Was a structural break detected at the observation 72 in December 1991 exactly?"
    typo = "Was the structural break detectted at observation 72 in December 1991?"
    for text in (reordered, filler, typo):
        assert code(check_against_positive(text, POSITIVE)) == "paraphrase_of_positive", text
    # a rephrasing is meant to say the same thing: only the identical check applies to it
    assert check_against_positive(reordered, POSITIVE, rephrasing=True).keep
    assert code(check_against_positive(POSITIVE, POSITIVE, rephrasing=True)) == "identical_to_positive"


@pytest.mark.parametrize(
    "text",
    [
        "Was the structural break detected at observation 72 in December 1992?",  # one digit
        "Was the structural break detected at observation 73 in December 1991?",
        "Was the structural break detected at observation 72 in November 1991?",
        "Was the structural break rejected at observation 72 in December 1991?",
        "Was the structural break not detected at observation 72 in December 1991?",
        "Was the structural break detected after observation 72 in December 1991?",
        "Was the structural break detected at observation 72 in December 1991 by the MOSUM test?",
    ],
)
def test_one_token_hard_negatives_are_kept(text):
    assert check_against_positive(text, POSITIVE).keep
    positive = make_positive(POSITIVE)
    kept, rejections = apply_filters(positive, [make_negative(positive, text)])
    assert [k.text for k in kept] == [text] and rejections == []


def test_near_duplicates_between_negatives():
    kept = ["Did Hornik propose the MOSUM test in 1995?"]
    assert code(check_not_duplicate("did hornik propose the MOSUM test in 1995", kept)) == "duplicate_negative"
    for near in (
        "Did Hornick propose the MOSUM test in 1995?",  # a typo of a name
        "In 1995, did Hornik propose the MOSUM test?",  # reordered
        "Did Hornik propose MOSUM tests in 1995?",  # inflection and an article
    ):
        assert code(check_not_duplicate(near, kept)) == "near_duplicate_negative", near
    for different in (
        "Did Hornik propose the MOSUM test in 1996?",
        "Did Kleiber propose the MOSUM test in 1995?",
        "Did Hornik propose the CUSUM test in 1995?",
        "Did Hornik reject the MOSUM test in 1995?",
    ):
        assert check_not_duplicate(different, kept).keep, different
    assert content_overlap(kept[0], "Did Hornik propose the MOSUM test in 1996?") == pytest.approx(4 / 6)


def test_thresholds_are_settings():
    kept = ["Did Hornik propose the MOSUM test in 1995?"]
    other_year = "Did Hornik propose the MOSUM test in 1996?"
    assert check_not_duplicate(other_year, kept).keep
    assert code(check_not_duplicate(other_year, kept, FilterSettings(negative_jaccard=0.6))) == (
        "near_duplicate_negative"
    )
    long = "Was the structural break in the linear regression of US income on consumption detected in 1991?"
    edited = long.replace("1991", "1992")
    assert check_against_positive(edited, long).keep
    assert code(check_against_positive(edited, long, FilterSettings(positive_jaccard=0.8))) == (
        "paraphrase_of_positive"
    )
    typo = "Did Hornick propose the MOSUM test in 1995?"
    assert check_not_duplicate(typo, kept, FilterSettings(typo_similarity=0.95)).keep


def test_settings_are_checked():
    with pytest.raises(ValidationError, match="min_words"):
        FilterSettings(min_words=10, max_words=5)
    with pytest.raises(ValidationError, match="not a regular expression"):
        FilterSettings(chatter_patterns=("(unclosed",))
    with pytest.raises(ValidationError):
        FilterSettings(near_duplicate=0.5)
    with pytest.raises(ValidationError):
        FilterSettings(negative_jaccard=1.5)
    assert FilterSettings.model_validate_json(FilterSettings().model_dump_json()) == FilterSettings()


def test_apply_filters_keeps_the_first_of_near_duplicates_and_records_why():
    positive = make_positive(POSITIVE, page_id="page-13")
    texts = [
        "Was the structural break detected at observation 72 in December 1988?",
        "Here are the rewritten queries:",
        POSITIVE.lower(),
        "Was a structural break detected at observation 72 in December 1988?",
        "Was the structural break detected at observation 72 in March 1991?",
        "When?",
        "In December 1991 was the structural break detected at observation 72?",
        "Was the structural break detected at observation 72 in December 1988?",
    ]
    candidates = [make_negative(positive, t) for t in texts]
    kept, rejections = apply_filters(positive, candidates)
    assert [k.text for k in kept] == [texts[0], texts[4]]
    assert [(r.record.text, r.reason.split(":")[0]) for r in rejections] == [
        (texts[1], "model_chatter"),
        (texts[2], "identical_to_positive"),
        (texts[3], "near_duplicate_negative"),
        (texts[5], "too_short"),
        (texts[6], "paraphrase_of_positive"),
        (texts[7], "duplicate_negative"),
    ]
    for rejection in rejections:
        assert rejection.stage == "filter" and rejection.page_id == "page-13"
        assert rejection.reason.split(":")[0] in REASONS and ": " in rejection.reason


def test_rephrasings_and_negatives_are_deduplicated_apart():
    positive = make_positive(POSITIVE)
    rephrased = make_negative(
        positive, "At observation 72, in December 1991, was the structural break detected?", kind="rephrased"
    )
    negative = make_negative(positive, "At observation 72, in December 1991, was the structural break rejected?")
    kept, rejections = apply_filters(positive, [rephrased, negative])
    assert kept == [rephrased, negative] and rejections == []


def test_rule_based_negatives_of_real_pages_pass_the_filters():
    texts = sample_texts()
    pool = EntityPool.from_texts(texts)
    for page, query in (
        (2, "Was the structural break detected at observation #72, in December 1991?"),
        (2, "What does mefp() do with alpha=0.05 when monitoring with the ME test?"),
        (0, "Which tests on F statistics did Hansen propose in 1992 besides the CUSUM test?"),
    ):
        positive = make_positive(query)
        negatives = rule_based_negatives(positive, texts[page], pool, 12, random.Random(0))
        kept, rejections = apply_filters(positive, negatives)
        assert len(negatives) >= 8
        assert kept == negatives, [r.reason for r in rejections]


def test_candidates_of_another_positive_are_an_error():
    positive = make_positive(POSITIVE)
    other = make_positive("Which test detected the break?")
    with pytest.raises(ValueError, match="belongs to positive"):
        apply_filters(positive, [make_negative(other, "Which test missed the break?")])
    with pytest.raises(ValueError, match="is a positive"):
        apply_filters(positive, [other])


def test_a_positive_copied_from_its_page_is_dropped_and_one_in_its_own_words_is_kept():
    page = "Frequently asked questions\nWhat is xts? xts is an R package that extends zoo. Why use xts?"
    copied = check_positive("What is xts?", page)
    assert not copied.keep and copied.reason.startswith("copied_from_page")
    assert check_positive("What R package does xts extend?", page).keep
    assert check_positive("What is xt?", page).keep  # whole words only: "xt" is not "xts"
    assert check_positive("What is xts?", page, FilterSettings(reject_copied_positives=False)).keep
    assert check_positive("xts extends zoo", page).reason.startswith("not_a_question")


@pytest.mark.parametrize(
    ("answer", "keep"),
    [
        ("December 1991", True),
        ("at observation #72, in December 1991", True),
        ("The significance level alpha", True),
        ("the bandwidth h = 0.5", True),
        (None, True),  # no answer given: nothing to check
        ("it", True),  # no content word: nothing to check
        ("March 1991", True),  # half its content words on the page, its number too
        ("December 1993", False),  # a number the page never gives
        ("at observation #75", False),
        ("Quarterly gross domestic product forecasts", False),  # none of its words
    ],
)
def test_a_positive_whose_answer_the_page_does_not_hold_is_dropped(answer, keep):
    """The answer a generator states must be on the page (the demo once stored an answer its page never says)."""
    page = sample_texts()[2]
    question = "When was the structural break detected?"
    decision = check_positive(question, page, answer=answer)
    assert decision.keep == keep, decision
    if not keep:
        assert code(decision) == "answer_not_in_page" and code(check_answer(answer, page)) == "answer_not_in_page"
    assert check_positive(question, page, FilterSettings(answer_support=0), answer="December 1993").keep


@pytest.mark.parametrize(
    ("query", "points_at"),
    [
        ("What is the name of the method discussed in the paper?", "the paper"),  # the 1.5B's, in the training set
        ("What is the definition of the Cox model described in the text?", "the text"),
        ("Which value does this page give for the bandwidth h?", "this page"),
        ("What is shown in the figure above?", "the figure"),
        ("What does the table of contents of the lme4 vignette list?", None),  # names a thing
        ("What does Table 3 of the lme4 paper report?", None),
        ("How does the textual parser handle tables?", None),
    ],
)
def test_a_positive_must_stand_on_its_own(query, points_at):
    page = "The Cox model and the sandwich covariance matrix; bandwidth h = 1. Table 3 of the lme4 paper."
    decision = check_positive(query, page)
    assert decision.keep == (points_at is None), decision
    if points_at:
        assert decision.reason == f"points_at_page: says {points_at!r}"
        assert check_positive(query, page, FilterSettings(self_contained=False)).keep
