"""Parsing model output as JSON, and turning log-probabilities into choice probabilities."""

from __future__ import annotations

import math

import pytest

from docrerank.backends import ChatRequest, Generation, Message
from docrerank.backends.base import choice_variants, scores_from_logprobs, scores_from_top_tokens
from docrerank.backends.structured import JsonParseError, parse_json_output, parse_structured


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"answer": 4}', {"answer": 4}),
        ('```json\n{"answer": 4}\n```', {"answer": 4}),
        ('```\n{"answer": 4}\n```\nThat is all.', {"answer": 4}),
        ('Sure! Here is the JSON: {"answer": 4, "why": "2+2"}. Hope this helps.', {"answer": 4, "why": "2+2"}),
        ('{"items": [1, 2,], "last": {"x": 1,},}', {"items": [1, 2], "last": {"x": 1}}),
        ("The ids are [3, 1, 2] in order.", [3, 1, 2]),
        (
            'Output: {"query": "use {x} and [y]", "nested": {"close": "}", "open": "{["}} -- done',
            {"query": "use {x} and [y]", "nested": {"close": "}", "open": "{["}},
        ),
        (  # escaped quotes beside braces inside strings
            'Result: {"q": "say \\"}\\" twice", "p": "a\\\\", "n": [1]} end',
            {"q": 'say "}" twice', "p": "a\\", "n": [1]},
        ),
        ('Prefix {"text": "line one\\nline two"}', {"text": "line one\nline two"}),
    ],
)
def test_parse_json_output_repairs_the_usual_slips(text, expected):
    assert parse_json_output(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("I cannot answer that.", "no JSON object found"),
        ("", "no JSON object found"),
        ('{"answer": }', "invalid JSON"),
        ('Here: {"answer": 4, "why": "two and', "unterminated JSON"),  # cut off by max_tokens
    ],
)
def test_parse_json_output_says_why_it_failed(text, reason):
    with pytest.raises(JsonParseError, match=reason):
        parse_json_output(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a trailing comma outside, and what the old regex took for one inside a string
        ('{"queries": ["what is {x, }?", "b",],}', {"queries": ["what is {x, }?", "b"]}),
        ('{"query": "list (1, 2, ]", "ok": true,}', {"query": "list (1, 2, ]", "ok": True}),
        ('```json\n{"q": "a,}b", "n": [1,],}\n```', {"q": "a,}b", "n": [1]}),
    ],
)
def test_repairs_never_edit_inside_a_string(text, expected):
    assert parse_json_output(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{'query': 'Which year?', 'ok': True, 'note': None}", {"query": "Which year?", "ok": True, "note": None}),
        ('{"n": 1, // the count\n "m": 2}', {"n": 1, "m": 2}),
        ('{query: "x", "n": 1}', {"query": "x", "n": 1}),
        ('[{"a": 1} {"b": 2}]', [{"a": 1}, {"b": 2}]),  # a missing comma between elements
    ],
)
def test_parse_json_output_repairs_slips_that_keep_every_value(text, expected):
    assert parse_json_output(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"queries": ["What is the break date?", "Which test is used',  # mid-string, mid-list
        '{"queries": ["What is the break date?", "Which test is used?"',  # mid-list, after an item
        '{"query": "x", "properties": {"year": 2020, ',  # mid-object
        '```json\n{"queries": ["a", "b"]\n```',  # the fence closes, the JSON does not
        'See [1] and [2]. {"queries": ["a", "b',  # a complete span before the cut-off one
        '[{"a": 1}, {"b": 2}',
    ],
)
def test_cut_off_output_is_rejected_never_completed(text):
    import json_repair

    assert json_repair.repair_json(text, return_objects=True)  # json-repair alone would complete it
    with pytest.raises(JsonParseError, match="unterminated JSON"):
        parse_json_output(text)
    request = ChatRequest(messages=[Message(role="user", content="JSON please")], json_schema={"type": "object"})
    result = parse_structured(request, Generation(text=text, finish_reason="length"))
    assert result.parsed is None and "unterminated JSON" in result.error and result.text == text


