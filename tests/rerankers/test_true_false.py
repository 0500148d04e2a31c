"""The True/False reranker on tiny random Qwen2-VL and Qwen2 models: the real model code, no mocks.

Scores of random weights mean nothing; what is checked is the plumbing: batching and order, the shared
margin function, the prompt, LoRA placement, saving and loading adapters, and the page each model reads.
"""

from __future__ import annotations

import re
import shutil

import pytest
from PIL import Image, ImageDraw

from docrerank.backends.messages import ImagePart
from docrerank.errors import DocrerankError
from docrerank.pages.content import PageContent
from docrerank.rerankers import Reranker, TrueFalseReranker
from docrerank.rerankers.base import UNSCORED
from docrerank.rerankers.true_false import LORA_TARGETS

torch = pytest.importorskip("torch", reason='needs the gpu extra: pip install "docrerank[gpu]"')
pytest.importorskip("transformers", reason='needs the gpu extra: pip install "docrerank[gpu]"')
pytest.importorskip("peft", reason='needs the gpu extra: pip install "docrerank[gpu]"')

PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(scope="module")
def vlm_path():
    from docrerank.testing.tiny_models import tiny_qwen2vl_path

    return tiny_qwen2vl_path()


@pytest.fixture(scope="module")
def vlm(vlm_path) -> TrueFalseReranker:
    return TrueFalseReranker(model=str(vlm_path), batch_size=2)


@pytest.fixture(scope="module")
def causal(vlm_path, tmp_path_factory) -> TrueFalseReranker:
    from docrerank.testing.tiny_models import build_tiny_qwen2

    folder = build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"), tokenizer_dir=vlm_path)
    return TrueFalseReranker(model=str(folder), batch_size=2, max_page_chars=200)


def page_image(shade: int, size: tuple[int, int] = (56, 84)) -> ImagePart:
    """A small page: a white sheet with a coloured box and a line whose place depends on ``shade``."""
    image = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.rectangle((4 + shade % 20, 6, 30 + shade % 20, 40), fill=(shade, 40, 255 - shade))
    draw.line((0, 50 + shade % 30, size[0], 60), fill=(0, 0, 0), width=3)
    return ImagePart.from_pil(image)


@pytest.fixture(scope="module")
def pages() -> list[PageContent]:
    sizes = [(56, 84), (112, 84), (56, 56), (84, 112), (56, 84)]  # different image token counts
    return [
        PageContent(text=f"page {i}", image=page_image(40 * i, size), page_id=f"p{i}") for i, size in enumerate(sizes)
    ]


@pytest.fixture(scope="module")
def pairs(pages) -> list[tuple[str, PageContent]]:
    queries = [
        "Which test detects the break?",
        "What?",
        "Where does the manual describe the boundaries of the empirical fluctuation process, and how wide are they?",
        "Is the F statistic shown?",
        "What is on this page?",
    ]
    return list(zip(queries, pages, strict=True))


@pytest.mark.slow
def test_a_batch_gives_what_one_pair_at_a_time_gives_in_input_order(vlm, pairs):
    batched = vlm.score(pairs)  # batch_size 2: sorted by length into three batches, left padded
    alone = [vlm.score([pair])[0] for pair in pairs]
    assert batched == pytest.approx(alone, abs=1e-5)
    assert len({round(s, 4) for s in batched}) == len(pairs)  # distinct, so an order mix-up shows
    order = [3, 0, 4, 2, 1]
    assert vlm.score([pairs[i] for i in order]) == pytest.approx([batched[i] for i in order], abs=1e-5)
    assert vlm.score([]) == []


def test_scores_are_the_sigmoid_of_the_shared_margins_and_read_the_image(vlm, pairs, pages):
    scores = vlm.score(pairs)
    assert all(0.0 < s < 1.0 for s in scores)
    margins = vlm.margins(vlm.encode(pairs))  # the function training calls: gradients on
    assert margins.shape == (len(pairs),) and margins.requires_grad
    assert torch.sigmoid(margins).tolist() == pytest.approx(scores, abs=1e-5)
    # P(True) of the two-way choice, from the model's full next-token logits
    inputs = vlm.encode(pairs[:1])
    with torch.no_grad():
        logits = vlm.model(**inputs, use_cache=False).logits[0, -1]
    two = torch.softmax(logits[vlm.backend.tokenizer.convert_tokens_to_ids(["True", "False"])], dim=0)
    assert float(two[0]) == pytest.approx(scores[0], abs=1e-5)
    query = pairs[0][0]
    first, second = vlm.score([(query, pages[0]), (query, pages[4])])  # same size, other drawing
    assert first != pytest.approx(second, abs=1e-4)


