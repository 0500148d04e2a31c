"""One contract for every backend that runs here, each on a real model.

- ``llamacpp``: the 0.5B GGUF bundle in process.
- ``openai``: the HTTP backend against a real ``llama_cpp.server`` serving the same model.
- ``transformers``: the tiny random Qwen2-VL, so page images go through the real image code.

What a backend declares in ``capabilities`` is held to: a backend with JSON_SCHEMA must return parsed
output, one without IMAGES must refuse a page image before sending anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from docrerank.backends import (
    Backend,
    Capability,
    CapabilityError,
    ChatRequest,
    ChoiceRequest,
    ImagePart,
    Message,
    ResponseCache,
    SamplingParams,
    TextPart,
)

BACKENDS = {"llamacpp": "llamacpp_backend", "openai": "server_backend", "transformers": "vlm_backend"}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
}


@pytest.fixture(params=list(BACKENDS))
def backend(request) -> Backend:
    return request.getfixturevalue(BACKENDS[request.param])


@pytest.fixture(scope="module")
def page() -> ImagePart:
    image = Image.new("RGB", (96, 64), (245, 245, 245))
    image.paste((20, 20, 20), (8, 8, 88, 14))  # a "heading"
    image.paste((120, 120, 120), (8, 24, 70, 28))
    return ImagePart.from_pil(image)


def user(*parts: str | ImagePart) -> list[Message]:
    content = [TextPart(text=p) if isinstance(p, str) else p for p in parts]
    return [Message(role="user", content=content)]


@contextmanager
def cache_attached(backend: Backend, path: Path) -> Iterator[ResponseCache]:
    """Give the session's backend a response cache for one test (no second copy of the model)."""
    cache, saved = ResponseCache(path), backend.cache
    backend.cache = cache
    try:
        yield cache
    finally:
        backend.cache = saved
        cache.close()


@pytest.mark.slow
def test_generate_returns_text_in_order_with_the_ids(backend):
    # Prompts that want long answers, each with its own token limit: a result that landed on another
    # request's slot shows up as the wrong completion length. llamacpp runs them sorted by text.
    prompts = [
        "Write a long story about a lighthouse keeper.",
        "Explain in detail how rivers form.",
        "List twenty fruits, one per line.",
    ]
    limits = [3, 5, 7]
    requests = [
        ChatRequest(messages=user(p), sampling=SamplingParams(max_tokens=n), id=f"r{i}")
        for i, (p, n) in enumerate(zip(prompts, limits, strict=True))
    ]
    results = backend.generate(requests)

    assert [r.id for r in results] == ["r0", "r1", "r2"]
    for result, limit in zip(results, limits, strict=True):
        assert result.ok, result.error
        assert result.text.strip()
        assert not result.cached
        assert result.finish_reason in ("stop", "length")
        assert 1 <= result.usage.completion_tokens <= limit
        assert result.usage.prompt_tokens > 0
        if result.finish_reason == "length":
            assert result.usage.completion_tokens == limit
    assert sum(r.finish_reason == "length" for r in results) >= 2


def test_json_schema_requests_come_back_parsed_or_with_a_recorded_error(backend):
    request = ChatRequest(
        messages=user("What is 2+2? Reply in JSON with the key answer."),
        sampling=SamplingParams(max_tokens=24),
        json_schema=ANSWER_SCHEMA,
        id="json",
    )
    [result] = backend.generate([request])

    assert result.id == "json"
    assert (result.parsed is None) == (result.error is not None)  # never a silent None
    if Capability.JSON_SCHEMA in backend.capabilities:  # decoding follows the schema: it must parse
        assert result.ok, result.error
        assert isinstance(result.parsed, dict) and isinstance(result.parsed.get("answer"), int)
    else:  # the tiny random model writes gibberish: the failure is recorded with the raw text
        assert result.error.startswith("structured output:")
        assert "raw text kept" in result.error
        assert result.text.strip()


