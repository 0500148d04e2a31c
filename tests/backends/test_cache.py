"""The response cache: what it answers, what it keeps out, what its keys tell apart, and many writers.

The end-to-end tests count requests at the FAKE server, so a request the cache should have answered
cannot go unnoticed; the key tests use the backends' own identities and the requests' cache payloads,
which is all ``Backend`` hashes.
"""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest
from PIL import Image

from docrerank.backends import (
    ChatRequest,
    ChoiceRequest,
    ImagePart,
    Message,
    ResponseCache,
    SamplingParams,
    TextPart,
    load_backend,
)
from docrerank.backends.cache import cache_key
from docrerank.backends.llamacpp import LlamaCppBackend, LlamaCppConfig
from docrerank.backends.openai_http import OpenAIBackend, OpenAIConfig
from docrerank.testing.fake_server import FakeOpenAIServer

pytestmark = pytest.mark.timeout(60)


def http_backend(server: FakeOpenAIServer, cache) -> OpenAIBackend:
    return load_backend(
        {"type": "openai", "base_url": server.url, "model": "fake", "max_retries": 0, "json_mode": "none"},
        cache=cache,
    )


def chat(text: str, id: str | None = None, **fields) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], id=id, **fields)


def test_a_second_identical_run_sends_nothing(tmp_path):
    path = tmp_path / "cache.sqlite"
    generations = [chat("one", id="a"), chat("two", id="b")]
    choices = [ChoiceRequest(messages=[Message(role="user", content="three?")], id="c")]
    with FakeOpenAIServer(text="answer") as server:
        first = http_backend(server, path)
        before = first.generate(generations) + first.score_choices(choices)
        assert server.log.requests == 3

        rerun = http_backend(server, path)  # a new run: new backend, same cache file
        renamed = [r.model_copy(update={"id": f"new-{r.id}"}) for r in generations]
        after = rerun.generate(renamed) + rerun.score_choices(choices)

    assert server.log.requests == 3
    assert rerun.stats.requests_sent == 0 and rerun.stats.cache_hits == 3
    assert [r.id for r in after] == ["new-a", "new-b", "c"]  # the id is the caller's, not the cache's
    assert all(r.cached for r in after) and not any(r.cached for r in before)
    assert [r.model_dump(exclude={"cached", "id"}) for r in after] == [
        r.model_dump(exclude={"cached", "id"}) for r in before
    ]


def test_identical_requests_in_one_batch_are_sent_once(tmp_path):
    requests = [chat("same", id="x"), chat("other", id="o"), chat("same", id="y"), chat("same", id="z")]
    with FakeOpenAIServer() as server:
        backend = http_backend(server, None)  # de-duplication needs no cache
        results = backend.generate(requests)
    assert server.log.requests == 2
    assert backend.stats.requests_sent == 2
    assert [r.id for r in results] == ["x", "o", "y", "z"]
    assert all(r.ok for r in results)
    results[0].text = "changed"  # each caller gets its own copy
    assert results[2].text == results[3].text == "ok"


