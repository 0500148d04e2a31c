"""The HTTP backend against a server that misbehaves on purpose (the FAKE loopback server, a script of faults).

Each test counts what reached the server (``log.requests``) against the attempts the config allows, and
reads the recorded error. Backoff is shortened in the config; the only clock read is the server's own
arrival times, with generous bounds.
"""

from __future__ import annotations

import json
import time

import pytest

from docrerank.backends import ChatRequest, ChoiceRequest, Message, ResponseCache, SamplingParams, load_backend
from docrerank.backends.openai_http import OpenAIBackend, OpenAIConfig
from docrerank.errors import DocrerankError
from docrerank.prompts import output_schema, parse_output
from docrerank.prompts.outputs import ControlledNegatives, PositiveQueries
from docrerank.testing.fake_server import FakeOpenAIServer

pytestmark = pytest.mark.timeout(30)  # a hang fails the test instead of the session

FAULTS = {  # script action -> what the recorded error says
    "500": "HTTP 500",
    "hang": "timed out",
    "drop": "connection error",
    "malformed": "not JSON",
}


def backend_for(server: FakeOpenAIServer, **settings) -> OpenAIBackend:
    config = {
        "type": "openai",
        "base_url": server.url,
        "model": "fake-model",
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "timeout_s": 0.5,
        **settings,
    }
    return load_backend(config)


def chat(text: str = "Hello?", id: str | None = None) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], sampling=SamplingParams(max_tokens=4), id=id)


def test_429_with_retry_after_waits_as_told():
    with FakeOpenAIServer(script=["429:1", "ok"], text="fine") as server:
        [result] = backend_for(server).generate([chat()])
    assert result.ok and result.text == "fine"
    assert result.attempts == 2 and server.log.requests == 2
    waited = server.log.times[1] - server.log.times[0]
    assert 0.9 <= waited < 10  # Retry-After: 1, not the 0.01 s backoff


def test_429_without_retry_after_backs_off_and_retries():
    with FakeOpenAIServer(script=["429", "429", "ok"]) as server:
        backend = backend_for(server, max_retries=3)
        [result] = backend.generate([chat()])
    assert result.ok
    assert result.attempts == 3 and server.log.requests == 3
    assert backend.stats.retries == 2 and backend.stats.errors == 0
    assert server.log.times[2] - server.log.times[0] < 5  # the short backoff of the config, not a default


def test_a_long_retry_after_is_capped():
    with FakeOpenAIServer(script=["429:60", "ok"]) as server:
        started = time.monotonic()
        [result] = backend_for(server, retry_after_max_s=0.2).generate([chat()])
    assert result.ok and result.attempts == 2
    assert time.monotonic() - started < 10  # not the 60 s asked for


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_is_retried_and_the_request_recovers(fault):
    with FakeOpenAIServer(script=[fault, "ok"], hang_s=3, text="recovered") as server:
        backend = backend_for(server)
        [result] = backend.generate([chat(id="x")])
    assert result.ok, result.error
    assert result.id == "x" and result.text == "recovered"
    assert result.attempts == 2 and server.log.requests == 2
    assert server.log.actions == [fault, "ok"]
    assert backend.stats.retries == 1


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_that_persists_ends_as_a_recorded_error(fault):
    with FakeOpenAIServer(script=[fault], hang_s=3) as server:
        backend = backend_for(server, max_retries=2)
        [result] = backend.generate([chat(id="x")])
        [scores] = backend.score_choices([ChoiceRequest(messages=chat().messages, id="y")])
    assert result.id == "x" and not result.ok
    assert FAULTS[fault] in result.error
    assert "gave up after 3 attempts" in result.error
    assert result.attempts == 3
    assert scores.id == "y" and not scores.ok and FAULTS[fault] in scores.error and scores.attempts == 3
    assert server.log.requests == 6  # 1 + max_retries for each of the two requests
    assert backend.stats.errors == 2 and backend.stats.retries == 4


def test_a_server_error_body_is_kept_with_the_error():
    with FakeOpenAIServer(script=["500"]) as server:
        [result] = backend_for(server, max_retries=0).generate([chat()])
    assert result.attempts == 1 and server.log.requests == 1
    assert "HTTP 500" in result.error and "internal server error" in result.error
    assert "internal server error" in result.text  # the raw body, for the record


def test_a_client_error_is_not_retried():
    with FakeOpenAIServer(script=["400", "ok"]) as server:
        backend = backend_for(server, max_retries=5)
        [result] = backend.generate([chat()])
    assert not result.ok
    assert result.error.startswith("HTTP 400") and "bad request" in result.error
    assert result.attempts == 1 and server.log.requests == 1
    assert backend.stats.retries == 0 and backend.stats.errors == 1


def test_a_batch_mixing_good_and_failing_requests_returns_every_result():
    script = ["ok", "drop", "malformed", "500", "400", "hang", "429", "ok"]
    expected = [None, "connection error", "not JSON", "HTTP 500", "HTTP 400", "timed out", "HTTP 429", None]
    # One request at a time and no retries: request i meets script action i.
    with FakeOpenAIServer(script=script, hang_s=3) as server:
        backend = backend_for(server, max_retries=0, max_concurrency=1)
        requests = [chat(f"question {i}", id=f"q{i}") for i in range(len(script))]
        results = backend.generate(requests)
    assert [r.id for r in results] == [r.id for r in requests]
    assert server.log.requests == len(script)
    assert [json.loads(json.dumps(b))["messages"][0]["content"] for b in server.log.bodies] == [
        f"question {i}" for i in range(len(script))
    ]
    for result, error in zip(results, expected, strict=True):
        if error is None:
            assert result.ok and result.text == "ok"
        else:
            assert not result.ok and error in result.error, (error, result.error)
    assert backend.stats.errors == 6 and backend.stats.requests_sent == len(script)


