"""`docrerank serve` under load, over real HTTP (uvicorn on 127.0.0.1): fair turns between requests, a bounded
queue, the API key, and a /health that tells whether the model is ready.

The reranker is ``FakeWordReranker``, a FAKE that times orchestration only; a test holds it inside a call
(a gate) while it sets up the situation it checks, and asserts orders and counts, never durations.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from docrerank.cli.serve import _api_key, _server_warnings
from docrerank.errors import DocrerankError
from docrerank.rerankers.base import is_loopback_host
from tests.rerankers.serving import FakeWordReranker, serving, wait_until


def health(client: httpx.Client) -> dict:
    return client.get("/health").json()


def test_a_small_request_takes_its_turn_between_the_chunks_of_a_large_one():
    fake = FakeWordReranker(gate_call=3)  # the model is held in its third call, the large request's
    finished: list[str] = []
    with serving(fake, max_batch_pairs=10, max_wait_ms=0) as client:

        def ask(query: str, documents: list[str]) -> httpx.Response:
            response = client.post("/v1/rerank", json={"query": query, "documents": documents})
            finished.append(query)
            return response

        with ThreadPoolExecutor(2) as pool:
            large = pool.submit(ask, "large request", [f"page {n} of a large request" for n in range(1000)])
            assert fake.entered.wait(60), "the large request was not scored in chunks"
            small = pool.submit(ask, "small request", ["a small request page", "another page", "a third"])
            wait_until(lambda: health(client)["stats"]["waiting_requests"] == 2, "the small request is queued")
            fake.gate.set()
            small_response, large_response = small.result(), large.result()
    assert finished == ["small request", "large request"]
    assert small_response.status_code == 200 and large_response.status_code == 200
    assert [r["index"] for r in small_response.json()["results"]][0] == 0
    assert len(large_response.json()["results"]) == 1000
    # the large request went to the model in chunks, and the small one right after the chunk that was running
    large_calls = [n for n, queries in enumerate(fake.calls) if "large request" in queries]
    small_calls = [n for n, queries in enumerate(fake.calls) if "small request" in queries]
    assert len(large_calls) >= 100 and max(len(queries) for queries in fake.calls) <= 10
    assert small_calls == [3] and large_calls[-1] > 90


def test_with_more_requests_than_room_in_a_call_each_gets_its_turn_before_any_gets_a_second():
    fake = FakeWordReranker(gate_call=1)
    with serving(fake, max_batch_pairs=2, max_wait_ms=0) as client, ThreadPoolExecutor(6) as pool:
        holder = pool.submit(client.post, "/v1/rerank", json={"query": "hold", "documents": ["h"]})
        assert fake.entered.wait(60)
        queries = [f"request{n}" for n in range(5)]
        futures = [pool.submit(client.post, "/v1/rerank", json={"query": q, "documents": ["p"] * 4}) for q in queries]
        wait_until(lambda: health(client)["stats"]["waiting_requests"] == 6, "the five requests are queued")
        fake.gate.set()
        assert all(future.result().status_code == 200 for future in [holder, *futures])
    turns = fake.calls[1:4]  # 5 requests, 2 pairs a call: every request is in one of the next 3 calls
    assert all(len(call) == 2 for call in turns) and {q for call in turns for q in call} == set(queries)


def test_a_full_queue_answers_503_with_retry_after_and_accepts_again_once_drained():
    fake = FakeWordReranker(gate_call=1)
    settings = {"max_batch_pairs": 10, "max_wait_ms": 0, "max_queued_pairs": 10, "max_documents": 10}
    with serving(fake, **settings) as client, ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/v1/rerank", json={"query": "a", "documents": ["a page"] * 8})
        assert fake.entered.wait(60)
        busy = client.post("/v1/rerank", json={"query": "b", "documents": ["b page"] * 5})  # 8 + 5 > 10
        assert busy.status_code == 503, busy.text
        assert int(busy.headers["retry-after"]) >= 1
        assert "max_queued_pairs" in busy.json()["detail"] and "8 pairs are waiting" in busy.json()["detail"]
        fits = pool.submit(client.post, "/v1/rerank", json={"query": "c", "documents": ["c page"] * 2})  # 8 + 2
        wait_until(lambda: health(client)["stats"]["queued_pairs"] == 10, "the fitting request is queued")
        fake.gate.set()
        assert first.result().status_code == 200 and fits.result().status_code == 200
        again = client.post("/v1/rerank", json={"query": "b", "documents": ["b page"] * 5})
        assert again.status_code == 200, again.text
        stats = health(client)["stats"]
    assert stats["busy"] == 1 and stats["queued_pairs"] == 0 and stats["requests"] == 3


def test_a_request_that_fails_in_the_model_fails_alone_while_others_share_its_calls():
    fake = FakeWordReranker(gate_call=1, fail_query="crash")
    with serving(fake, max_batch_pairs=64, max_wait_ms=0) as client, ThreadPoolExecutor(4) as pool:
        holder = pool.submit(client.post, "/v1/rerank", json={"query": "x", "documents": ["x"]})
        assert fake.entered.wait(60)
        queries = ["alpha", "crash", "gamma"]
        futures = [pool.submit(client.post, "/v1/rerank", json={"query": q, "documents": [q, "z"]}) for q in queries]
        wait_until(lambda: health(client)["stats"]["waiting_requests"] == 4, "the three requests are queued")
        fake.gate.set()
        statuses = [future.result().status_code for future in futures]
        assert holder.result().status_code == 200
    assert statuses == [200, 500, 200]
    shared = ["alpha", "alpha", "crash", "crash", "gamma", "gamma"]  # one call for the three first (any order)
    assert any(sorted(call) == shared for call in fake.calls)


def test_health_tells_cold_then_ready_and_preload_tells_loading_then_ready():
    with serving(FakeWordReranker()) as client:
        response = client.get("/health")
        assert response.status_code == 200 and response.json()["status"] == "cold"
        assert response.json()["ready"] is False
        assert client.post("/v1/rerank", json={"query": "q", "documents": ["q"]}).status_code == 200
        assert health(client)["status"] == "ready" and health(client)["ready"] is True
    fake = FakeWordReranker(gate_call=1)
    with serving(fake, preload=True) as client:
        assert fake.entered.wait(60), "--preload did not load the model at start"
        loading = client.get("/health")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        fake.gate.set()
        wait_until(lambda: client.get("/health").status_code == 200, "the warm-up is done")
        assert health(client)["status"] == "ready"
    assert fake.calls[0] == ["warm-up"]


def test_health_tells_a_failed_warm_up():
    with serving(FakeWordReranker(fail_query="warm-up"), preload=True) as client:
        wait_until(lambda: health(client)["status"] != "loading" and health(client)["status"] != "cold", "warm-up")
        response = client.get("/health")
        assert response.status_code == 503 and response.json()["status"] == "failed"


def test_the_api_key_is_required_on_every_route_but_health():
    with serving(FakeWordReranker(), api_key="s3cret-key") as client:
        assert client.get("/health").status_code == 200
        body = {"query": "q", "documents": ["q"]}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"}):
            refused = client.post("/v1/rerank", json=body, headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert "s3cret-key" not in refused.text
        assert client.post("/v2/rerank", json=body).status_code == 401
        assert client.get("/docs").status_code == 401 and client.get("/openapi.json").status_code == 401
        good = {"Authorization": "Bearer s3cret-key"}
        assert client.post("/v1/rerank", json=body, headers=good).status_code == 200
        assert client.post("/v2/rerank", json=body, headers=good).status_code == 200
        assert client.get("/openapi.json", headers=good).status_code == 200


def test_the_cli_reads_the_key_from_its_variable_and_warns_when_bound_beyond_loopback(monkeypatch):
    monkeypatch.delenv("DOCRERANK_TEST_KEY", raising=False)
    with pytest.raises(DocrerankError, match="DOCRERANK_TEST_KEY is not set"):
        _api_key("DOCRERANK_TEST_KEY")
    monkeypatch.setenv("DOCRERANK_TEST_KEY", "  k3y  ")
    assert _api_key("DOCRERANK_TEST_KEY") == "k3y" and _api_key(None) is None
    assert all(is_loopback_host(host) for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback_host(host) for host in ("0.0.0.0", "::", "192.168.1.4", "example.com"))
    assert _server_warnings("127.0.0.1", None) == [] and _server_warnings("0.0.0.0", "k3y") == []
    (warning,) = _server_warnings("0.0.0.0", None)
    assert "without an API key" in warning and "--api-key-env" in warning
    with serving(FakeWordReranker(), warnings=[warning]) as client:
        assert health(client)["warnings"] == [warning]
