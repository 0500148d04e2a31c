"""``docrerank verify`` and ``evaluate-verifier`` on real pages with a real (tiny) llama.cpp model.

SmolLM2-135M judges poorly; these tests check the contract (per-pair output, bad lines, the report and the
plot agreeing with the verdicts), not the quality, which bench/verify.py measures with the real defaults.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from docrerank.pages import PageStore
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.verifier_eval import precision_recall
from tests.helpers import run_cli, tiny_llm

TINY = tiny_llm()

# Page 13 of the strucchange vignette (the third page of the committed PDF) says a break was detected at
# observation #72 (December 1991) and shows the ME monitoring with bandwidth h = 1.
LABELED = [
    ("At which observation does strucchange detect the structural break in the monitoring example?", True),
    ("Which month and year does the detected structural break correspond to?", True),
    ("At which observation does strucchange detect the second structural break?", False),
    ("What bandwidth h is used for the OLS-CUSUM monitoring figure?", False),
]


@pytest.fixture(scope="module")
def store(vignette_store) -> PageStore:
    return vignette_store


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_text(yaml.safe_dump({"backends": {"generator": TINY, "verifier": TINY}, "max_page_chars": 1500}))
    return path


def _pairs_file(path: Path, page_id: str, bad_lines: bool) -> Path:
    lines = [json.dumps({"page_id": page_id, "query": q, "answerable": a, "kind": "demo"}) for q, a in LABELED]
    if bad_lines:
        lines[1:1] = [
            "{not json",
            json.dumps({"page_id": "0" * 32, "query": "Which bandwidth is used?"}),
            json.dumps({"page_id": page_id, "query": "   "}),
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_verify_writes_one_verdict_per_good_pair_and_names_each_bad_line(store, config, tmp_path):
    page_id = store.page_ids[2]
    pairs = _pairs_file(tmp_path / "pairs.jsonl", page_id, bad_lines=True)
    out = tmp_path / "verdicts.jsonl"
    result = run_cli(
        "verify", "--pages", store.root, "--pairs", pairs, "--config", config, "--out", out, "--no-progress"
    )
    assert result.exit_code == 1, result.stdout + result.stderr  # some lines failed, the rest was done
    for number, words in ((2, "json"), (3, "not in the store"), (4, "empty query")):
        assert f"pairs.jsonl:{number}" in result.stderr and words in result.stderr.lower(), result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    threshold = PipelineConfig().negatives_verified.threshold  # the config leaves it at the default
    assert [r["query"] for r in rows] == [q for q, _ in LABELED]  # input order, bad lines left out
    for row in rows:
        assert [p["template"] for p in row["prompts"]] == ["verify_a", "verify_b"]
        assert all(0 <= p["p_yes"] <= 1 and p["says_yes"] == (p["p_yes"] >= threshold) for p in row["prompts"])
        says = {p["says_yes"] for p in row["prompts"]}
        assert row["verdict"] == ("undecided" if len(says) == 2 else "answerable" if True in says else "unanswerable")
        assert row["accepted"] == (row["verdict"] == "unanswerable")  # no edited value: no evidence veto
        assert row["kind"] == "demo"  # extra input keys are carried through
    assert out.with_suffix(".cache.sqlite").exists()


@pytest.mark.slow
def test_evaluate_verifier_report_matches_its_verdicts_and_draws_the_plot(store, config, tmp_path):
    pairs = _pairs_file(tmp_path / "labeled.jsonl", store.page_ids[2], bad_lines=False)
    out = tmp_path / "eval"
    args = ("evaluate-verifier", "--pairs", pairs, "--pages", store.root, "--config", config, "--out", out)
    result = run_cli(*args, "--no-progress")
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in (out / "verdicts.jsonl").read_text().splitlines()]
    report = json.loads((out / "report.json").read_text())
    truth = [not r["answerable"] for r in rows]
    assert report["evaluated"] == len(LABELED) and report["unanswerable"] == 2
    assert report["accepted_negatives"] == precision_recall(truth, [r["accepted"] for r in rows])
    assert sum(sum(c.values()) for c in report["confusion"].values()) == len(LABELED)
    assert set(report["per_prompt"]) == {"verify_a", "verify_b"}
    assert (out / "calibration.png").read_bytes().startswith(b"\x89PNG")
    assert "accepted-negative precision" in result.stdout
    # a rerun answers from the cache and reports the same
    again = run_cli(*args, "--no-progress")
    assert again.exit_code == 0 and json.loads((out / "report.json").read_text()) == report


@pytest.mark.parametrize("expect", ["unanswerable", "answerable"])
def test_the_pipeline_asks_a_later_prompt_only_while_the_query_can_pass(store, expect):
    # The pipeline's verifier stops asking about a query once a prompt has gone against it: acceptance is
    # what every prompt would give, for fewer requests (SmolLM2's yes/no, whatever they are, decide both).
    from docrerank.backends import load_backend
    from docrerank.pipeline.records import QueryRecord
    from docrerank.pipeline.verify import Verifier, VerifySettings

    page = store.get(store.page_ids[2])
    records = [
        QueryRecord(query_id=f"q{i}", page_id=page.page_id, kind="negative", text=q, generator="given")
        for i, (q, _) in enumerate(LABELED)
    ]
    backend = load_backend(TINY)
    verifier = Verifier(backend, VerifySettings(threshold=0.5), max_page_chars=1500)
    full = verifier.judge([(page, r) for r in records], expect, every_prompt=True)
    sent = backend.stats.requests_sent
    short = verifier.judge([(page, r) for r in records], expect)
    backend.close()

    assert sent == 2 * len(records)
    assert [j.accepted for j in short] == [j.accepted for j in full]
    still_open = [j.verdict.p_yes[0] >= 0.5 if expect == "answerable" else j.verdict.p_yes[0] < 0.5 for j in full]
    assert backend.stats.requests_sent - sent == len(records) + sum(still_open)
    for judgement, open_after_first in zip(short, still_open, strict=True):
        assert len(judgement.verdict.p_yes) == 1 + open_after_first
        assert judgement.verdict.skipped == (not open_after_first)
