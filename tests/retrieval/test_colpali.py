"""The ColPali retriever on the vignette's real page images, with a tiny random ColQwen2 on the CPU.

The model is the tiny Qwen2-VL of the backend tests (real tokenizer, random weights) loaded as colpali-engine's
ColQwen2, with its 128-dimension projection drawn once and saved, so each load is the same model: rankings
are meaningless, but every code path (image preprocessing, the model's forward pass, MaxSim, the saved
index) is the one real ColQwen2 weights take.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("colpali_engine") is None:
    pytest.skip('needs the colpali extra: pip install "docrerank[colpali]"', allow_module_level=True)

import torch

from docrerank.errors import DocrerankError
from docrerank.pages import PageStore
from docrerank.retrieval import colpali
from docrerank.retrieval.colpali import ColPaliRetriever, late_interaction, load_colpali, model_classes
from docrerank.testing.tiny_models import tiny_qwen2vl_path

QUERIES = ["structural change tests in R", "monitoring with the mefp object", "zebra giraffe"]


@pytest.fixture(scope="module")
def tiny_colqwen2(tmp_path_factory) -> Path:
    """A complete tiny ColQwen2 checkpoint in a folder whose name says nothing (found by its model_type)."""
    source = tiny_qwen2vl_path()
    torch.manual_seed(0)  # the projection to 128 dimensions is not in the Qwen2-VL checkpoint: drawn here
    model, _ = load_colpali(str(source), device="cpu")
    target = tmp_path_factory.mktemp("tiny-checkpoint")
    model.save_pretrained(target)
    for path in source.iterdir():
        if path.name not in ("config.json", "generation_config.json", "model.safetensors"):
            shutil.copy2(path, target / path.name)
    return target


def _descending(ranking) -> bool:
    scores = [score for _, score in ranking]
    return scores == sorted(scores, reverse=True) and all(math.isfinite(s) for s in scores)


@pytest.mark.slow
def test_model_classes_come_from_the_name_or_the_local_config(tiny_colqwen2):
    assert model_classes("vidore/colqwen2-v1.0") == ("ColQwen2", "ColQwen2Processor")
    assert model_classes("vidore/colqwen2.5-v0.2") == ("ColQwen2_5", "ColQwen2_5_Processor")
    assert model_classes("vidore/colpali-v1.3") == ("ColPali", "ColPaliProcessor")
    assert model_classes("vidore/colSmol-256M") == ("ColIdefics3", "ColIdefics3Processor")
    assert model_classes(str(tiny_colqwen2)) == ("ColQwen2", "ColQwen2Processor")  # config.json: qwen2_vl
    with pytest.raises(DocrerankError, match="cannot tell which ColPali model"):
        model_classes("someone/unknown-model")


def test_late_interaction_is_colpali_engines_maxsim_page_by_page(monkeypatch):
    colpali._engine()  # colpali-engine imported as the retriever imports it (no torchvision needed)
    from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor

    generator = torch.Generator().manual_seed(0)
    queries = [torch.randn(n, 16, generator=generator) for n in (3, 7, 5)]
    pages = [torch.randn(n, 16, generator=generator) for n in (11, 4, 9, 2)]
    # colpali-engine pads the pages of a batch with zero vectors, which a page scores against too, so the
    # reference takes the pages one at a time.
    reference = torch.cat(
        [BaseVisualRetrieverProcessor.score_multi_vector(queries, [page], device="cpu") for page in pages], dim=1
    )
    assert torch.allclose(late_interaction(queries, pages), reference, atol=1e-5)
    monkeypatch.setattr(colpali, "SCORE_BLOCK_FLOATS", 50)  # one query and one page a block
    assert torch.allclose(late_interaction(queries, pages), reference, atol=1e-5)
    assert late_interaction([], pages).shape == (0, 4)


@pytest.mark.slow
def test_search_ranks_the_pages_saves_its_index_and_scores_pairs_as_search_does(vignette_store, tiny_colqwen2):
    embedded = []
    retriever = ColPaliRetriever(
        vignette_store, model=str(tiny_colqwen2), batch_size=2, progress=lambda done, total: embedded.append(done)
    )
    assert retriever.settings()["class"] == "ColQwen2" and retriever.settings()["dtype"] == "float32"
    rankings = retriever.search(QUERIES, k=2)
    assert embedded == [2, 3]  # two batches
    assert len(rankings) == len(QUERIES)
    for ranking in rankings:
        assert len(ranking) == 2 and len({page for page, _ in ranking}) == 2
        assert all(page in vignette_store for page, _ in ranking) and _descending(ranking)
    every = retriever.search(QUERIES, k=10)  # k above the store's size: every page, ranked
    assert all(sorted(p for p, _ in ranking) == sorted(vignette_store.page_ids) for ranking in every)
    assert [ranking[:2] for ranking in every] == rankings

    folder = retriever.index_dir
    assert folder.parent == vignette_store.root / "derived" and folder.name.startswith("index-colpali-")
    assert {p.name for p in folder.iterdir()} == {"embeddings.npy", "offsets.npy", "page_ids.json"}
    assert not folder.with_name(folder.name + ".tmp").exists()
    assert np.load(folder / "offsets.npy")[-1] == len(np.load(folder / "embeddings.npy"))
    stamp = (folder / "embeddings.npy").stat().st_mtime_ns

    def no_pages(done, total):
        raise AssertionError("the saved index was not reused: pages were embedded again")

    again = ColPaliRetriever(vignette_store, model=str(tiny_colqwen2), batch_size=2, progress=no_pages)
    assert again.index_dir == folder
    assert again.search(QUERIES, k=2) == rankings
    assert (folder / "embeddings.npy").stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert ColPaliRetriever(vignette_store, model=str(tiny_colqwen2), dtype="bfloat16").index_dir != folder

    pairs = [(query, page, score) for query, ranking in zip(QUERIES, every, strict=True) for page, score in ranking]
    scores = again.score([q for q, _, _ in pairs], [p for _, p, _ in pairs])
    assert scores == pytest.approx([s for _, _, s in pairs], rel=1e-5, abs=1e-5)
    assert again.score(["anything"], ["not-a-page"]) == [0.0]
    assert again.search([], k=2) == [] and again.score([], []) == []


def test_scores_are_colpali_engines_own_for_one_page_at_a_time(vignette_store, tiny_colqwen2):
    model, processor = load_colpali(str(tiny_colqwen2), device="cpu")
    retriever = ColPaliRetriever(
        vignette_store, model=str(tiny_colqwen2), model_object=model, processor_object=processor
    )
    query, pages = QUERIES[1], list(vignette_store)
    with torch.inference_mode():
        query_vectors = model(**processor.process_queries([query]))
        expected = [
            processor.score_multi_vector(query_vectors, model(**processor.process_images([vignette_store.image(page)])))
            for page in pages
        ]
    got = retriever.score([query] * len(pages), [page.page_id for page in pages])
    assert got == pytest.approx([float(e) for e in expected], rel=1e-3)  # the index keeps float16 vectors


@pytest.mark.slow
def test_an_interrupted_build_resumes_from_its_saved_parts(vignette_store, tiny_colqwen2, tmp_path, monkeypatch):
    monkeypatch.setattr(colpali, "PART_PAGES", 1)
    stores = []
    for name in ("interrupted", "whole"):
        shutil.copytree(vignette_store.root, tmp_path / name, ignore=shutil.ignore_patterns("derived"))
        stores.append(PageStore.open(tmp_path / name))
    interrupted, whole = stores

    class Stop(Exception):
        pass

    def stop_in_the_second_part(done, total):  # a part is saved after its last page is embedded
        if done == 2:
            raise Stop

    retriever = ColPaliRetriever(interrupted, model=str(tiny_colqwen2), batch_size=1, progress=stop_in_the_second_part)
    with pytest.raises(Stop):
        retriever.search(QUERIES, k=3)
    folder = retriever.index_dir
    tmp = folder.with_name(folder.name + ".tmp")
    assert not folder.exists() and sorted(p.name for p in tmp.iterdir()) == ["part-00000.npz"]
    stamp = (tmp / "part-00000.npz").stat().st_mtime_ns

    seen = []
    resumed = ColPaliRetriever(
        interrupted,
        model=str(tiny_colqwen2),
        batch_size=1,
        progress=lambda done, total: seen.append((done, (tmp / "part-00000.npz").stat().st_mtime_ns)),
    )
    rankings = resumed.search(QUERIES, k=3)
    assert seen == [(1, stamp), (2, stamp), (3, stamp)]  # the saved part was read, not embedded again
    assert folder.exists() and not tmp.exists()

    fresh = ColPaliRetriever(whole, model=str(tiny_colqwen2), batch_size=1)
    assert fresh.search(QUERIES, k=3) == rankings
    for name in ("embeddings.npy", "offsets.npy"):
        assert np.array_equal(np.load(folder / name), np.load(fresh.index_dir / name))


@pytest.mark.slow
def test_retrieve_and_mine_commands_take_a_colpali_model_and_fuse_it_with_bm25(vignette_store, tiny_colqwen2, tmp_path):
    import json

    from docrerank.retrieval import read_mined, read_trec
    from tests.helpers import invoke_cli

    queries = tmp_path / "queries.jsonl"
    third = vignette_store.page_ids[2]
    queries.write_text(json.dumps({"query_id": "q", "query": QUERIES[1], "page_id": third}) + "\n")
    pages = vignette_store.root
    out = tmp_path / "run.trec"
    result = invoke_cli(
        "retrieve",
        "--pages",
        pages,
        "--queries",
        queries,
        "--out",
        out,
        "--retriever",
        "colpali",
        "--model",
        tiny_colqwen2,
        "--k",
        "3",
    )
    assert result.exit_code == 0, result.stdout
    run, errors = read_trec(out)
    assert errors == [] and sorted(p for p, _ in run["q"]) == sorted(vignette_store.page_ids)
    mined = tmp_path / "mined"
    result = invoke_cli(
        "mine",
        "--pages",
        pages,
        "--queries",
        queries,
        "--out",
        mined,
        "--retriever",
        "bm25+colpali",
        "--model",
        tiny_colqwen2,
        "--max-score-ratio",
        "0",
    )
    assert result.exit_code == 0, result.stdout
    [example] = read_mined(mined)
    assert (
        example.positive == third
        and len(example.negatives) == 2
        and third not in {n.page_id for n in example.negatives}
    )
