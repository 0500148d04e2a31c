"""The transformers backend on tiny random Qwen2-VL and Qwen2 models: the real model code, no mocks."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from PIL import Image

from docrerank.backends import (
    Capability,
    CapabilityError,
    ChatRequest,
    ChoiceRequest,
    ImagePart,
    Message,
    SamplingParams,
    TextPart,
    load_backend,
    load_backend_config,
)
from docrerank.backends.transformers_local import TransformersBackend, TransformersConfig
from docrerank.errors import DocrerankError
from tests.helpers import SCAN

pytest.importorskip("transformers", reason='needs the gpu extra: pip install "docrerank[gpu]"')

GREEDY = SamplingParams(max_tokens=6)


@pytest.fixture(scope="module")
def vlm(tiny_qwen2vl) -> TransformersBackend:
    backend = load_backend({"type": "transformers", "model": str(tiny_qwen2vl), "batch_size": 4})
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def causal(tiny_qwen2vl, tmp_path_factory) -> TransformersBackend:
    from docrerank.testing.tiny_models import build_tiny_qwen2

    folder = build_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"), tokenizer_dir=tiny_qwen2vl)
    backend = load_backend({"type": "transformers", "model": str(folder)})
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def scan() -> ImagePart:
    return ImagePart.from_path(SCAN)


@pytest.fixture(scope="module")
def small() -> ImagePart:
    image = Image.new("RGB", (90, 60), (240, 240, 240))
    image.paste((200, 30, 30), (10, 10, 50, 40))
    return ImagePart.from_pil(image)


def user(*parts) -> list[Message]:
    content = [TextPart(text=p) if isinstance(p, str) else p for p in parts]
    return [Message(role="user", content=content)]


def mixed_chats(scan: ImagePart, small: ImagePart) -> list[list[Message]]:
    """Five chats of different lengths: text only, one image, two images, a system turn."""
    return [
        user("Is this page about structural change tests? Answer yes or no.", scan),
        user("Hello."),
        [
            Message(role="system", content="Answer tersely."),
            *user("Which of the two pages has a table?", scan, small),
        ],
        user(small, "What colour is the box?"),
        user("A longer question that runs on for a while, about the F statistics and the boundaries " * 3),
    ]


@pytest.mark.slow
def test_generate_text_and_two_pages_in_order(vlm, scan, small):
    requests = [
        ChatRequest(messages=user("What is a structural change test?"), sampling=GREEDY, id="text"),
        ChatRequest(messages=user("Compare page", scan, "with page", small, "in one line."), sampling=GREEDY, id="two"),
    ]
    results = vlm.generate(requests)
    assert [r.id for r in results] == ["text", "two"]
    for result in results:
        assert result.ok, result.error
        assert result.text.strip()
        assert result.finish_reason in ("stop", "length")
        assert 1 <= result.usage.completion_tokens <= GREEDY.max_tokens
    # the page images stand for many more prompt tokens than the text-only chat has
    assert results[1].usage.prompt_tokens > results[0].usage.prompt_tokens + 40
    assert results[0].text != results[1].text


@pytest.mark.slow  # ~7 s of generation on the tiny VLM
def test_a_batch_gives_what_one_at_a_time_gives(vlm, scan, small):
    chats = mixed_chats(scan, small)
    generations = [ChatRequest(messages=m, sampling=GREEDY, id=str(i)) for i, m in enumerate(chats)]
    choices = [ChoiceRequest(messages=m, choices=("yes", "no"), id=str(i)) for i, m in enumerate(chats)]

    batched = vlm.generate(generations)  # batch_size 4: sorted by length, two batches, left padded
    alone = [vlm.generate([r])[0] for r in generations]
    assert [r.id for r in batched] == [str(i) for i in range(5)]
    assert [r.text for r in batched] == [r.text for r in alone]
    assert [r.usage for r in batched] == [r.usage for r in alone]
    assert len({r.text for r in batched}) > 1  # the outputs depend on the request

    batched_scores = vlm.score_choices(choices)
    alone_scores = [vlm.score_choices([r])[0] for r in choices]
    for together, single in zip(batched_scores, alone_scores, strict=True):
        assert together.ok and single.ok
        assert together.probs["yes"] == pytest.approx(single.probs["yes"], abs=1e-4)
        assert together.logprobs["no"] == pytest.approx(single.logprobs["no"], abs=1e-4)


@pytest.mark.parametrize("choices", [("yes", "no"), ("True", "False")])
def test_choice_probabilities_sum_to_one(vlm, scan, small, choices):
    requests = [ChoiceRequest(messages=m, choices=choices, id=f"q{i}") for i, m in enumerate(mixed_chats(scan, small))]
    results = vlm.score_choices(requests)
    assert [r.id for r in results] == [r.id for r in requests]
    for result in results:
        assert result.ok, result.error
        assert set(result.probs) == set(choices)
        assert sum(result.probs.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(0.0 < p < 1.0 for p in result.probs.values())
        assert 0.0 < result.mass <= 1.0
        assert math.log(result.mass) == pytest.approx(
            math.log(sum(math.exp(lp) for lp in result.logprobs.values())), abs=1e-9
        )


def test_next_token_logprobs_for_chosen_tokens(vlm, scan):
    ids = vlm.choice_token_ids(("True", "False"))
    wanted = [ids["True"][0], ids["False"][0]]
    chats = [user("Is it true?", scan), user("Is it false?")]
    full = vlm.next_token_logprobs(chats)
    picked = vlm.next_token_logprobs(chats, token_ids=wanted)
    for whole, part in zip(full, picked, strict=True):
        assert whole.error is None and part.error is None
        assert whole.logprobs.shape == (len(vlm.tokenizer),)
        assert float(whole.logprobs.exp().sum()) == pytest.approx(1.0, abs=1e-4)
        assert part.logprobs.tolist() == pytest.approx(whole.logprobs[wanted].tolist(), abs=1e-5)
    assert full[0].prompt_tokens > full[1].prompt_tokens


def test_an_over_long_prompt_fails_alone(vlm, scan):
    too_long = user("word " * 2100)  # over the tiny model's 2048 positions
    generations = [
        ChatRequest(messages=user("First?", scan), sampling=GREEDY, id="a"),
        ChatRequest(messages=too_long, sampling=GREEDY, id="long"),
        ChatRequest(messages=user("Third?"), sampling=GREEDY, id="c"),
    ]
    results = vlm.generate(generations)
    assert [r.id for r in results] == ["a", "long", "c"]
    assert results[0].ok and results[2].ok
    assert results[1].error is not None and "positions" in results[1].error

    scores = vlm.score_choices([ChoiceRequest(messages=r.messages, id=r.id) for r in generations])
    assert [s.ok for s in scores] == [True, False, True]
    assert "2048 positions" in scores[1].error


def test_an_image_that_does_not_decode_fails_alone(vlm):
    broken = ImagePart(data=b"\x89PNG\r\n\x1a\n not really a png", mime="image/png")
    results = vlm.score_choices(
        [
            ChoiceRequest(messages=user("Broken?", broken), id="bad"),
            ChoiceRequest(messages=user("Fine?"), id="ok"),
        ]
    )
    assert not results[0].ok and "does not decode" in results[0].error
    assert results[1].ok


def test_stop_strings_and_seeded_sampling(vlm):
    base = ChatRequest(messages=user("Tell me about breakpoints."), sampling=SamplingParams(max_tokens=8))
    full = vlm.generate([base])[0].text
    stop = full[2:4]
    assert stop
    cut = vlm.generate([base.model_copy(update={"sampling": SamplingParams(max_tokens=8, stop=(stop,))})])[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full[: full.find(stop)]

    sampled = SamplingParams(temperature=1.0, top_p=0.9, max_tokens=8, seed=7)
    one = vlm.generate([base.model_copy(update={"sampling": sampled})])[0]
    two = vlm.generate([base.model_copy(update={"sampling": sampled})])[0]
    assert one.ok and one.text == two.text  # same seed, same batch: same sample


def test_capabilities_and_identity(vlm, tiny_qwen2vl):
    assert vlm.kind == "vlm"
    assert vlm.capabilities == frozenset({Capability.IMAGES, Capability.LOGPROBS})
    assert Capability.JSON_SCHEMA not in vlm.capabilities
    assert vlm.identity() == {
        "type": "transformers",
        "model": str(Path(tiny_qwen2vl).resolve()),
        "dtype": "float32",
    }
    forced = TransformersBackend(TransformersConfig(model=str(tiny_qwen2vl), kind="causal", max_pixels=28 * 28 * 16))
    assert forced.capabilities == frozenset({Capability.LOGPROBS})
    assert forced.identity()["max_pixels"] == 28 * 28 * 16


@pytest.mark.slow
def test_a_text_model_refuses_images_and_runs_text(causal, scan):
    assert causal.kind == "causal"
    assert causal.capabilities == frozenset({Capability.LOGPROBS})
    with pytest.raises(CapabilityError, match="images"):
        causal.generate([ChatRequest(messages=user("Describe", scan))])
    with pytest.raises(CapabilityError, match="images"):
        causal.score_choices([ChoiceRequest(messages=user("Describe", scan))])

    chats = [
        user("Short?"),
        user("A somewhat longer question about the F statistic?"),
        user("Third one here."),
    ]
    batched = causal.generate([ChatRequest(messages=m, sampling=GREEDY, id=str(i)) for i, m in enumerate(chats)])
    alone = [causal.generate([ChatRequest(messages=m, sampling=GREEDY)])[0] for m in chats]
    assert [r.id for r in batched] == ["0", "1", "2"]
    assert all(r.ok and r.text for r in batched)
    assert [r.text for r in batched] == [r.text for r in alone]

    scores = causal.score_choices([ChoiceRequest(messages=m, choices=("True", "False")) for m in chats])
    singles = [causal.score_choices([ChoiceRequest(messages=m, choices=("True", "False"))])[0] for m in chats]
    for together, single in zip(scores, singles, strict=True):
        assert together.ok and sum(together.probs.values()) == pytest.approx(1.0)
        assert together.probs["True"] == pytest.approx(single.probs["True"], abs=1e-4)


def test_config_is_strict_and_registered(tiny_qwen2vl):
    config = load_backend_config({"type": "transformers", "model": str(tiny_qwen2vl), "dtype": "bfloat16"})
    assert isinstance(config, TransformersConfig) and config.batch_size == 8 and config.kind == "auto"
    with pytest.raises(ValueError, match="max_pixel"):
        load_backend_config({"type": "transformers", "model": "m", "max_pixel": 100})
    with pytest.raises(ValueError, match="min_pixels"):
        TransformersConfig(model="m", min_pixels=1000, max_pixels=10)


def test_a_missing_package_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what `import transformers` sees when absent
    backend = TransformersBackend(TransformersConfig(model="some/model", kind="causal", device="cpu"))
    with pytest.raises(DocrerankError, match=r"docrerank\[gpu\]"):
        backend.generate([ChatRequest(messages=user("Hi"))])
