"""The generation pipeline end to end, on real pages with a real (tiny) llama.cpp model.

SmolLM2-135M writes poor questions, so the verification thresholds are set so that its candidates flow
through every stage (positives judged answerable at P(yes) >= 0.01, negatives unanswerable below 0.99):
these tests check the plumbing (stages, run directory, resume, fingerprints, records), not the quality.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
import yaml

from docrerank.errors import SettingsMismatchError
from docrerank.pages import PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.filters import page_word_share
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.records import QueryRecord, Rejection
from docrerank.pipeline.stages import STAGES
from docrerank.pipeline.stages.rephrased import least_copied
from tests.helpers import invoke_cli, tiny_llm

TINY = tiny_llm()


def _config(**overrides) -> dict:
    config = {
        "pages_per_shard": 1,
        "max_page_chars": 1200,
        "backends": {"generator": TINY, "verifier": TINY},
        "positives": {"n": 2, "max_tokens": 160},
        "positives_verified": {"threshold": 0.01},
        "rephrased": {"fraction": 1.0},
        "negative_candidates": {
            "freeform": {"m": 2, "max_tokens": 200},
            "controlled": {"properties": ["number"], "per_property": 1, "max_tokens": 200},
            "rulebased": {"m": 2},
        },
        "negatives_verified": {"threshold": 0.99},
        "selected": {"k": 2},
        "filters": {"answer_support": 0},  # SmolLM2's answers are made up (numbers its page never gives): wiring
    }
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


@pytest.fixture(scope="module")
def store(vignette_store) -> PageStore:
    return vignette_store


# finished_run: the real run of _config() over the 3 pages, made once per session (tests/pipeline/conftest.py)


def _records(run: Path, stage: str) -> list[QueryRecord]:
    return [
        QueryRecord.model_validate_json(line)
        for path in sorted((run / "stages" / stage).glob("shard-*.jsonl"))
        if not path.name.endswith(".rejected.jsonl")
        for line in path.read_text().splitlines()
    ]


@pytest.mark.slow
def test_every_stage_writes_every_shard_with_a_marker(finished_run, store):
    for stage in STAGES:
        folder = finished_run / "stages" / stage
        assert len(list(folder.glob("*.done"))) == len(store), stage
        assert len(list(folder.glob("*.rejected.jsonl"))) == len(store), stage
    assert (finished_run / "config.yaml").is_file()
    assert set(json.loads((finished_run / "fingerprints.json").read_text())) == set(STAGES)


@pytest.mark.slow
def test_final_records_link_negatives_to_kept_positives(finished_run):
    selected = _records(finished_run, "selected")
    positives = {r.query_id: r for r in selected if r.kind == "positive"}
    negatives = [r for r in selected if r.kind == "negative"]
    assert positives, "no positive survived: the thresholds of the test config should let them through"
    assert negatives
    for negative in negatives:
        assert negative.parent_id in positives
        assert negative.page_id == positives[negative.parent_id].page_id
        assert negative.verdict is not None and negative.verdict.unanswerable
        assert negative.text != positives[negative.parent_id].text
    per_positive = Counter(n.parent_id for n in negatives)
    assert max(per_positive.values()) <= 2  # selection k
    for positive in positives.values():
        assert positive.verdict is not None and positive.verdict.answerable
    generators = {n.generator.split(":")[0] for n in negatives}
    assert "llm" in generators or "rule" in generators


@pytest.mark.slow
def test_rejections_keep_the_stage_and_a_reason(finished_run):
    for stage in STAGES:
        for path in (finished_run / "stages" / stage).glob("*.rejected.jsonl"):
            for line in path.read_text().splitlines():
                rejection = Rejection.model_validate_json(line)
                assert rejection.stage == stage
                assert rejection.reason


@pytest.mark.slow
def test_stats_count_each_stage(finished_run, capsys):
    from docrerank.cli.stats import print_stats

    stats = json.loads((finished_run / "stats.json").read_text())
    assert set(stats["stages"]) == set(STAGES)
    assert stats["stages"]["selected"]["kept"] == len(_records(finished_run, "selected"))
    assert stats["verifier_agreement"]["positives_verified"]["pairs"] > 0
    assert stats["backends"]["generator"]["requests_sent"] > 0
    # the profile: where this run's requests went, stage by stage, and per page
    profile = stats["profile"]
    backend = stats["backends"]["generator"]  # generator and verifier share one SmolLM2
    assert sum(cost["requests_sent"] for cost in profile.values()) == backend["requests_sent"]
    assert sum(cost["completion_tokens"] for cost in profile.values()) == backend["completion_tokens"]
    assert profile["positives"]["completion_tokens"] > 0 and profile["selected"]["requests_sent"] == 0
    pages = stats["pages_run"]
    assert pages > 0 and profile["positives"]["per_page"]["requests_sent"] == round(
        profile["positives"]["requests_sent"] / pages, 2
    )
    print_stats(stats)  # the CLI's summary says where the time went, per page
    assert f"per page ({stats['pages_per_hour']} pages/hour): positives " in capsys.readouterr().out


@pytest.mark.slow
def test_rerun_sends_no_request_and_changes_nothing(finished_run, store):
    before = {p: p.read_bytes() for p in (finished_run / "stages").rglob("*.jsonl")}
    run_pipeline(store, PipelineConfig.model_validate(_config()), finished_run)
    stats = json.loads((finished_run / "stats.json").read_text())
    assert all(b["requests_sent"] == 0 for b in stats["backends"].values())
    assert stats["pages_run"] == 0 and stats["profile"] == {}  # every shard resumed: nothing ran
    assert {p: p.read_bytes() for p in (finished_run / "stages").rglob("*.jsonl")} == before


@pytest.mark.slow
def test_changed_settings_stop_the_run_unless_forced(finished_run, store, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)  # a run finished with k=2 (a copy: the session's run stays as it is)
    changed = PipelineConfig.model_validate(_config(selected={"k": 1}))
    with pytest.raises(SettingsMismatchError, match="selected"):
        run_pipeline(store, changed, run)
    run_pipeline(store, changed, run, force=True)
    per_positive = Counter(r.parent_id for r in _records(run, "selected") if r.kind == "negative")
    verified = Counter(r.parent_id for r in _records(run, "negatives_verified") if r.kind == "negative")
    assert verified, "no negative reached selection: the test cannot see k change"
    assert per_positive == {parent: min(1, n) for parent, n in verified.items()}
    stats = json.loads((run / "stats.json").read_text())
    assert stats["backends"]["generator"]["requests_sent"] == 0  # only selection was redone: it asks no model


@pytest.mark.slow
def test_rephrasing_candidates_ask_new_seeds_and_keep_the_first_request(finished_run, store, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)  # made with one candidate: the setting changes the stage's fingerprint
    changed = PipelineConfig.model_validate(_config(rephrased={"candidates": 3}))
    with pytest.raises(SettingsMismatchError, match="rephrased"):
        run_pipeline(store, changed, run)
    run_pipeline(store, changed, run, force=True)
    positives = [r for r in _records(run, "positives_verified") if r.kind == "positive"]
    stats = json.loads((run / "stats.json").read_text())
    # the first candidate is the request the run asked before (cached): only the two new seeds go to the model
    assert stats["backends"]["generator"]["requests_sent"] == 2 * len(positives)


def test_the_wording_that_copies_least_of_the_page_is_kept():
    page = "Survival curves of the renal patients, plotted by day (Figure 2)."
    wordings = [
        QueryRecord(query_id=f"r{i}", page_id="p", kind="rephrased", text=text, parent_id="q", generator="llm")
        for i, text in enumerate(
            [
                "How are the survival curves of the renal patients plotted?",  # 1.0
                "Which drawing shows how long kidney patients live?",  # 1 of 6 on the page
                "Which figure plots how long kidney patients survive?",  # 2 of 6
            ]
        )
    ]
    kept, passed_over = least_copied(wordings, page)
    assert kept.query_id == "r1"
    assert [(r.record.query_id, r.reason) for r in passed_over] == [
        ("r0", "rephrasing shares 1.00 of its words with the page; the one kept 0.17"),
        ("r2", "rephrasing shares 0.33 of its words with the page; the one kept 0.17"),
    ]


def test_page_word_share_counts_the_questions_content_words_on_the_page():
    page = "The survival curves of the renal patients are plotted by day."
    assert page_word_share("How are the survival curves of renal patients plotted?", page) == 1.0
    assert page_word_share("Which drawing shows kidney sufferers' outcomes over time?", page) == 0.0
    assert page_word_share("What do the curves show for kidney patients?", page) == pytest.approx(2 / 4)


# A run killed with SIGKILL and resumed: tests/reliability/test_crash_resume.py (fake server and SmolLM2).


@pytest.mark.parametrize(
    ("old", "new", "text", "problem"),
    [
        ("2021", "2019", "What was the revenue in 2019?", None),
        ("2021", "2021", "What was the revenue in 2021?", "equals the old one"),
        ("2020", "2019", "What was the revenue in 2019?", "old value is not in the positive"),
        ("2021", "2019", "What was the revenue in 2018?", "new value is not in the edited query"),
        ("", "2019", "What was the revenue in 2019?", "no old or new value"),
    ],
)
def test_controlled_edits_must_change_the_named_value(old, new, text, problem):
    from docrerank.pipeline.stages.negative_candidates import controlled_edit_problem

    positive = QueryRecord(
        query_id="p", page_id="x", kind="positive", text="What was the revenue in 2021?", generator="given"
    )
    edit = QueryRecord(
        query_id="n",
        page_id="x",
        kind="negative",
        text=text,
        parent_id="p",
        generator="llm:controlled",
        property="date",
        changed_from=old or None,
        changed_to=new,
    )
    found = controlled_edit_problem(positive, edit)
    assert (found is None) if problem is None else (problem in found)


@pytest.mark.slow
def test_given_positives_start_the_run_at_negative_generation(store, tmp_path):
    page = store.get(store.page_ids[1])
    given = tmp_path / "positives.jsonl"
    given.write_text(
        "\n".join(
            [
                json.dumps({"page_id": page.page_id, "query": "What does Figure 1 show for 1990?", "answer": "income"}),
                json.dumps({"page_id": "no-such-page", "query": "What is this?"}),
                json.dumps({"page_id": page.page_id, "query": "  "}),
                "not json",
            ]
        )
    )
    config = _config(
        positives={"given": str(given)},
        negative_candidates={"controlled": {"enabled": False}},
        rephrased={"enabled": False},
    )
    run = tmp_path / "run"
    run_pipeline(store, PipelineConfig.model_validate(config), run)
    positives = [r for r in _records(run, "positives_verified") if r.kind == "positive"]
    assert [(p.page_id, p.text, p.generator, p.verdict) for p in positives] == [
        (page.page_id, "What does Figure 1 show for 1990?", "given", None)
    ]
    assert len(list((run / "stages" / "positives").glob("*.done"))) == 1  # only the page with a given positive
    reasons = [r["reason"] for r in json.loads((run / "given_positives_rejected.json").read_text())]
    assert len(reasons) == 3
    assert any("not in the store" in r for r in reasons) and any("empty query" in r for r in reasons)
    stats = json.loads((run / "stats.json").read_text())
    assert (
        stats["stages"]["negative_candidates"]["kept_by_kind"].get("negative", 0)
        + stats["stages"]["negative_candidates"]["rejected"]
        > 0
    )
    selected = _records(run, "selected")
    assert all(r.parent_id == positives[0].query_id for r in selected if r.kind == "negative")


def test_specific_positives_are_kept_before_more_confident_vague_ones():
    from docrerank.pipeline.records import Verdict, query_id
    from docrerank.pipeline.rulebased import EntityPool
    from docrerank.pipeline.stages.positives_verified import rank_positives

    def positive(text: str, p: float) -> QueryRecord:
        verdict = Verdict(p_yes=[p, p], answerable=True, unanswerable=False, agree=True)
        return QueryRecord(
            query_id=query_id("pg", "positive", text),
            page_id="pg",
            kind="positive",
            text=text,
            generator="llm:positive",
            verdict=verdict,
        )

    vague = positive("What was the cumulative hazard for the data set?", 0.8)
    specific = positive("What was the cumulative hazard at 500 days?", 0.6)
    page = "The cumulative hazard rises to 2.7 at 500 days and to 4 at 560 days."
    pool = EntityPool.from_texts([page])
    assert rank_positives([vague, specific], page, pool, "specific") == [specific, vague]
    assert rank_positives([vague, specific], page, pool, "confident") == [vague, specific]


def _cached_answers(cache: Path) -> int:
    with sqlite3.connect(cache) as db:
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


@pytest.mark.slow
def test_verify_command_is_the_pipelines_verification_stage(finished_run, store, tmp_path):
    """``docrerank verify`` on the run's own negatives, with the run's config and cache, gives the verdicts
    the run recorded, from cached answers only (the same requests: prompts, page cut, backend, threshold)."""
    kept = [r for r in _records(finished_run, "negatives_verified") if r.kind == "negative"]
    rejected = [
        Rejection.model_validate_json(line).record
        for path in sorted((finished_run / "stages" / "negatives_verified").glob("*.rejected.jsonl"))
        for line in path.read_text().splitlines()
    ]
    negatives = kept + [r for r in rejected if r is not None and r.verdict is not None]
    assert negatives
    pairs = tmp_path / "pairs.jsonl"
    lines = [
        {
            "id": r.query_id,
            "page_id": r.page_id,
            "query": r.text,
            "changed_from": r.changed_from,
            "changed_to": r.changed_to,
        }
        for r in negatives
    ]
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config()))
    out = tmp_path / "verdicts.jsonl"
    cache = finished_run / "cache.sqlite"
    answers_before = _cached_answers(cache)

    result = invoke_cli(
        "verify",
        "--pages",
        store.root,
        "--pairs",
        pairs,
        "--config",
        config,
        "--out",
        out,
        "--cache",
        cache,
        "--no-progress",
    )
    assert result.exit_code == 0, result.stdout
    assert _cached_answers(cache) == answers_before  # nothing new was asked
    results = {row["id"]: row for row in map(json.loads, out.read_text().splitlines())}
    kept_ids = {r.query_id for r in kept}
    for record in negatives:
        row = results[record.query_id]
        assert [p["p_yes"] for p in row["prompts"]] == record.verdict.p_yes
        assert [p["template"] for p in row["prompts"]] == ["verify_a", "verify_b"]
        assert row["accepted"] == (record.query_id in kept_ids)
        assert (row["evidence"] is not None) == bool(record.changed_to)
