"""Given positives (``positives: {given: FILE}``): every line that is not a usable question is rejected on its
own, with its line number and the fix, and the rest is read."""

from __future__ import annotations

import json

from docrerank.pipeline.given import MAX_GIVEN_QUERY_CHARS, read_given_positives


def test_each_bad_line_is_rejected_with_its_line_and_the_rest_is_read(vignette_store, tmp_path):
    page = next(p.page_id for p in vignette_store if p.text.strip())
    rows = [
        {"page_id": page, "query": "What does the test detect?", "answer": 42, "negatives": ["What does it hide?"]},
        {"page_id": page, "query": None},
        {"page_id": page, "query": 12345},
        {"page_id": page, "query": ["how", "much"]},
        {"page_id": page, "query": {"text": "how?"}},
        {"page_id": page, "query": "\u0000\u0001\u007f"},
        {"page_id": page, "query": " \t "},
        {"page_id": page, "query": "why " * MAX_GIVEN_QUERY_CHARS},
        {"page_id": page, "query": "Why?", "negatives": "not a list"},
        {"page_id": "no-such-page", "query": "What is this?"},
        {"query": "Which page?"},
        "[1, 2]",
    ]
    path = tmp_path / "given.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n{not json\n")
    given = read_given_positives(path, vignette_store)
    [kept] = given.positives[page]
    assert (kept.text, kept.answer, given.negatives[kept.query_id]) == (
        "What does the test detect?",
        "42",
        ["What does it hide?"],
    )
    lines = sorted(int(r.reason.split(":")[1]) for r in given.rejected)
    assert lines == list(range(2, len(rows) + 2))  # every bad line, once, by its number
    reasons = " | ".join(r.reason for r in given.rejected)
    for words in ("query must be a string (a NoneType)", "(a int)", "(a list)", "(a dict)", "no letter or digit",
                  "empty query", f"more than {MAX_GIVEN_QUERY_CHARS}", "negatives must be a list",
                  "is not in the store", "page_id must be a string (missing)", "not a JSON object"):  # fmt: skip
        assert words in reasons, words
