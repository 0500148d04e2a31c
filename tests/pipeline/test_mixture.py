"""Training mixtures on the sample documents: a real generation run (SmolLM2 via llama.cpp, given positives),
negative pages mined for its queries, and the three recipes built from both."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from docrerank.errors import DocrerankError
from docrerank.pipeline.config import PipelineConfig
from docrerank.pipeline.export import read_selected
from docrerank.pipeline.generate import run_pipeline
from docrerank.pipeline.mixture import mix, recipe
from docrerank.retrieval import read_mined
from tests.helpers import invoke_cli, tiny_llm

pytestmark = pytest.mark.slow  # a SmolLM2 generation run over the sample pages (~2-4 min), shared by the module

TINY = tiny_llm()


@pytest.fixture(scope="module")
def generated(sample_pages, mining_queries, tmp_path_factory):
    """A generation run from the committed queries as given positives: rephrasings, free-form, property and
    rule-based negatives; thresholds loose enough for SmolLM2's candidates to reach the selection. Four of the
    ten queries (two pages, two queries each): every kind of record the recipes mix, at 40% of the model time."""
    given = tmp_path_factory.mktemp("mix") / "given.jsonl"
    given.write_text("".join(mining_queries.read_text().splitlines(keepends=True)[:4]))
    config = {
        "pages_per_shard": 4,
        "max_page_chars": 1200,
        "backends": {"generator": TINY, "verifier": TINY},
        "positives": {"given": str(given)},
        "positives_verified": {"threshold": 0.01},  # rephrasings are verified as positives
        "rephrased": {"fraction": 1.0},
        "negative_candidates": {
            "freeform": {"m": 2, "max_tokens": 200},
            "controlled": {"properties": ["number"], "per_property": 1, "max_tokens": 200},
            "rulebased": {"m": 2},
        },
        "negatives_verified": {"threshold": 0.99},
        "selected": {"k": 3},
    }
    run = tmp_path_factory.mktemp("mix") / "run"
    run_pipeline(sample_pages, PipelineConfig.model_validate(config), run)
    return run


@pytest.fixture(scope="module")
def mined(sample_pages, generated, tmp_path_factory):
    """Negative pages mined (BM25) for the run's positives and rephrasings, through the CLI."""
    out = tmp_path_factory.mktemp("mix") / "mined"
    result = invoke_cli("mine", "--pages", sample_pages.root, "--queries", generated, "--out", out)
    assert result.exit_code == 0, result.stdout
    return out


def _rows(out):
    return [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]


def _positives(run):
    return [r for r in read_selected(run) if r.kind == "positive"]


def test_mined_only_gives_every_positive_with_mined_pages_its_pages(sample_pages, generated, mined, tmp_path):
    summary = mix(sample_pages, [], [mined], "mined-only", tmp_path / "m", "jsonl")
    rows = _rows(tmp_path / "m")
    with_pages = [
        e for e in read_mined(mined) if e.negatives and e.query_id in {p.query_id for p in _positives(generated)}
    ]
    assert summary.examples == len(rows) == len(with_pages) > 0
    assert all(r["negative_kind"] == "pages" and r["negative_queries"] == [[]] for r in rows)
    by_query = {e.query: e for e in with_pages}
    for row in rows:
        example = by_query[row["query"]]
        assert row["negative_page_ids"] == [n.page_id for n in example.negatives]
        assert row["page_id"] == example.positive and row["page_id"] not in row["negative_page_ids"]
        assert row["negative_page_texts"] == [sample_pages[p].text for p in row["negative_page_ids"]]


def test_base_has_the_same_total_half_mined_half_generated_free_form(sample_pages, generated, mined, tmp_path):
    mined_only = mix(sample_pages, [], [mined], "mined-only", tmp_path / "m", "jsonl")
    summary = mix(sample_pages, [generated], [mined], "base", tmp_path / "b", "jsonl")
    rows = _rows(tmp_path / "b")
    kinds = Counter(r["negative_kind"] for r in rows)
    freeform_positives = {
        r.parent_id for r in read_selected(generated) if r.kind == "negative" and r.generator == "llm:freeform"
    }
    assert freeform_positives, "the run has no free-form negatives to mix"
    total = min(mined_only.examples, 2 * min(len(freeform_positives), mined_only.examples))
    assert len(rows) == summary.examples and len(rows) >= total - 1
    assert kinds["pages"] == round(len(rows) / 2) and kinds["queries"] == len(rows) - kinds["pages"]
    assert all(r["variant"] == "original" for r in rows)
    assert len({(r["page_id"], r["query"]) for r in rows}) == len(rows)  # each positive once
    for row in rows:
        if row["negative_kind"] == "queries":
            assert row["negative_generators"] and set(row["negative_generators"]) == {"llm:freeform"}
            assert row["negative_page_ids"] == [] and 1 <= len(row["negative_queries"][0]) <= 3
    if summary.examples < mined_only.examples:
        assert any("total cut" in note for note in summary.notes)


