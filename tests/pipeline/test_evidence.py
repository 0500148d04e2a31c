"""The cheap evidence check: is the edited value on the page, and next to the rest of the query?"""

from __future__ import annotations

import pytest

from docrerank.pipeline.evidence import PageText, check_evidence, check_value, content_words, stem, tokenize
from docrerank.pipeline.records import QueryRecord
from tests.pipeline import make_negative, make_positive, sample_texts

# Page 13 ends: "the moving estimates process has two strong shifts, the first around 1992 and the second
# around 1998." Its figure axis reads "1990 1992 1994 1996 1998 2000"; "February 2001" is in another paragraph.
SHIFT = "Was the second strong shift of the moving estimates process around {}?"


def edited(template: str, old: str, new: str, generator: str = "rule:year") -> QueryRecord:
    positive = make_positive(template.format(old), page_id="page-13")
    record = make_negative(positive, template.format(new), generator=generator)
    return record.model_copy(update={"changed_from": old, "changed_to": new, "property": "date"})


@pytest.fixture(scope="module")
def page13() -> str:
    return sample_texts()[2]


def test_an_edited_year_the_page_states_next_to_the_subject_is_flagged(page13):
    evidence = check_evidence(edited(SHIFT, "1998", "1992"), page13)
    assert evidence.value == "1992"
    assert evidence.answers
    assert len(evidence.found) == 2  # the axis label and the sentence
    assert any("the first around 1992" in snippet for snippet in evidence.found)
    assert "is on the page (2 times)" in evidence.reason and "shift" in evidence.reason


def test_a_year_the_page_never_mentions_is_not_evidence(page13):
    evidence = check_evidence(edited(SHIFT, "1998", "1985"), page13)
    assert evidence.found == [] and not evidence.answers
    assert evidence.reason == "'1985' is not on the page"


def test_a_year_the_page_mentions_elsewhere_is_found_but_does_not_answer(page13):
    evidence = check_evidence(edited(SHIFT, "1998", "2001"), page13)
    assert len(evidence.found) == 1 and "February 2001" in evidence.found[0]
    assert not evidence.answers
    assert "0/7" in evidence.reason and "need 4" in evidence.reason


def test_the_window_and_the_share_decide(page13):
    record = edited(SHIFT, "1998", "1994")  # only on the axis, near "moving estimates" and "process"
    assert not check_evidence(record, page13).answers
    assert check_evidence(record, page13, min_share=0.4).answers
    assert not check_evidence(edited(SHIFT, "1998", "1992"), page13, window=2).answers


@pytest.mark.parametrize(
    ("value", "page"),
    [
        ("1000", "Expenditures reached 1,000 billion US$ in 1990."),
        ("1,000", "Expenditures reached 1000 billion US$ in 1990."),
        ("5%", "Income grew by 5 percent in 1990."),
        ("5 percent", "Income grew by 5% in 1990."),
        ("5%", "Income grew by 5 per cent in 1990."),
        ("5 ms", "A call takes 5ms on average."),
        ("USIncExp2", "The data set usincexp2 holds both series."),
        ("Zeileis", "as shown by  ZEILEIS\n(2005)"),
        ("1.3.0", "Fixed in v1.3.0 of the package."),
    ],
)
def test_formats_do_not_hide_a_value(value, page):
    assert PageText(page).contains(value)


@pytest.mark.parametrize(
    ("value", "page"),
    [
        ("1000", "Expenditures reached 10,000 billion US$."),
        ("5%", "Income grew by 5 points, 15% of it in 1990."),
        ("199", "Income grew in 1990."),
        ("2", "USIncExp2 holds the series."),
    ],
)
def test_values_match_whole_tokens_only(value, page):
    assert not PageText(page).contains(value)


def test_a_function_is_found_with_or_without_its_parentheses():
    page3 = sample_texts()[1]
    positive = make_positive("What does lm() return for USIncExp2?")
    record = make_negative(positive, "What does lm() return for USIncExp2?", generator="rule:entity")
    record = record.model_copy(update={"changed_from": "glm()", "changed_to": "lm()"})
    evidence = check_evidence(record, page3)
    assert len(evidence.found) == 1 and "residuals(lm(expenditure" in evidence.found[0]


def test_a_negative_without_an_edited_value():
    positive = make_positive("When was the break detected?")
    record = make_negative(positive, "Where was the break detected?")
    evidence = check_evidence(record, sample_texts()[2])
    assert evidence.value == "" and evidence.found == [] and not evidence.answers
    assert evidence.reason == "no edited value to check"


def test_snippets_are_bounded_and_counted():
    page = " ".join(["Filler words go here and there."] * 20 + ["Sales hit 1,000 units."] * 8)
    evidence = check_value("1000", "Did sales hit 1000 units?", page, max_snippets=3)
    assert len(evidence.found) == 3 and "(8 times)" in evidence.reason
    assert all(len(s) <= 2 * 80 + len("1,000") + 2 for s in evidence.found)
    assert all("1,000" in s for s in evidence.found)
    assert evidence.found[0].startswith("\u2026")


def test_text_helpers():
    assert [t.norm for t in tokenize("Sales: 1,000.5 units (5 per cent) in v1.2.3")] == [
        "sales", ":", "1000.5", "units", "(", "5", "%", ")", "in", "v", "1.2.3",
    ]  # fmt: skip
    assert stem("estimated") == stem("estimates") == stem("estimation")[:6] == "estima"
    assert stem("process") == stem("processes") == "proces"
    assert content_words("What was the structural change in 2021?") == ["struct", "change", "2021"]
    assert "not" not in content_words("Was it not detected?")
    assert "not" in content_words("Was it not detected?", keep_negations=True)
