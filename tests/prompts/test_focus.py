"""The focused page view: the heading and the passages nearest the question, instead of the page's head; the
whole-page view renders exactly what it rendered before the setting existed."""

from __future__ import annotations

import logging

import pytest

from docrerank.backends import load_backend
from docrerank.pipeline.verify import Verifier, VerifySettings
from docrerank.prompts.focus import GAP, focused_text, passages
from docrerank.prompts.requests import rerank_request, verify_requests
from docrerank.rerankers import LLMReranker, Reranker
from tests.helpers import tiny_llm

TOPICS = ["granite quarries", "harbor tides", "violin making", "glacier retreat", "saffron harvests", "lanterns"]


def _page() -> str:
    """A manual page of 6 sections of ~12 lines: each section names its topic on every line."""
    lines = ["Chapter 3: Regional industries and crafts"]
    for topic in TOPICS:
        lines += [f"Records of {topic}: entry {n}, measured and kept by the district office." for n in range(12)]
    return "\n".join(lines)


def _user_text(request) -> str:
    return request.messages[-1].content


def test_passages_are_runs_of_whole_lines_and_long_lines_are_cut_by_words():
    text = "a b c\nd e f\ng h i\n\n" + " ".join(f"w{i}" for i in range(25))
    assert passages(text, words=6) == ["a b c\nd e f", "g h i", *[" ".join(f"w{i}" for i in r) for r in
                                       (range(0, 6), range(6, 12), range(12, 18), range(18, 24))], "w24"]  # fmt: skip


def test_the_focused_view_keeps_the_heading_and_the_passages_of_the_question_in_page_order():
    page = _page()
    text, cut = focused_text("When did the glacier retreat records begin?", page, focus_chars=1200)
    assert cut and len(text) <= 1200 + len(GAP) and text.startswith("Chapter 3: Regional industries and crafts\n")
    assert "glacier retreat" in text and "granite" not in text.split("\n", 2)[1]  # the first lines are skipped
    assert GAP.strip() in text  # what is left out is marked
    kept = [line for line in text.splitlines()[1:] if line.startswith("Records")]
    assert kept == sorted(kept, key=page.index)  # page order
    assert sum("glacier" in line for line in kept) >= len(kept) // 2
    # a page that fits is shown whole, untouched
    assert focused_text("anything", "Short page.\nTwo lines.", 1200) == ("Short page.\nTwo lines.", False)


def test_the_whole_view_is_unchanged_and_the_focused_view_says_what_it_shows():
    page, query = _page(), "What is kept about saffron harvests?"
    whole = [_user_text(r) for r in verify_requests(page, query, max_page_chars=800)]
    assert all("only its first 800 characters are shown" in t and "glacier" not in t for t in whole)
    focused = [_user_text(r) for r in verify_requests(page, query, max_page_chars=4000, page_view="focused")]
    assert all("saffron harvests" in t and "passages nearest the question are shown" in t for t in focused)
    assert all(len(f) < len(_user_text(r)) for f, r in zip(focused, verify_requests(page, query), strict=True))
    assert "saffron" in _user_text(rerank_request(page, query, page_view="focused"))


@pytest.mark.slow  # SmolLM2 scores two short prompts (~3 s)
def test_a_focused_zero_shot_reranker_scores_saves_and_loads_with_its_view(tmp_path):
    backend = load_backend(tiny_llm())
    reranker = LLMReranker(backend, page_view="focused", focus_chars=600)
    query = "What is kept about saffron harvests?"
    (score,) = reranker.score([(query, _page())])
    assert 0.0 <= score <= 1.0
    assert reranker.settings()["page_view"] == "focused" and "page_view" not in LLMReranker(backend).settings()
    reranker.save(tmp_path / "focused")
    loaded = Reranker.load(tmp_path / "focused")
    assert loaded.page_view == "focused" and loaded.focus_chars == 600
    assert loaded.score([(query, _page())])[0] == pytest.approx(score, abs=1e-4)
    verifier = Verifier(backend, VerifySettings(page_view="focused"))
    assert verifier.fingerprint_parts["settings"]["page_view"] == "focused"
    assert "page_view" not in Verifier(backend, VerifySettings()).fingerprint_parts["settings"]


def test_building_a_pages_index_logs_nothing_below_the_applications_level():
    """bm25s sets its logger to DEBUG when imported: the CLI printed a line for every page the focused view
    indexed. Its logger follows the root's level (WARNING unless -v)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        focused_text("When did the glacier retreat records begin?", _page(), focus_chars=1200)
        assert not logging.getLogger("bm25s").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(level)
