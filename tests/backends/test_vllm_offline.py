"""The vLLM backend's failures are per-request results, as every backend's are.

vLLM needs a CUDA GPU and cannot be installed here, so these tests put a FAKE ``vllm`` module in
``sys.modules``: ``LLM.chat`` answers each conversation from its text, and raises the way vLLM does (for
the whole batch) when a conversation holds a poisoned prompt, when told to fail every call, or with an
``EngineDeadError``. The backend, its batching and the base class's cache path are the real code.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest

from docrerank.backends import ChatRequest, ChoiceRequest, Message, load_backend
from docrerank.backends.cache import ResponseCache
from docrerank.errors import DocrerankError

POISON = "POISON"  # a prompt the FAKE engine refuses, failing the whole batch it is in


class EngineDeadError(RuntimeError):
    """Named like vLLM's: the engine is gone and nothing more runs."""


@dataclass
class Logprob:
    logprob: float
    rank: int
    decoded_token: str


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str = "stop"
    logprobs: list[dict[int, Logprob]] | None = None


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[Completion] = field(default_factory=list)


class FakeVllm:
    """A FAKE ``vllm`` module: ``LLM``, ``SamplingParams`` and ``sampling_params``, and what was asked of them."""

    def __init__(self, fail: str | None = None, load_error: Exception | None = None):
        self.fail, self.load_error = fail, load_error  # fail: None, "poison", "always", "dead"
        self.calls: list[int] = []  # the size of each LLM.chat batch
        self.module = types.ModuleType("vllm")
        self.module.LLM = self._llm_class()
        self.module.SamplingParams = lambda **kwargs: dict(kwargs)
        self.module.sampling_params = types.SimpleNamespace(StructuredOutputsParams=lambda **kwargs: dict(kwargs))

    def _llm_class(self):
        fake = self

        class LLM:
            def __init__(self, **kwargs):
                if fake.load_error is not None:
                    raise fake.load_error
                self.kwargs = kwargs

            def chat(self, conversations, params, use_tqdm=True):
                fake.calls.append(len(conversations))
                if not isinstance(params, list) or len(params) != len(conversations):
                    raise TypeError("one SamplingParams per conversation expected")
                if fake.fail == "always":
                    raise RuntimeError("CUDA error: an illegal memory access was encountered")
                if fake.fail == "dead":
                    raise EngineDeadError("EngineCore encountered an issue")
                texts = [conversation[-1]["content"] for conversation in conversations]
                if fake.fail == "poison" and any(POISON in text for text in texts):
                    raise ValueError("The decoder prompt (length 9000) is longer than the maximum model length")
                return [fake._output(text, p) for text, p in zip(texts, params, strict=True)]

        return LLM

    @staticmethod
    def _output(text: str, params: dict) -> RequestOutput:
        prompt = list(range(len(text.split())))
        if params.get("logprobs"):  # choice scoring: "yes" when the question mentions a number
            yes = -0.1 if any(ch.isdigit() for ch in text) else -3.0
            top = {1: Logprob(yes, 1, "yes"), 2: Logprob(-1.5, 2, "no"), 3: Logprob(-6.0, 3, "maybe")}
            if "NO-LOGPROBS" in text:
                return RequestOutput(prompt, [Completion("", [0], logprobs=None)])
            return RequestOutput(prompt, [Completion("yes", [1], logprobs=[top])])
        answer = f"answer to: {text}"
        return RequestOutput(prompt, [Completion(answer, list(range(len(answer.split()))))])


@pytest.fixture
def fake_vllm(monkeypatch):
    def install(**kwargs) -> FakeVllm:
        fake = FakeVllm(**kwargs)
        monkeypatch.setitem(sys.modules, "vllm", fake.module)
        return fake

    return install


def _backend(cache=None):
    return load_backend({"type": "vllm", "model": "FAKE/tiny"}, cache=cache)


def _chats(texts):
    return [ChatRequest(messages=[Message(role="user", content=text)]) for text in texts]


def _choices(texts):
    return [ChoiceRequest(messages=[Message(role="user", content=text)]) for text in texts]


TEXTS = ["What is 2+2?", "Name a colour.", f"{POISON}: a prompt vLLM refuses", "Year 1999?", "Why?", "Who?"]


def test_one_request_that_fails_the_batch_fails_alone(fake_vllm):
    fake = fake_vllm(fail="poison")
    results = _backend().generate(_chats(TEXTS))
    assert [r.ok for r in results] == [True, True, False, True, True, True]
    assert "ValueError" in results[2].error and "longer than the maximum model length" in results[2].error
    assert [r.text for i, r in enumerate(results) if i != 2] == [f"answer to: {t}" for t in TEXTS if POISON not in t]
    assert results[0].usage.prompt_tokens == 3 and results[0].usage.completion_tokens == 5
    # the batch, then halves down to the poisoned request: far fewer calls than one per request
    assert fake.calls[0] == len(TEXTS) and len(fake.calls) < 2 * len(TEXTS) - 1


def test_one_choice_request_that_fails_the_batch_fails_alone_and_a_bad_output_fails_alone(fake_vllm):
    fake_vllm(fail="poison")
    texts = [*TEXTS, "NO-LOGPROBS 7"]
    results = _backend().score_choices(_choices(texts))
    assert [r.ok for r in results] == [True, True, False, True, True, True, False]
    assert "longer than the maximum model length" in results[2].error
    assert "cannot read vLLM's output" in results[6].error
    assert results[0].prob("yes") > 0.5 > results[1].prob("yes")  # the FAKE says yes to numbers


def test_a_batch_call_that_always_raises_gives_every_request_an_error_not_an_exception(fake_vllm, tmp_path):
    fake = fake_vllm(fail="always")
    cache = ResponseCache(tmp_path / "cache.sqlite")
    results = _backend(cache).generate(_chats(TEXTS))
    assert all(not r.ok and "CUDA error" in r.error for r in results)
    assert len(fake.calls) <= 2 * len(TEXTS) - 1
    scores = _backend(cache).score_choices(_choices(TEXTS))
    assert all(not r.ok and "CUDA error" in r.error for r in scores)
    # failures are not cached: once the engine works again, every request is asked and answered
    fake_vllm()
    assert all(r.ok and not r.cached for r in _backend(cache).generate(_chats(TEXTS)))


def test_a_dead_engine_fails_every_request_at_once(fake_vllm):
    fake = fake_vllm(fail="dead")
    results = _backend().generate(_chats(TEXTS))
    assert all(not r.ok and "engine died" in r.error and "EngineDeadError" in r.error for r in results)
    assert fake.calls == [len(TEXTS)]


def test_a_request_that_cannot_be_built_fails_alone(fake_vllm, monkeypatch):
    fake_vllm()
    requests = _chats(TEXTS[:2]) + [ChatRequest(messages=[Message(role="user", content="JSON")], json_schema={})]
    fake = sys.modules["vllm"]

    def refuse(**kwargs):
        raise ValueError("json schema not supported by this build")

    monkeypatch.setattr(fake.sampling_params, "StructuredOutputsParams", refuse)
    results = _backend().generate(requests)
    assert [r.ok for r in results] == [True, True, False]
    assert "cannot build the vLLM request" in results[2].error and "not supported" in results[2].error


def test_a_model_that_does_not_load_is_a_config_error(fake_vllm):
    fake_vllm(load_error=OSError("FAKE/tiny is not a local folder and not on the Hub"))
    with pytest.raises(DocrerankError, match="vLLM cannot load the model 'FAKE/tiny'"):
        _backend().generate(_chats(TEXTS[:1]))
