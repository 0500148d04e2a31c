"""Mining hard negative pages on the sample documents: rank range, threshold, positives, seeds, the CLI."""

from __future__ import annotations

import json

import pytest

from docrerank.retrieval import BM25Retriever, MiningSettings, mine, read_mined, read_queries, read_trec, write_trec
from tests.helpers import invoke_cli, run_cli, tiny_llm


@pytest.fixture(scope="module")
def retrieved(sample_pages, mining_queries):
    queries, errors = read_queries(mining_queries, sample_pages)
    assert errors == [] and len(queries) == 10
    retriever = BM25Retriever(sample_pages)
    rankings = retriever.search([q.text for q in queries], 20)
    positive_scores = retriever.score([q.text for q in queries], [q.positives[0] for q in queries])
    return queries, rankings, positive_scores


def _ranks_without_positive(ranking, positive):
    return {page: rank for rank, page in enumerate((p for p, _ in ranking if p != positive), start=1)}


@pytest.mark.parametrize("rank_min, rank_max", [(1, 10), (3, 5)])
def test_negatives_come_from_the_rank_range_never_the_positive_and_below_the_threshold(retrieved, rank_min, rank_max):
    queries, rankings, positive_scores = retrieved
    settings = MiningSettings(rank_min=rank_min, rank_max=rank_max)
    examples = mine(queries, rankings, positive_scores, settings)
    assert [e.query_id for e in examples] == [q.query_id for q in queries]
    assert sum(len(e.negatives) for e in examples) > 0
    for example, ranking, positive_score in zip(examples, rankings, positive_scores, strict=True):
        ranks = _ranks_without_positive(ranking, example.positive)
        scores = dict(ranking)
        assert len(example.negatives) <= 3
        for negative in example.negatives:
            assert negative.page_id != example.positive
            assert ranks[negative.page_id] == negative.rank and rank_min <= negative.rank <= rank_max
            assert negative.score == scores[negative.page_id] < 0.95 * positive_score
        eligible = [p for p, r in ranks.items() if rank_min <= r <= rank_max and scores[p] < 0.95 * positive_score]
        assert len(example.negatives) == min(3, len(eligible))  # as many as there are, up to K
        assert example.dropped_by_threshold == example.candidates - len(eligible)


def test_the_positive_score_is_the_retrievers_even_below_the_top_n(retrieved):
    queries, rankings, positive_scores = retrieved
    for query, ranking, score in zip(queries, rankings, positive_scores, strict=True):
        if query.positives[0] in dict(ranking):
            assert score == pytest.approx(dict(ranking)[query.positives[0]])
    shallow = mine(queries, [r[:2] for r in rankings], positive_scores, MiningSettings(top_n=2))
    assert all(e.positive_score == s for e, s in zip(shallow, positive_scores, strict=True))


def test_the_threshold_can_be_turned_off_and_sampling_is_seeded(retrieved):
    queries, rankings, positive_scores = retrieved
    strict = mine(queries, rankings, positive_scores, MiningSettings(max_score_ratio=0.5))
    loose = mine(queries, rankings, positive_scores, MiningSettings(max_score_ratio=None))
    assert sum(e.dropped_by_threshold for e in strict) > 0
    assert all(e.dropped_by_threshold == 0 and len(e.negatives) == 3 for e in loose)
    assert all(e.skipped for e in strict if not e.negatives)
    again = mine(queries, rankings, positive_scores, MiningSettings(max_score_ratio=None))
    assert again == loose
    other = [mine(queries, rankings, positive_scores, MiningSettings(max_score_ratio=None, seed=s)) for s in (1, 2)]
    assert any(o != loose for o in other)
    # a query's sample does not depend on the other queries
    alone = mine(queries[3:4], rankings[3:4], positive_scores[3:4], MiningSettings(max_score_ratio=None))
    assert alone == loose[3:4]