def test_full_adds_rephrasings_and_every_kind_of_generated_negative(sample_pages, generated, mined, tmp_path):
    base = mix(sample_pages, [generated], [mined], "base", tmp_path / "b", "jsonl")
    mix(sample_pages, [generated], [mined], "full", tmp_path / "f", "jsonl")
    rows = _rows(tmp_path / "f")
    originals = [r for r in rows if r["variant"] == "original"]
    rephrased = [r for r in rows if r["variant"] == "rephrased"]
    records = read_selected(generated)
    rephrasings = {r.text for r in records if r.kind == "rephrased"}
    assert len(originals) >= base.examples and rephrased
    assert {r["query"] for r in rephrased} <= rephrasings
    generators = Counter(g for r in rows if r["negative_kind"] == "queries" for g in r["negative_generators"])
    assert set(generators) - {"llm:freeform"}, generators  # property-controlled or rule-based edits came in
    assert all(json.loads(r["provenance"])["recipe"] == "full" for r in rows)


def test_reworded_uses_a_rephrased_positive_only_in_its_rephrasings_words(sample_pages, generated, mined, tmp_path):
    mix(sample_pages, [generated], [mined], "full", tmp_path / "f", "jsonl")
    mix(sample_pages, [generated], [mined], "reworded", tmp_path / "r", "jsonl")
    full, reworded = _rows(tmp_path / "f"), _rows(tmp_path / "r")
    records = read_selected(generated)
    texts = {r.query_id: r.text for r in records}
    have_rephrasings = {texts[r.parent_id] for r in records if r.kind == "rephrased"}
    assert any(r["variant"] == "rephrased" for r in full), "the run has no rephrasing to mix"
    # the same examples as full, less the original wording of each positive that has a rephrasing
    assert [r for r in reworded if r["variant"] == "rephrased"] == [
        {**r, "provenance": reworded[0]["provenance"]} for r in full if r["variant"] == "rephrased"
    ]
    originals = [r for r in full if r["variant"] == "original"]
    kept = [r for r in originals if r["query"] not in have_rephrasings]
    assert [r["query"] for r in reworded if r["variant"] == "original"] == [r["query"] for r in kept]
    assert len(kept) < len(originals)


def test_hf_export_has_colhnque_and_col_hndoc_columns_and_sentence_transformers_pairs(
    sample_pages, generated, mined, tmp_path
):
    datasets = pytest.importorskip("datasets")
    mix(sample_pages, [generated], [mined], "base", tmp_path / "hf", "hf")
    dataset = datasets.load_from_disk(str(tmp_path / "hf"))
    assert {"image", "positive_queries", "negative_queries", "answer", "query", "negative_images"} <= set(
        dataset.column_names
    )
    pages_row = next(r for r in dataset if r["negative_kind"] == "pages")
    assert pages_row["image"].size[0] > 100 and len(pages_row["negative_images"]) == len(pages_row["negative_page_ids"])
    provenance = json.loads((tmp_path / "hf" / "provenance.json").read_text())
    assert provenance["recipe"] == "base" and provenance["summary"]["examples"] == len(dataset)
    mix(sample_pages, [generated], [mined], "base", tmp_path / "st", "sentence-transformers")
    pairs = [json.loads(line) for line in (tmp_path / "st" / "pairs.jsonl").read_text().splitlines()]
    assert Counter(p["label"] for p in pairs)[1] == len(dataset)
    assert sum(p["label"] == 0 for p in pairs) == sum(
        len(r["negative_page_ids"]) + len(r["negative_queries"][0]) for r in dataset
    )


def test_recipes_refuse_missing_sources_and_bad_overrides(sample_pages, mined, tmp_path):
    with pytest.raises(DocrerankError, match="needs generated negatives"):
        mix(sample_pages, [], [mined], "base", tmp_path / "x", "jsonl")
    with pytest.raises(DocrerankError, match="add up to 1"):
        recipe("base", {"mined": 0.7})
    with pytest.raises(DocrerankError, match="unknown recipe"):
        recipe("half")
    assert recipe("base", {"mined": 0.25, "generated": 0.75}).generated == 0.75


def test_mix_command_reads_ratios_from_a_config(sample_pages, generated, mined, tmp_path):
    config = tmp_path / "mix.yaml"
    config.write_text("mix:\n  mined: 0.25\n  generated: 0.75\n  total: 4\n")
    out = tmp_path / "out"
    result = invoke_cli(
        "mix",
        "--pages",
        sample_pages.root,
        "--run-dir",
        generated,
        "--mined",
        mined,
        "--recipe",
        "base",
        "--config",
        config,
        "--format",
        "jsonl",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.stdout
    kinds = Counter(r["negative_kind"] for r in _rows(out))
    assert kinds == {"pages": 1, "queries": 3} or "total cut" in result.stdout