def test_failed_results_are_not_cached_and_a_rerun_retries_them(tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    requests = [chat("fails first", id="f"), chat("fine", id="g")]
    # max_retries 0, concurrency 16: the first request to arrive fails, whichever it is.
    with FakeOpenAIServer(script=["500", "ok"]) as server:
        backend = http_backend(server, cache)
        first = backend.generate(requests)
        assert sorted(r.ok for r in first) == [False, True]
        assert len(cache) == 1  # only the success
        assert server.log.requests == 2

        second = backend.generate(requests)  # the failure is sent again, the success comes from the cache
        assert server.log.requests == 3
        assert all(r.ok for r in second)
        assert [r.cached for r in second] == [r.ok for r in first]

        third = backend.generate(requests)
    assert server.log.requests == 3
    assert all(r.cached for r in third) and len(cache) == 2


def _write_entries(path: str, writer: int, count: int, start_together) -> None:
    cache = ResponseCache(path)
    start_together.wait(30)  # every process has imported and opened the file: now they all write
    for start in range(0, count, 5):  # many small transactions, interleaved with the other writers
        cache.put_many([(f"w{writer}-{i}", "generate", {"writer": writer, "i": i}) for i in range(start, start + 5)])
        cache.get_many([f"w{(writer + 1) % 4}-{start}"])
    cache.close()


@pytest.mark.slow
def test_concurrent_writer_processes_do_not_corrupt_the_cache(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    context = multiprocessing.get_context("spawn")
    start_together = context.Barrier(4)
    workers = [context.Process(target=_write_entries, args=(path, w, 200, start_together)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]

    cache = ResponseCache(path)
    keys = [f"w{w}-{i}" for w in range(4) for i in range(200)]
    found = cache.get_many(keys)
    assert len(cache) == 800 and len(found) == 800
    assert all(found[f"w{w}-{i}"] == {"writer": w, "i": i} for w in range(4) for i in range(200))
    cache.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_cache_survives_pickling_by_path(tmp_path):
    import pickle

    cache = ResponseCache(tmp_path / "c.sqlite")
    cache.put_many([("k", "generate", {"text": "v"})])
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.get_many(["k", "missing"]) == {"k": {"text": "v"}}
    assert (copy.hits, copy.misses) == (1, 1)


# -- what the keys tell apart -----------------------------------------------------------------------------


def _page(shade: int) -> ImagePart:
    image = Image.new("RGB", (32, 32), (255, 255, 255))
    image.putpixel((5, 5), (shade, shade, shade))
    return ImagePart.from_pil(image)


def _key(request, backend=None, operation: str = "generate") -> str:
    backend = backend or OpenAIBackend(OpenAIConfig(model="model-a"))
    return cache_key(backend.identity(), operation, request.cache_payload())


def test_keys_ignore_the_request_id_and_nothing_else():
    base = chat("Is this relevant?", id="one")
    key = _key(base)

    assert _key(base.model_copy(update={"id": "two"})) == key
    assert _key(chat("Is this relevant?")) == key
    different = {
        "text": chat("Is this relevant!"),
        "role": ChatRequest(messages=[Message(role="system", content="Is this relevant?")]),
        "temperature": chat("Is this relevant?", sampling=SamplingParams(temperature=0.7)),
        "max_tokens": chat("Is this relevant?", sampling=SamplingParams(max_tokens=8)),
        "seed": chat("Is this relevant?", sampling=SamplingParams(seed=1)),
        "stop": chat("Is this relevant?", sampling=SamplingParams(stop=("\n",))),
        "json_schema": chat("Is this relevant?", json_schema={"type": "object"}),
        "other schema": chat("Is this relevant?", json_schema={"type": "array"}),
    }
    keys = {name: _key(request) for name, request in different.items()}
    assert key not in keys.values()
    assert len(set(keys.values())) == len(keys)
    assert _key(base, operation="choices") != key


def test_keys_follow_the_image_bytes():
    def with_page(page: ImagePart, id: str) -> ChatRequest:
        return ChatRequest(messages=[Message(role="user", content=[TextPart(text="Relevant?"), page])], id=id)

    same_a, same_b, other = _page(0), _page(0), _page(1)  # one pixel apart
    assert same_a is not same_b and same_a.data == same_b.data
    assert _key(with_page(same_a, "1")) == _key(with_page(same_b, "2"))
    assert _key(with_page(same_a, "1")) != _key(with_page(other, "1"))
    assert _key(with_page(same_a, "1")) != _key(chat("Relevant?"))


def test_keys_follow_the_model_and_output_settings():
    request = chat("Is this relevant?")
    choice = ChoiceRequest(messages=request.messages)

    def http(**settings) -> OpenAIBackend:
        return OpenAIBackend(OpenAIConfig(model=settings.pop("model", "model-a"), **settings))

    key = _key(request, http())
    assert _key(request, http(label="a name", max_concurrency=3, timeout_s=5, api_key_env="KEY")) == key
    for changed in (
        http(model="model-b"),
        http(base_url="http://127.0.0.1:9999/v1"),
        http(json_mode="none"),
        http(extra_body={"top_k": 1}),
    ):
        assert _key(request, changed) != key
    assert _key(choice, http(top_logprobs=5), "choices") != _key(choice, http(), "choices")

    local = LlamaCppBackend(LlamaCppConfig(model="qwen2.5-coder-0.5b-instruct"))
    assert _key(request, local) != key
    assert _key(request, LlamaCppBackend(LlamaCppConfig(model="smollm2-135m-instruct"))) != _key(request, local)
    true_false = ChoiceRequest(messages=request.messages, choices=("True", "False"))
    assert _key(true_false, operation="choices") != _key(choice, operation="choices")
    assert _key(choice.model_copy(update={"id": "q"}), operation="choices") == _key(choice, operation="choices")