@pytest.mark.slow
def test_mine_command_writes_the_set_the_run_and_a_summary_and_names_bad_queries(
    sample_pages, mining_queries, tmp_path
):
    queries = tmp_path / "queries.jsonl"
    extra = [
        json.dumps({"query_id": "unknown", "query": "structural change", "page_id": "f" * 32}),
        json.dumps({"query_id": "empty", "query": " ", "page_id": sample_pages.page_ids[0]}),
        json.dumps({"query_id": "no-positive", "query": "OLS-based CUSUM test"}),
        json.dumps(
            {
                "query_id": "labeled-no",
                "query": "Who wrote zoo?",
                "page_id": sample_pages.page_ids[0],
                "answerable": False,
            }
        ),
    ]
    queries.write_text(mining_queries.read_text() + "\n".join(extra) + "\n")
    out = tmp_path / "mined"
    result = run_cli("mine", "--pages", sample_pages.root, "--queries", queries, "--out", out)
    assert result.exit_code == 1  # two unusable lines were named; the rest was mined
    assert "not in the store" in result.stderr and "empty query" in result.stderr
    assert "2 queries have no known positive page" in result.stderr
    examples = read_mined(out)
    assert len(examples) == 10 and {e.query_id for e in examples} == {
        json.loads(line)["query_id"] for line in mining_queries.read_text().splitlines()
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["negatives"] == sum(len(e.negatives) for e in examples)
    assert summary["settings"]["rank_max"] == 10 and summary["source"]["retriever"] == "bm25"
    run, errors = read_trec(out / "run.trec")
    assert errors == [] and set(run) == {e.query_id for e in examples}
    # mining again from the written run gives the same set (positives found in it keep their scores)
    from_run = tmp_path / "from-run"
    result = invoke_cli(
        "mine", "--pages", sample_pages.root, "--queries", mining_queries, "--trec", out / "run.trec", "--out", from_run
    )
    assert result.exit_code == 0, result.stderr
    for a, b in zip(read_mined(from_run), examples, strict=True):
        if a.positive_rank is not None:
            assert [n.page_id for n in a.negatives] == [n.page_id for n in b.negatives]
        else:
            assert a.skipped and "unknown" in a.skipped


@pytest.mark.slow
def test_a_run_file_in_the_wrong_format_is_named_line_by_line(sample_pages, mining_queries, tmp_path):
    queries, _ = read_queries(mining_queries, sample_pages)
    run = tmp_path / "run.trec"
    write_trec({q.query_id: [(q.positives[0], 2.0), (sample_pages.page_ids[0], 1.0)] for q in queries}, run)
    run.write_text(run.read_text() + "q1 Q0 page 1\nq2 Q0 page one 1.0 tag\n")
    run.write_text(run.read_text() + f"{queries[0].query_id} Q0 {'f' * 32} 3 0.5 tag\n")  # not in the store
    result = run_cli(
        "mine", "--pages", sample_pages.root, "--queries", mining_queries, "--trec", run, "--out", tmp_path / "out"
    )
    assert result.exit_code == 1
    assert f"{run}:{2 * len(queries) + 1}" in result.stderr and "4 columns instead of 6" in result.stderr
    assert "is not a number" in result.stderr and "1 page ids" in result.stderr
    assert len(read_mined(tmp_path / "out")) == 10  # the good lines were mined


@pytest.mark.slow
def test_mine_verify_records_a_verdict_on_every_mined_page_and_the_false_negative_rate_by_rank(
    sample_pages, mining_queries, tmp_path
):
    """The verifier is the pipeline's positive verification (here SmolLM2 via llama.cpp: plumbing, not quality)."""
    tiny = tiny_llm()
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"max_page_chars": 500, "backends": {"generator": tiny, "verifier": tiny}}))
    # 2 of the 10 queries (1 page, up to 6 mined pages): each mined page costs SmolLM2 a page of prompt
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(mining_queries.read_text().splitlines(keepends=True)[:2]))
    out = tmp_path / "mined"
    result = invoke_cli(
        "mine", "--pages", sample_pages.root, "--queries", queries, "--out", out, "--verify", "--config", config
    )
    assert result.exit_code == 0, result.stdout
    examples = read_mined(out)
    negatives = [n for e in examples for n in e.negatives]
    assert negatives and all(n.verdict in ("answerable", "undecided", "unanswerable") for n in negatives)
    assert all(len(n.p_yes) == 2 for n in negatives)  # the two prompts of the default positive verification
    rates = json.loads((out / "summary.json").read_text())["false_negatives"]
    answerable = sum(n.verdict == "answerable" for n in negatives)
    assert rates["judged"] == len(negatives) and rates["answerable"] == answerable
    assert rates["rate"] == pytest.approx(answerable / len(negatives))
    assert sum(row["judged"] for row in rates["by_rank"].values()) == len(negatives)
    assert "likely false negatives" in result.stdout
    assert (out / "cache.sqlite").exists()
    # a rerun answers from the response cache and gives the same verdicts
    again = invoke_cli(
        "mine", "--pages", sample_pages.root, "--queries", queries, "--out", out, "--verify", "--config", config
    )
    assert again.exit_code == 0 and read_mined(out) == examples
