"""Teacher scores (``docrerank label``): every pair scored once, grouped by page, cached and resumed after an
interrupt; bad pages named and the rest labeled; the labeled set read back with its hard labels; the command
with the embedded SmolLM2 as the teacher."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import yaml

from docrerank.errors import DocrerankError
from docrerank.evaluation.runner import ScoreCache
from docrerank.pages.content import PageContent, PageLike
from docrerank.rerankers.base import Reranker, page_text
from docrerank.training import TrainingGroup, label_dataset, label_groups, read_groups
from docrerank.training.teacher import CACHE, EXAMPLES
from tests.helpers import run_cli, tiny_llm

TINY = tiny_llm(2048)


class OverlapTeacher(Reranker):
    """A toy teacher: the share of the query's words found in the page; records every pair it was asked
    about, and stops (KeyboardInterrupt) on the call numbered ``interrupt_at``."""

    kind = "toy-overlap"
    uses = frozenset({"text"})

    def __init__(self, interrupt_at: int | None = None):
        self.asked: list[tuple[str, str]] = []
        self.calls, self.interrupt_at = 0, interrupt_at

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.asked += [(query, page.page_id) for query, page in pairs]
        result = []
        for query, page in pairs:
            words = set(query.lower().rstrip("?").split())
            result.append(len(words & set(page_text(page).lower().split())) / len(words))
        return result


def _groups() -> list[TrainingGroup]:
    a = PageContent("the break is detected at observation 42", page_id="a")
    b = PageContent("the fluctuation process has wide boundaries", page_id="b")
    c = PageContent("bananas are yellow", page_id="c")
    return [
        TrainingGroup("where is the break detected", a, "d1", ("where are bananas grown",), (b, c)),
        TrainingGroup("how wide are the boundaries", b, "d2", ("how long is the break",), (a,)),
        TrainingGroup("what colour are bananas", c, "d3", ("where is the break detected",), (a, b)),
    ]


def test_every_pair_is_scored_once_grouped_by_page_and_aligned_with_its_hard_label():
    teacher = OverlapTeacher()
    labeled, summary = label_groups(_groups(), teacher, ScoreCache(None), identity="toy", chunk=3)
    assert summary.pairs == 10 and summary.scored == 10 and summary.cached == 0 and not summary.errors
    assert len(teacher.asked) == len(set(teacher.asked)) == 10  # a (query, page) of two groups (q1, c): once
    pages = [page for _, page in teacher.asked]
    assert pages == sorted(pages)  # grouped by page: a page's prefix once for all its queries
    first = labeled[0]
    assert first.teacher_score == pytest.approx(4 / 5)  # where/is/the/break/detected: 4 of 5 words on page a
    assert first.negative_query_teacher_scores == (0.0,)  # "where are bananas grown": no word on page a
    assert len(first.negative_page_teacher_scores) == 2
    for group in labeled:
        for query, page, label, score in group.scored_pairs():
            assert score == pytest.approx(OverlapTeacher().score([(query, page)])[0]), (query, page.page_id, label)


def test_an_interrupted_labeling_resumes_and_scores_only_the_rest(tmp_path):
    cache = tmp_path / "scores.sqlite"
    with pytest.raises(KeyboardInterrupt):
        label_groups(_groups(), OverlapTeacher(interrupt_at=3), ScoreCache(cache), identity="toy", chunk=4)
    rerun = OverlapTeacher()
    labeled, summary = label_groups(_groups(), rerun, ScoreCache(cache), identity="toy", chunk=4)
    assert summary.cached == 8 and summary.scored == 2 and len(rerun.asked) == 2  # two chunks of 4 were kept
    fresh, _ = label_groups(_groups(), OverlapTeacher(), ScoreCache(None), identity="toy")
    assert labeled == fresh
    # another teacher identity does not read this one's scores
    other = OverlapTeacher()
    label_groups(_groups(), other, ScoreCache(cache), identity="another teacher")
    assert len(other.asked) == 10


def test_a_page_without_text_is_named_with_the_fix_and_the_rest_is_labeled():
    groups = _groups()
    empty = PageContent("  ", page_id="blank")
    groups.append(TrainingGroup("where is the break detected", empty, "d4", (), (groups[0].page,)))
    teacher = OverlapTeacher()
    labeled, summary = label_groups(groups, teacher, ScoreCache(None), identity="toy")
    assert [e.item for e in summary.errors] == ["page blank"] and "--ocr auto" in summary.errors[0].fix
    assert all(page != "blank" for _, page in teacher.asked)
    assert labeled[-1].teacher_score is None and labeled[-1].negative_page_teacher_scores == (pytest.approx(0.8),)
    assert summary.unscored == 1 and summary.scored == 10


def test_the_labeled_set_reads_back_with_hard_labels_and_teacher_scores(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"query": "where is the break detected", "text": "the break is detected at observation 42", "label": 1},
        {"query": "where is the break detected", "text": "bananas are yellow", "label": 0},
        {"query": "how long is the break", "text": "the break is detected at observation 42", "label": 0},
        {"query": "what colour are bananas", "text": "bananas are yellow", "label": 1},
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = label_dataset(pairs, tmp_path / "out", OverlapTeacher())
    assert summary.groups == 2 and summary.pairs == 4 and (tmp_path / "out" / CACHE).is_file()
    groups = read_groups(tmp_path / "out")
    assert [(q, p.text, label) for g in groups for q, p, label in g.pairs()] == [
        (r["query"], r["text"], r["label"]) for r in [rows[0], rows[2], rows[1], rows[3]]
    ]
    assert groups[0].teacher_score == pytest.approx(0.8) and groups[1].teacher_score == pytest.approx(0.5)
    assert groups[0].negative_query_teacher_scores == (pytest.approx(0.6),)  # how/long/is/the/break: 3 of 5
    assert groups[0].negative_page_teacher_scores == (0.0,)
    assert json.loads((tmp_path / "out" / "label.json").read_text())["scored"] == 4
    # the same scores written next to the labels of a pairs.jsonl read back too
    scored = tmp_path / "scored-pairs.jsonl"
    teacher_scores = [0.8, 0.0, 0.5, 0.5]
    lines = [json.dumps({**r, "teacher_score": s}) + "\n" for r, s in zip(rows, teacher_scores, strict=True)]
    scored.write_text("".join(lines))
    assert [g.teacher_score for g in read_groups(scored)] == [0.8, 0.5]
    assert not read_groups(pairs)[0].has_teacher_scores


def test_unknown_page_ids_are_named_and_the_rest_is_labeled(vignette_store, tmp_path):
    queries = tmp_path / "queries.jsonl"
    known = vignette_store.page_ids[0]
    rows = [
        {"query": "where is the break", "page_id": known, "negatives": [{"text": "where is the banana"}]},
        {"query": "what is missing", "page_id": "f" * 32, "negatives": []},
    ]
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DocrerankError, match="is not in the store"):
        read_groups(queries, vignette_store)
    summary = label_dataset(queries, tmp_path / "out", OverlapTeacher(), store=vignette_store)
    assert summary.groups == 1 and summary.pairs == 2
    assert [e.item for e in summary.errors] == [f"{queries}:2"] and "f" * 32 in summary.errors[0].reason
    row = json.loads((tmp_path / "out" / EXAMPLES).read_text())
    assert row["image_path"].endswith(".png") and row["page_id"] == known


@pytest.mark.slow
def test_label_command_with_the_embedded_smollm2_teacher_and_its_rerun_from_the_cache(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"backends": {"generator": TINY, "verifier": TINY}}))
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"query": "At which observation is the break detected?", "text": "The break is at observation 42.", "label": 1},
        {"query": "At which observation is the break detected?", "text": "Bananas are yellow.", "label": 0},
        {"query": "At which year is the break detected?", "text": "The break is at observation 42.", "label": 0},
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ("label", "--teacher", config, "--data", pairs, "--out", tmp_path / "out", "--no-progress")
    first = run_cli(*args)
    assert first.exit_code == 0, first.stderr[-2000:]
    assert "3 pairs of 1 groups: 0 cached, 3 scored" in first.stdout
    (group,) = read_groups(tmp_path / "out")
    scores = [score for *_, score in group.scored_pairs()]
    assert all(0.0 <= s <= 1.0 for s in scores)
    again = run_cli(*args)
    assert again.exit_code == 0 and "3 cached, 0 scored" in again.stdout
    assert [s for *_, s in read_groups(tmp_path / "out")[0].scored_pairs()] == scores
    unknown = run_cli("label", "--teacher", config, "--backend", "judge", "--data", pairs, "--out", tmp_path / "x")
    assert unknown.exit_code == 2 and "no backend named 'judge'" in " ".join(unknown.stderr.split())


@pytest.mark.slow
def test_training_on_teacher_targets_without_teacher_scores_names_the_file_and_the_fix(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"query": "a question", "text": "a page", "label": 1}) + "\n")
    result = run_cli("train", "--data", pairs, "--out", tmp_path / "out", "--targets", "teacher")
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert f"{pairs} holds no teacher scores" in message and "docrerank label --teacher" in message