def test_the_prompt_shows_the_image_then_monoqwens_question(vlm, pairs):
    tokenizer = vlm.backend.tokenizer
    inputs = vlm.encode(pairs[:2])
    row = inputs["input_ids"][1][inputs["attention_mask"][1].bool()].tolist()  # padding dropped
    text = tokenizer.decode(row)
    question = (
        "<|vision_end|>Assert the relevance of the previous image document to the following query, answer True or "
        "False. The query is: What?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert text.startswith("<|im_start|>system\n") and text.endswith(question)
    assert text.index("<|vision_start|><|image_pad|>") < text.index("Assert the relevance")
    assert int(inputs["mm_token_type_ids"][1].sum()) == row.count(tokenizer.convert_tokens_to_ids("<|image_pad|>"))
    assert (vlm.true_id, vlm.false_id) == tuple(tokenizer.convert_tokens_to_ids(["True", "False"]))


def test_lora_goes_on_the_language_models_projections_only(vlm_path, pairs):
    from peft.tuners.lora import LoraLayer

    reranker = TrueFalseReranker(model=str(vlm_path))
    model = reranker.add_lora(r=4, alpha=8)
    assert reranker.has_lora and reranker.model is model
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    pattern = re.compile(r".*\.language_model\.layers\.\d+\.(self_attn|mlp)\.(\w+)\.lora_[AB]\.default\.weight")
    assert trainable and all(pattern.fullmatch(name) for name in trainable), trainable
    assert {pattern.fullmatch(name).group(2) for name in trainable} == PROJECTIONS
    assert len(trainable) == 2 * len(PROJECTIONS) * 2  # two layers, A and B
    wrapped = [name for name, module in model.named_modules() if isinstance(module, LoraLayer)]
    assert wrapped and not [name for name in wrapped if "visual" in name]
    visual = [p for name, p in model.named_parameters() if ".visual." in name]
    assert visual and not any(p.requires_grad for p in visual)
    # Qwen2.5-VL's vision MLP has gate/up/down_proj too: the target never takes a vision module
    assert re.fullmatch(LORA_TARGETS, "model.visual.blocks.0.mlp.gate_proj") is None
    assert re.fullmatch(LORA_TARGETS, "model.language_model.layers.3.mlp.gate_proj")
    assert re.fullmatch(LORA_TARGETS, "model.layers.3.self_attn.q_proj")  # a text-only Qwen2
    with pytest.raises(DocrerankError, match="already has LoRA"):
        reranker.add_lora()

    model.train()
    reranker.margins(reranker.encode(pairs[:3])).sum().backward()  # the training path, through peft
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    assert any(float(g.abs().sum()) > 0 for name, g in grads.items() if "lora_B" in name)
    reranker.score(pairs[:1])
    assert model.training  # scoring mid-training leaves train mode on


@pytest.mark.slow
def test_a_saved_adapter_loads_with_the_same_scores(vlm_path, vlm, pairs, tmp_path):
    reranker = TrueFalseReranker(model=str(vlm_path), lora=True, batch_size=3)
    assert reranker.score(pairs) == pytest.approx(vlm.score(pairs), abs=1e-5)  # lora_B starts at zero
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in reranker.model.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    trained = reranker.score(pairs)
    assert trained != pytest.approx(vlm.score(pairs), abs=1e-3)

    reranker.save(tmp_path / "saved")
    saved = {p.name for p in (tmp_path / "saved").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "reranker.json", "tokenizer.json"} <= saved
    assert "model.safetensors" not in saved  # the adapter only; the base is named in reranker.json
    assert "preprocessor_config.json" in saved
    loaded = Reranker.load(tmp_path / "saved")
    assert isinstance(loaded, TrueFalseReranker) and loaded.has_lora and loaded.uses == {"image"}
    assert loaded.backend.config.batch_size == 3
    assert loaded.score(pairs) == pytest.approx(trained, abs=1e-5)

    # a published adapter is its two files: the base comes from adapter_config.json
    published = tmp_path / "published"
    published.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy2(tmp_path / "saved" / name, published / name)
    from_adapter = TrueFalseReranker(adapter=str(published), batch_size=3)
    assert from_adapter.base_model == str(vlm_path.resolve())
    assert from_adapter.score(pairs) == pytest.approx(trained, abs=1e-5)
    with pytest.raises(DocrerankError, match="adapter_config.json"):
        TrueFalseReranker(adapter=str(tmp_path))


@pytest.mark.slow
def test_a_model_without_lora_saves_whole(vlm, pairs, tmp_path):
    vlm.save(tmp_path / "whole")
    assert (tmp_path / "whole" / "model.safetensors").is_file()
    loaded = Reranker.load(tmp_path / "whole")
    assert isinstance(loaded, TrueFalseReranker) and not loaded.has_lora
    assert loaded.score(pairs[:2]) == pytest.approx(vlm.score(pairs[:2]), abs=1e-5)


@pytest.mark.slow
def test_a_causal_lm_reads_the_page_text(causal, vignette_store):
    assert causal.uses == {"text"} and not causal.is_vlm
    page = vignette_store[vignette_store.page_ids[0]]
    pairs = [
        ("What does strucchange test?", page),  # a store Page: its text
        ("What does strucchange test?", PageContent(text="Tests for structural change in regressions.")),
        ("Is it about xts?", "Time series in R."),
        ("A much longer question about the boundaries of the fluctuation process " * 2, "Short page."),
    ]
    scores = causal.score(pairs)
    assert all(0.0 < s < 1.0 for s in scores) and len({round(s, 4) for s in scores}) == len(pairs)
    assert scores == pytest.approx([causal.score([pair])[0] for pair in pairs], abs=1e-5)
    assert torch.sigmoid(causal.margins(causal.encode(pairs))).tolist() == pytest.approx(scores, abs=1e-5)
    text = causal.backend.tokenizer.decode(causal.encode(pairs[2:3])["input_ids"][0])
    assert "Time series in R.\nAssert the relevance of the previous document to the following query" in text
    # the page text is cut at max_page_chars (200): what lies beyond it changes nothing
    head = "word " * 45
    same = causal.score([("q", head + "tail " * 10), ("q", head + "other " * 30)])
    assert same[0] == pytest.approx(same[1], abs=1e-6)
    # a page without text is that pair's failure, the others are scored
    results = causal.score_results([("Is it about xts?", " "), pairs[2]])
    assert [r.ok for r in results] == [False, True] and "has no text" in results[0].error
    assert results[1].score == pytest.approx(scores[2], abs=1e-5)


def test_a_vlm_needs_the_page_image(vlm_path, vlm, vignette_store, pairs):
    # scoring: a page without an image is that pair's failure (ranked last, with why); the others are scored
    without = [("q", PageContent(text="text only", page_id="p-no-image")), ("q", "a page as text")]
    results = vlm.score_results([without[0], pairs[0], without[1]])
    assert [r.ok for r in results] == [False, True, False] and results[0].score == results[2].score == UNSCORED
    assert "page p-no-image has no image" in results[0].error and "has no image" in results[2].error
    assert results[1].score == pytest.approx(vlm.score([pairs[0]])[0], abs=1e-5)
    assert vlm.score(without) == [UNSCORED, UNSCORED]
    # training inputs: an error
    page = vignette_store[vignette_store.page_ids[0]]
    with pytest.raises(DocrerankError, match=f"page {page.page_id} has no image.*store="):
        vlm.encode([("q", page)])
    with_store = TrueFalseReranker(model=str(vlm_path), store=vignette_store)
    direct = PageContent.from_page(page, vignette_store, image=True)
    assert with_store.score([("q", page)]) == pytest.approx(vlm.score([("q", direct)]), abs=1e-6)


def test_the_2b_architecture_is_qwen2_vl_2bs(vlm_path):
    """bench/gpu.py times the paper's reranker on this architecture with random weights: it must be the
    published model's size (a mistyped width or depth would time another model)."""
    from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration

    from docrerank.testing.tiny_models import QWEN2VL_2B, qwen2vl_config

    config = qwen2vl_config(QWEN2VL_2B, AutoTokenizer.from_pretrained(vlm_path))
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) == 2_208_985_600  # Qwen2-VL-2B-Instruct's safetensors