def test_a_choice_batch_with_a_failing_request_returns_every_result():
    with FakeOpenAIServer(script=["ok", "500", "ok"]) as server:
        backend = backend_for(server, max_retries=0, max_concurrency=1)
        results = backend.score_choices([ChoiceRequest(messages=chat(f"q{i}").messages, id=str(i)) for i in range(3)])
    assert [r.id for r in results] == ["0", "1", "2"]
    assert [r.ok for r in results] == [True, False, True]
    assert "HTTP 500" in results[1].error
    for result in (results[0], results[2]):  # the fake's top-k: yes -0.2, no -1.8, Yes -3.0
        assert result.prob("yes") > result.prob("no")
        assert sum(result.probs.values()) == pytest.approx(1.0)
    body = server.log.bodies[0]
    assert body["logprobs"] is True and body["max_tokens"] == 1 and body["top_logprobs"] == 20


def test_the_api_key_comes_from_the_named_variable_as_a_bearer_header(monkeypatch):
    monkeypatch.setenv("DOCRERANK_TEST_API_KEY", "s3cret-token-value")
    with FakeOpenAIServer() as server:
        backend = backend_for(server, api_key_env="DOCRERANK_TEST_API_KEY")
        [result] = backend.generate([chat()])
    assert result.ok
    assert server.log.headers[0]["authorization"] == "Bearer s3cret-token-value"
    assert "s3cret" not in json.dumps(backend.identity()) + backend.label + repr(backend.config)


def test_no_key_header_without_api_key_env():
    with FakeOpenAIServer() as server:
        backend_for(server).generate([chat()])
    assert "authorization" not in server.log.headers[0]


def test_a_missing_key_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DOCRERANK_TEST_MISSING_KEY", raising=False)
    with FakeOpenAIServer() as server:
        backend = backend_for(server, api_key_env="DOCRERANK_TEST_MISSING_KEY")
        with pytest.raises(DocrerankError, match="DOCRERANK_TEST_MISSING_KEY is not set"):
            backend.generate([chat()])
    assert server.log.requests == 0


@pytest.mark.parametrize(
    "literal",
    [
        "sk-proj-4f9aB2cD8eF1gH3iJ5kL7mN9",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "4f9a0b2c8d1e3f5a7b9c0d2e4f6a8b0c",
        "Bearer abc",
    ],
)
def test_a_literal_key_instead_of_a_variable_name_is_rejected(literal, tmp_path):
    with pytest.raises(ValueError, match="NAME of an environment variable") as raised:
        OpenAIConfig(model="m", api_key_env=literal)
    assert literal not in str(raised.value)  # the message does not echo the secret
    path = tmp_path / "backend.yaml"
    path.write_text(f"type: openai\nmodel: m\napi_key_env: '{literal}'\n")
    with pytest.raises(ValueError, match="NAME of an environment variable") as raised:
        load_backend(path)
    assert literal not in str(raised.value)


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "my_service_key", "VLLM_API_KEY_2"])
def test_variable_names_are_accepted(name):
    assert OpenAIConfig(model="m", api_key_env=name).api_key_env == name


def test_the_fake_server_answers_a_json_schema_with_a_valid_instance():
    with FakeOpenAIServer(answer_schemas=True) as server:
        backend = load_backend({"type": "openai", "base_url": server.url, "model": "fake", "max_retries": 0})
        requests = [
            ChatRequest(messages=[Message(role="user", content=f"page {i}")], json_schema=output_schema(model, 3))
            for i, model in enumerate((PositiveQueries, ControlledNegatives, PositiveQueries))
        ]
        first, controlled, other = backend.generate(requests)
    parsed = parse_output(PositiveQueries, first)
    assert len(parsed.queries) == 3 and len({q.query for q in parsed.queries}) == 3
    assert len(parse_output(ControlledNegatives, controlled).queries) == 3
    assert parse_output(PositiveQueries, other).queries[0].query != parsed.queries[0].query  # per request


def test_a_server_that_echoes_the_api_key_never_gets_it_into_an_error(monkeypatch):
    monkeypatch.setenv("DOCRERANK_FAULT_KEY", "sk-test-0123456789")
    with FakeOpenAIServer(script=["echo-auth"]) as server:
        [result] = backend_for(server, api_key_env="DOCRERANK_FAULT_KEY").generate([chat()])
    assert server.log.headers[0]["authorization"] == "Bearer sk-test-0123456789"  # it was sent, and echoed
    assert not result.ok and "HTTP 401" in result.error
    assert "sk-test-0123456789" not in result.error + result.text
    assert "[API key removed]" in result.error


def test_output_that_does_not_parse_is_an_answer_cached_not_a_failure_retried(tmp_path):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    request = ChatRequest(messages=[Message(role="user", content="JSON?")], sampling=SamplingParams(max_tokens=4))
    request = request.model_copy(update={"json_schema": schema})
    with FakeOpenAIServer(script=["ok", "500"], text="no JSON here") as server:
        backend = load_backend({**server.backend_config(1), "max_retries": 0}, cache=ResponseCache(tmp_path / "c"))
        [first] = backend.generate([request])
        [again] = backend.generate([request])
    assert first.error.startswith("structured output:") and first.answered
    assert again.cached and again.answered and server.log.requests == 1