def test_choice_probabilities_form_a_distribution(backend):
    requests = [
        ChoiceRequest(messages=user("Is the sky blue? Answer yes or no."), id="yes-no"),
        ChoiceRequest(
            messages=user("Is 7 a prime number? Answer True or False."), choices=("True", "False"), id="true-false"
        ),
    ]
    results = backend.score_choices(requests)

    assert [r.id for r in results] == ["yes-no", "true-false"]
    for request, result in zip(requests, results, strict=True):
        assert result.ok, result.error
        assert set(result.probs) == set(request.choices) == set(result.logprobs)
        assert sum(result.probs.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(0.0 <= p <= 1.0 for p in result.probs.values())
        assert 0.0 < result.mass <= 1.0 + 1e-9


def test_page_images_go_only_to_backends_that_take_them(backend, page):
    text = ChatRequest(messages=user("Say hello."), sampling=SamplingParams(max_tokens=3), id="text")
    chat = ChatRequest(
        messages=user("What does this page show?", page), sampling=SamplingParams(max_tokens=3), id="img"
    )
    choice = ChoiceRequest(messages=user("Is this a page of a document? Answer yes or no.", page), id="img")

    if Capability.IMAGES in backend.capabilities:
        alone, with_image = backend.generate([text, chat])
        assert alone.ok and with_image.ok, (alone.error, with_image.error)
        assert with_image.usage.prompt_tokens > alone.usage.prompt_tokens  # the image became tokens
        [scores] = backend.score_choices([choice])
        assert scores.ok and sum(scores.probs.values()) == pytest.approx(1.0)
        return

    sent = backend.stats.requests_sent
    for call in (lambda: backend.generate([text, chat]), lambda: backend.score_choices([choice])):
        with pytest.raises(CapabilityError) as raised:
            call()
        message = str(raised.value)
        assert "images" in message and backend.label in message
        assert "transformers" in message and "vllm" in message  # the backends that can
    assert backend.stats.requests_sent == sent  # refused before anything was sent


def test_the_sync_wrapper_works_inside_a_running_event_loop(backend):
    generation = ChatRequest(messages=user("Say hi."), sampling=SamplingParams(max_tokens=2), id="sync")
    choice = ChoiceRequest(messages=user("Is fire hot? Answer yes or no."), id="sync-choice")

    async def from_async_code():
        asyncio.get_running_loop()  # a loop runs here, as in a notebook or an async app
        return backend.generate([generation]), backend.score_choices([choice])

    [generated], [scored] = asyncio.run(from_async_code())
    assert generated.id == "sync" and generated.ok and generated.text.strip()
    assert scored.id == "sync-choice" and scored.ok
    assert sum(scored.probs.values()) == pytest.approx(1.0)


def test_a_second_identical_batch_is_answered_by_the_cache(backend, page, tmp_path):
    generations = [
        ChatRequest(messages=user("Name a colour."), sampling=SamplingParams(max_tokens=3), id="g1"),
        ChatRequest(messages=user("Name an animal."), sampling=SamplingParams(max_tokens=3), id="g2"),
    ]
    choices = [ChoiceRequest(messages=user("Is water wet? Answer yes or no."), id="c1")]
    if Capability.IMAGES in backend.capabilities:
        generations.append(ChatRequest(messages=user("Describe", page), sampling=SamplingParams(max_tokens=3), id="g3"))
        choices.append(ChoiceRequest(messages=user("A page? yes or no", page), id="c2"))

    with cache_attached(backend, tmp_path / "cache.sqlite") as cache:
        first = backend.generate(generations) + backend.score_choices(choices)
        assert all(r.ok and not r.cached for r in first), [r.error for r in first]
        assert len(cache) == len(first)
        sent, hits = backend.stats.requests_sent, backend.stats.cache_hits

        again = backend.generate(generations) + backend.score_choices(choices)

        assert backend.stats.requests_sent == sent  # nothing went to the model
        assert backend.stats.cache_hits == hits + len(first)
        assert all(r.cached for r in again)
        assert [r.id for r in again] == [r.id for r in first]
        assert [r.model_dump(exclude={"cached"}) for r in again] == [r.model_dump(exclude={"cached"}) for r in first]
