"""Batch API files: requests written as JSONL, each body answered by the real llama.cpp server, results read back.

The results file is made the way a batch service returns it: one line per request in any order, with a
line missing and a line that failed, so the join by ``custom_id`` and the recorded errors are exercised.
"""

from __future__ import annotations

import json
import random
import urllib.request

import pytest

from docrerank.backends import ChatRequest, ChoiceRequest, Message, SamplingParams
from docrerank.backends.batch_files import (
    ENDPOINT,
    read_batch_choice_results,
    read_batch_results,
    write_batch_requests,
)
from docrerank.backends.openai_http import OpenAIConfig, chat_body, choice_body
from docrerank.errors import DocrerankError

YES_NO = Message(role="system", content="Answer with a single word: yes or no.")


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def post(root: str, line: dict) -> dict:
    """What a batch service does with one request line: POST its body to its url."""
    request = urllib.request.Request(
        root + line["url"],
        data=json.dumps(line["body"]).encode(),
        headers={"Content-Type": "application/json"},
        method=line["method"],
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return {"status_code": response.status, "request_id": f"req-{line['custom_id']}", "body": json.load(response)}


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_results(path, items: list[dict]) -> None:
    random.Random(7).shuffle(items)  # results come back in any order
    path.write_text("".join(json.dumps(item) + "\n" for item in items))


@pytest.mark.slow
def test_batch_files_round_trip_through_a_real_server(llama_server, tmp_path):
    config = OpenAIConfig(base_url=llama_server.base_url, model=llama_server.model, json_mode="json_object")
    chats = [
        ChatRequest(
            messages=user("What is 2+2? Answer with just the number."), sampling=SamplingParams(max_tokens=4), id="sum"
        ),
        ChatRequest(
            messages=user("What is 2+2? Reply in JSON with the key answer."),
            sampling=SamplingParams(max_tokens=24),
            json_schema={"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]},
            id="json",
        ),
        ChatRequest(messages=user("Never answered."), id="missing"),
        ChatRequest(messages=user("Expired in the batch."), id="expired"),
    ]
    choices = [
        ChoiceRequest(messages=[YES_NO, *user("Is Python a programming language?")], id="python"),
        ChoiceRequest(messages=[YES_NO, *user("Is Python a kind of cheese?")], id="cheese"),
        ChoiceRequest(messages=user("Rejected by the service."), id="rejected"),
    ]

    chat_ids = write_batch_requests(chats, tmp_path / "chats.jsonl", config)
    choice_ids = write_batch_requests(choices, tmp_path / "choices.jsonl", config)
    assert chat_ids == ["sum", "json", "missing", "expired"]
    chat_lines, choice_lines = read_lines(tmp_path / "chats.jsonl"), read_lines(tmp_path / "choices.jsonl")
    assert [line["custom_id"] for line in chat_lines] == chat_ids
    assert all(line["method"] == "POST" and line["url"] == ENDPOINT for line in chat_lines + choice_lines)
    assert [line["body"] for line in chat_lines] == [chat_body(config, r) for r in chats]
    assert [line["body"] for line in choice_lines] == [choice_body(config, r) for r in choices]

    def answered(line: dict) -> dict:
        response = post(llama_server.root, line)
        return {"id": f"b-{line['custom_id']}", "custom_id": line["custom_id"], "response": response, "error": None}

    expiry = {"code": "batch_expired", "message": "not run in time"}
    refusal = {"status_code": 400, "body": {"error": {"message": "bad model"}}}
    write_results(
        tmp_path / "chat-results.jsonl",  # "missing" has no line at all
        [answered(line) for line in chat_lines[:2]] + [{"custom_id": "expired", "response": None, "error": expiry}],
    )
    write_results(
        tmp_path / "choice-results.jsonl",
        [answered(line) for line in choice_lines[:2]] + [{"custom_id": "rejected", "response": refusal, "error": None}],
    )

    generations = read_batch_results(chats, chat_ids, tmp_path / "chat-results.jsonl")
    assert [g.id for g in generations] == chat_ids
    total, structured, missing, expired = generations
    assert total.ok and "4" in total.text and total.usage.completion_tokens >= 1
    assert structured.ok and structured.parsed == {"answer": 4}
    assert not missing.ok and "no result for this request" in missing.error
    assert not expired.ok and "batch_expired" in expired.error and "not run in time" in expired.error

    scores = read_batch_choice_results(choices, choice_ids, tmp_path / "choice-results.jsonl")
    assert [s.id for s in scores] == choice_ids
    python, cheese, rejected = scores
    assert python.ok and cheese.ok
    assert sum(python.probs.values()) == pytest.approx(1.0)
    assert python.prob("yes") > cheese.prob("yes") + 0.15
    assert not rejected.ok and "HTTP 400" in rejected.error and "bad model" in rejected.error


def test_custom_ids_default_to_positions_and_must_be_distinct(tmp_path):
    config = OpenAIConfig(model="m", json_mode="none")
    requests = [
        ChatRequest(messages=user("a")),
        ChatRequest(messages=user("b"), id="named"),
        ChatRequest(messages=user("c")),
    ]
    assert write_batch_requests(requests, tmp_path / "r.jsonl", config) == ["request-0", "named", "request-2"]
    with pytest.raises(DocrerankError, match="distinct ids"):
        write_batch_requests([ChatRequest(messages=user("a"), id="x")] * 2, tmp_path / "r.jsonl", config)


def test_a_results_file_that_is_not_batch_output_is_an_error(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"custom_id": "a", "response": null, "error": null}\n\nnot json\n')
    with pytest.raises(DocrerankError, match=r"results\.jsonl:3 is not a Batch API result line"):
        read_batch_results([ChatRequest(messages=user("a"), id="a")], ["a"], path)