@pytest.mark.parametrize("text", ['{"a": 1, "b": }', '{"a" 1}', '{"a": [1, 2}, "b": 3}]'])
def test_a_repair_that_would_invent_or_drop_content_is_rejected(text):
    with pytest.raises(JsonParseError, match="invalid JSON|unterminated JSON"):
        parse_json_output(text)


def test_parse_structured_records_a_failure_with_the_raw_text():
    schema = {"type": "object"}
    request = ChatRequest(messages=[Message(role="user", content="JSON please")], json_schema=schema)

    good = parse_structured(request, Generation(text='```json\n{"a": 1}\n```'))
    assert good.ok and good.parsed == {"a": 1}

    bad = parse_structured(request, Generation(text="no json at all"))
    assert bad.parsed is None
    assert bad.error == "structured output: no JSON object found; raw text kept"
    assert bad.text == "no json at all"

    failed = parse_structured(request, Generation(text="{}", error="HTTP 500"))
    assert failed.error == "HTTP 500" and failed.parsed is None  # an earlier error stays as it was

    plain = ChatRequest(messages=request.messages)
    assert parse_structured(plain, Generation(text='{"a": 1}')).parsed is None  # no schema, no parsing


def test_choice_variants_cover_case_and_a_leading_space():
    assert choice_variants("yes") == ["yes", "Yes", "YES", " yes", " Yes", " YES"]
    variants = choice_variants("True")
    assert set(variants) == {"True", "true", "TRUE", " True", " true", " TRUE"}
    assert len(variants) == len(set(variants))
    assert choice_variants("A") == ["A", "a", " A", " a"]


def test_scores_from_logprobs_work_in_log_space():
    # Both choices far below what exp() can represent: probabilities come from the difference alone.
    scores = scores_from_logprobs(("yes", "no"), {"yes": [-1000.0], "no": [-1001.0]})
    assert scores.ok
    assert scores.prob("yes") == pytest.approx(1 / (1 + math.exp(-1)), rel=1e-12)
    assert scores.prob("no") == pytest.approx(1 / (1 + math.e), rel=1e-12)
    assert scores.logprobs == {"yes": -1000.0, "no": -1001.0}
    assert scores.mass == 0.0  # exp(-999.7) underflows; the probabilities do not


def test_scores_from_logprobs_sum_the_variants_of_a_choice():
    scores = scores_from_logprobs(("yes", "no"), {"yes": [math.log(0.3), math.log(0.1)], "no": [math.log(0.2)]})
    assert scores.logprobs["yes"] == pytest.approx(math.log(0.4))
    assert scores.prob("yes") == pytest.approx(0.4 / 0.6)
    assert scores.mass == pytest.approx(0.6)
    assert sum(scores.probs.values()) == pytest.approx(1.0)


def test_scores_from_logprobs_give_an_absent_choice_zero_and_fail_without_any():
    one_sided = scores_from_logprobs(("yes", "no"), {"yes": [-2.0]})
    assert one_sided.probs == {"yes": 1.0, "no": 0.0}
    assert one_sided.logprobs["no"] == -math.inf

    none = scores_from_logprobs(("yes", "no"), {})
    assert not none.ok and "none of the choices" in none.error and none.probs == {}


def test_scores_from_top_tokens_match_variants_and_floor_a_missing_choice():
    pairs = [("Yes", -0.5), (" yes", -2.0), ("No", -1.0), ("The", -6.0), ("maybe", -7.5)]
    scores = scores_from_top_tokens(("yes", "no"), pairs)
    assert scores.logprobs["yes"] == pytest.approx(math.log(math.exp(-0.5) + math.exp(-2.0)))
    assert scores.logprobs["no"] == pytest.approx(-1.0)
    assert sum(scores.probs.values()) == pytest.approx(1.0)

    missing = scores_from_top_tokens(("True", "False"), [("True", -0.1), ("The", -3.0), ("A", -9.0)])
    assert missing.logprobs["False"] == -9.0  # the smallest listed: an upper bound on its true value
    assert missing.prob("True") == pytest.approx(1 / (1 + math.exp(-8.9)))
    assert 0.0 < missing.prob("False") < 1e-3

    empty = scores_from_top_tokens(("yes", "no"), [])
    assert not empty.ok and "empty top-k" in empty.error
