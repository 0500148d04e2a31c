"""bench/gpu.py, run as a lent GPU machine runs it, on the tiny Qwen2-VL and a hand-made kit (no GPU here).

What can fail without a GPU: the kit's format, the training and scoring plumbing, the figures' bookkeeping.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

pytest.importorskip("torch", reason='needs the gpu extra: pip install "docrerank[gpu]"')
pytest.importorskip("peft", reason='needs the gpu extra: pip install "docrerank[gpu]"')

ROOT = Path(__file__).resolve().parent.parent


def load_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def kit(tmp_path) -> Path:
    """A kit as `bench/gpu.py pack` writes it: a tokenizer folder, groups.jsonl and the pages' images."""
    from docrerank.testing.tiny_models import tiny_qwen2vl_path

    kit = tmp_path / "kit"
    shutil.copytree(tiny_qwen2vl_path(), kit / "tokenizer")
    (kit / "pages").mkdir()
    rows = []
    for index in range(2):
        image = Image.new("RGB", (84, 112), (250, 250, 250))
        ImageDraw.Draw(image).rectangle((10, 10 + 20 * index, 60, 40 + 20 * index), fill=(20, 40, 200))
        image.save(kit / "pages" / f"p{index}.png")
        rows.append(
            {
                "query": f"Which box is on page {index}?",
                "negative_queries": [f"Which circle is on page {index}?", "What is the F statistic?", "Who wrote it?"],
                "page_id": f"p{index}",
                "doc_id": f"d{index}",
                "text": f"page {index}: a box",
                "image": f"pages/p{index}.png",
            }
        )
    (kit / "groups.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return kit


@pytest.mark.slow
def test_the_gpu_bench_trains_and_scores_the_kits_pairs_and_writes_its_figures(kit, tmp_path):
    bench = load_bench()
    result = bench.run(kit, tmp_path / "out", tiny=True, steps=2, batch_sizes=[4], pairs=8)
    assert json.loads((tmp_path / "out" / "gpu.json").read_text()) == result
    assert result["groups"] == 2
    assert 0 < result["trainable_parameters"] < result["parameters"]  # LoRA only
    assert result["training"]["steps"] == 2 and result["training"]["pairs_per_second"] > 0
    assert [row["batch_size"] for row in result["scoring"]] == [1, 4]
    assert all(row["pairs"] == 8 and row["pairs_per_second"] > 0 for row in result["scoring"])
    assert result["scoring"][0]["speedup"] == 1.0
