"""`docrerank serve` over real HTTP: uvicorn on a free port of 127.0.0.1 in a thread, queried with httpx and
with the official ``cohere`` client (v1 and v2).

Most tests serve the real cross-encoder (bundled MiniLM, fresh head) and compare the API's scores with
``reranker.score`` called directly. The image path, the batch size cap and a failing model use
``GrayPageModel``, a test double of the *model* (a real deterministic scorer of page images), behind the
real server. The last test runs the ``docrerank serve`` command itself and queries it like curl would.
Image URLs are tested in test_serve_urls.py, load (turns, queue, API key, /health) in test_serve_load.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import cohere
import httpx
import numpy as np
import pytest
from PIL import Image

from docrerank.pages.content import PageContent, PageLike
from docrerank.rerankers import CrossEncoderReranker, Reranker
from docrerank.server import reranker_warnings
from tests.helpers import docrerank_command, free_port, health_answer
from tests.rerankers.serving import b64, image_bytes, serving

QUERY = "Which tests for structural change does strucchange implement?"
DOCS = [
    "The xts package provides an extensible time series class for R.",
    "strucchange implements generalized fluctuation tests and F tests for structural change in linear regression.",
    "Bananas are yellow and grow in bunches.",
    "A structural break is a change in the coefficients of a regression model at an unknown time.",
]
CRASH = "make the model crash"
UNSCORABLE = "a page the model cannot score"


class GrayPageModel(Reranker):
    """Test double of an image *model*: scores a page by how light its image is (mean gray level / 255), plus
    0.001 per query word in its text. Each call takes 30 ms, like a forward pass, and is recorded by size; the
    query ``CRASH`` makes it raise, like a model failing on an input, and a page whose text is ``UNSCORABLE``
    scores -inf, as the zero-shot reranker scores a page its backend could not judge."""

    kind = "gray-page-model"
    uses = frozenset({"image"})

    def __init__(self):
        self.calls: list[int] = []

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        self.calls.append(len(pairs))
        time.sleep(0.03)
        if any(query == CRASH for query, _ in pairs):
            raise RuntimeError("the model crashed on this input")
        assert all(isinstance(page, PageContent) and page.image is not None for _, page in pairs)
        return [
            float("-inf") if page.text == UNSCORABLE else gray_score(query, page.text, page.image.to_pil())
            for query, page in pairs
        ]


def gray_score(query: str, text: str, image: Image.Image) -> float:
    words = set(text.lower().split())
    return float(np.asarray(image.convert("L")).mean()) / 255 + 0.001 * sum(w in words for w in query.split())


@pytest.fixture(scope="module")
def cross_encoder() -> CrossEncoderReranker:
    return CrossEncoderReranker()


@pytest.fixture(scope="module")
def api(cross_encoder) -> Iterator[httpx.Client]:
    with serving(cross_encoder) as client:
        yield client


@pytest.fixture(scope="module")
def gray_model() -> GrayPageModel:
    return GrayPageModel()


@pytest.fixture(scope="module")
def image_api(gray_model) -> Iterator[httpx.Client]:
    settings = {"max_batch_pairs": 6, "max_wait_ms": 20, "max_image_bytes": 50_000, "max_body_bytes": 200_000}
    with serving(gray_model, **settings) as client:
        yield client


def rerank(client: httpx.Client, **body) -> httpx.Response:
    return client.post("/v1/rerank", json=body)


def stats(client: httpx.Client) -> dict[str, int]:
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] in ("cold", "ready")
    return health.json()["stats"]


def test_a_cohere_request_gets_a_cohere_response_with_the_rerankers_own_scores_best_first(api, cross_encoder):
    documents = [DOCS[0], {"text": DOCS[1]}, DOCS[2], {"text": DOCS[3]}]
    response = rerank(api, model="rerank-v3.5", query=QUERY, documents=documents)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "model", "results", "usage", "meta"} and uuid.UUID(body["id"])
    assert body["meta"] == {"api_version": {"version": "1"}, "billed_units": {"search_units": 1}}
    assert body["model"] == "cross-encoder"
    direct = cross_encoder.score([(QUERY, doc) for doc in DOCS])
    assert [r["index"] for r in body["results"]] == sorted(range(4), key=lambda i: -direct[i])
    assert [r["relevance_score"] for r in body["results"]] == sorted(direct, reverse=True)  # the very same floats
    assert all(set(r) == {"index", "relevance_score"} for r in body["results"])  # no documents unless asked
    characters = sum(len(QUERY) + len(doc) for doc in DOCS)
    assert body["usage"] == {"total_tokens": -(-characters // 4), "search_units": 1}


def test_top_n_keeps_the_best_ties_keep_input_order_and_return_documents_echoes_them(api, cross_encoder):
    documents = [DOCS[2], DOCS[1], DOCS[2], DOCS[3], DOCS[0]]  # DOCS[2] twice: a tie, by construction
    full = rerank(api, query=QUERY, documents=documents).json()["results"]
    top = rerank(api, query=QUERY, documents=documents, top_n=3, return_documents=True).json()["results"]
    assert [(r["index"], r["relevance_score"]) for r in top] == [(r["index"], r["relevance_score"]) for r in full[:3]]
    assert [r["document"] for r in top] == [{"text": documents[r["index"]]} for r in top]
    tied = [r["index"] for r in full if r["index"] in (0, 2)]
    assert tied == [0, 2] and len({r["relevance_score"] for r in full if r["index"] in (0, 2)}) == 1
    assert len(rerank(api, query=QUERY, documents=DOCS, top_n=50).json()["results"]) == 4


def test_concurrent_requests_are_each_answered_correctly_in_fewer_reranker_calls(api, cross_encoder):
    queries = [f"{QUERY} ({n})" if n else QUERY for n in range(8)]
    queries[3] = "Which fruit is yellow?"
    before = stats(api)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda q: rerank(api, query=q, documents=DOCS), queries))
    after = stats(api)
    for query, response in zip(queries, responses, strict=True):
        assert response.status_code == 200, response.text
        got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
        direct = cross_encoder.score([(query, doc) for doc in DOCS])
        assert [got[i] for i in range(4)] == pytest.approx(direct, abs=1e-5)  # padding in a batch: float noise only
    assert after["requests"] - before["requests"] == 8 and after["pairs"] - before["pairs"] == 32
    assert after["batches"] - before["batches"] < 8


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"query": "", "documents": DOCS}, 422, ["query", "at least 1 character"]),
        ({"query": "   ", "documents": DOCS}, 422, ["query is blank"]),
        ({"query": QUERY, "documents": []}, 422, ["documents", "at least 1 item"]),
        ({"query": QUERY, "documents": DOCS, "top_n": 0}, 422, ["top_n", "greater than or equal to 1"]),
        (
            {"query": QUERY, "documents": ["a page"] * 1001},
            413,
            ["number of documents is 1001", "max_documents", "1000"],
        ),
        ({"query": "q" * 4001, "documents": DOCS}, 413, ["query's length is 4001", "max_query_chars", "4000"]),
        (
            {"query": QUERY, "documents": ["short", {"text": "x" * 100_001}]},
            413,
            ["documents[1]", "length is 100001", "max_document_chars", "100000"],
        ),
        (
            {"query": QUERY, "documents": [DOCS[0], {"image": b64(image_bytes(200))}]},
            400,
            ["documents[1] is an image without text", "reads text only"],
        ),
        ({"query": QUERY, "documents": [{"title": "no text"}]}, 400, ["documents[0] has neither", "rank_fields"]),
    ],
    ids=[
        "empty-query",
        "blank-query",
        "no-documents",
        "top-n-0",
        "too-many-documents",
        "long-query",
        "oversize-document",
        "image-to-text-reranker",
        "object-without-text",
    ],
)
def test_a_request_over_a_limit_or_malformed_is_refused_naming_the_field_and_value(api, body, status, words):
    before = stats(api)
    response = rerank(api, **body)
    assert response.status_code == status, response.text
    detail = json.dumps(response.json()["detail"])
    assert all(word in detail for word in words), detail
    assert stats(api)["batches"] == before["batches"]  # refused before the reranker


def test_malformed_json_is_refused_and_an_image_documents_text_is_read_by_a_text_reranker(api, cross_encoder):
    response = api.post(
        "/v1/rerank", content=b'{"query": "q", "documents": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["detail"][0]["type"] == "json_invalid"
    documents = [{"image": "not even base64 (unread)", "text": DOCS[1]}, DOCS[2]]
    scores = {r["index"]: r["relevance_score"] for r in rerank(api, query=QUERY, documents=documents).json()["results"]}
    assert [scores[0], scores[1]] == cross_encoder.score([(QUERY, DOCS[1]), (QUERY, DOCS[2])])


def test_images_arrive_decoded_as_base64_data_urls_or_other_formats(image_api):
    documents = [
        {"image": b64(image_bytes(40)), "text": "dark page"},  # raw base64 PNG
        {"image": "data:image/png;base64," + b64(image_bytes(230))},  # a data URL, no text
        {"image": b64(image_bytes(128, "BMP")), "text": "a structural change page"},  # re-encoded as PNG
        {"image": "data:image/jpeg;base64," + b64(image_bytes(180, "JPEG"))},
        {"image": b64(image_bytes(255)), "text": UNSCORABLE},  # -inf: ranked last, below every score
    ]
    response = rerank(image_api, query="structural change", documents=documents, return_documents=True)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [1, 3, 2, 0, 4]
    expected = [40 / 255, 230 / 255, 128 / 255 + 0.002, 180 / 255]
    assert [r["relevance_score"] for r in sorted(results[:4], key=lambda r: r["index"])] == pytest.approx(
        expected, abs=0.01
    )
    assert results[4]["relevance_score"] == -1.0  # the scores are probabilities: -1 is below them all
    assert response.json()["meta"]["warnings"] == [
        "documents[4] was not scored (the reranker could not score it): ranked last, relevance_score -1"
    ]
    assert results[3]["document"] == {"text": "dark page", "image": documents[0]["image"]}
    assert results[0]["document"] == {"image": documents[1]["image"]}  # as sent


@pytest.mark.parametrize(
    ("document", "status", "words"),
    [
        ("a text page", 400, ["documents[1] has no image", "reads page images"]),
        ({"image": "abc$%^"}, 400, ["documents[1] is not valid base64"]),
        ({"image": "data:image/png,rawbytes"}, 400, ["documents[1] is a data URL that is not base64"]),
        ({"image": b64(b"plain text, not an image")}, 400, ["documents[1] is not an image that can be read"]),
        ({"image": "https://example.com/page.png"}, 400, ["documents[1] is a URL", "--allow-urls", "base64"]),
        ({"image": b64(bytes(60_000))}, 413, ["documents[1]", "size in bytes is 60000", "max_image_bytes", "50000"]),
    ],
    ids=["text-to-image-reranker", "bad-base64", "data-url-not-base64", "not-an-image", "url-not-allowed", "oversize"],
)
def test_a_document_the_image_reranker_cannot_read_is_refused_naming_its_index(image_api, document, status, words):
    response = rerank(image_api, query="q", documents=[{"image": b64(image_bytes(9))}, document])
    assert response.status_code == status, response.text
    assert all(word in response.json()["detail"] for word in words), response.json()


def test_a_body_over_max_body_bytes_is_refused_declared_or_streamed(image_api):
    body = json.dumps({"query": "q", "documents": [{"image": b64(image_bytes(9)), "text": "x" * 250_000}]}).encode()
    declared = image_api.post("/v1/rerank", content=body, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "max_body_bytes" in declared.json()["detail"]
    assert f"is {len(body)} bytes" in declared.json()["detail"]
    chunks = (body[i : i + 16_384] for i in range(0, len(body), 16_384))  # no content-length: chunked
    streamed = image_api.post("/v1/rerank", content=chunks, headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "over the limit of 200000 (max_body_bytes)" in streamed.json()["detail"]
    assert rerank(image_api, query="q", documents=[{"image": b64(image_bytes(9))}]).status_code == 200


def test_concurrent_requests_are_batched_up_to_max_batch_pairs(image_api, gray_model):
    gray_model.calls.clear()
    grays = [(10 * n, 10 * n + 5) for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(
                lambda g: rerank(image_api, query="q", documents=[{"image": b64(image_bytes(x))} for x in g]), grays
            )
        )
    for (low, high), response in zip(grays, responses, strict=True):
        assert response.status_code == 200, response.text
        assert [r["relevance_score"] for r in response.json()["results"]] == pytest.approx([high / 255, low / 255])
    assert sum(gray_model.calls) == 16 and max(gray_model.calls) <= 6 and len(gray_model.calls) < 8


def test_a_model_failure_is_a_500_for_its_request_only_and_the_server_serves_on(image_api):
    documents = [{"image": b64(image_bytes(100))}]
    failed = rerank(image_api, query=CRASH, documents=documents)
    assert failed.status_code == 500
    assert (
        failed.json()["detail"] == "the reranker failed on this request: RuntimeError: the model crashed on this input"
    )
    assert rerank(image_api, query="q", documents=documents).status_code == 200
    with ThreadPoolExecutor(4) as pool:  # batched with a failing request, the others are still answered
        statuses = list(
            pool.map(lambda q: rerank(image_api, query=q, documents=documents).status_code, ["a", CRASH, "b", "c"])
        )
    assert statuses == [200, 500, 200, 200]
    assert stats(image_api)["failed_batches"] >= 2


def test_openapi_schema_and_docs_page_describe_the_api(api):
    schema = api.get("/openapi.json").json()
    assert {"/v1/rerank", "/v2/rerank", "/health"} <= set(schema["paths"])
    request = schema["components"]["schemas"]["RerankRequest"]
    assert {"query", "documents", "top_n", "return_documents", "rank_fields", "max_tokens_per_doc"} <= set(
        request["properties"]
    )
    assert "RerankResponse" in schema["components"]["schemas"]
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_empty_documents_are_ranked_last_and_reported_and_the_rest_are_scored(api, cross_encoder):
    documents = ["", DOCS[1], "   \n ", {"text": ""}, DOCS[2]]
    response = rerank(api, query=QUERY, documents=documents, return_documents=True)
    assert response.status_code == 200, response.text
    body = response.json()
    direct = cross_encoder.score([(QUERY, DOCS[1]), (QUERY, DOCS[2])])
    assert [(r["index"], r["relevance_score"]) for r in body["results"][:2]] == sorted(
        [(1, direct[0]), (4, direct[1])], key=lambda item: -item[1]
    )
    assert [(r["index"], r["relevance_score"]) for r in body["results"][2:]] == [(0, -1.0), (2, -1.0), (3, -1.0)]
    assert body["results"][4]["document"] == {"text": ""}
    assert body["meta"]["warnings"] == [
        f"documents[{i}] was not scored (its text is empty): ranked last, relevance_score -1" for i in (0, 2, 3)
    ]
    assert body["usage"]["search_units"] == 1
    before = stats(api)
    alone = rerank(api, query=QUERY, documents=["", " "])  # nothing to score: no reranker call at all
    assert alone.status_code == 200 and [r["relevance_score"] for r in alone.json()["results"]] == [-1.0, -1.0]
    assert stats(api)["batches"] == before["batches"]


def test_v2_answers_like_v1_with_its_version_and_unknown_fields_are_ignored_and_named(api, cross_encoder):
    body = {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, "top_n": 2}
    v1, v2 = api.post("/v1/rerank", json=body).json(), api.post("/v2/rerank", json=body).json()
    assert [r["index"] for r in v1["results"]] == [r["index"] for r in v2["results"]]
    assert v2["meta"] == {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
    extra = api.post("/v2/rerank", json={**body, "top_k": 3, "priority": 1, "max_chunks_per_doc": 4})
    assert extra.status_code == 200, extra.text
    assert extra.json()["meta"]["warnings"] == [
        "ignored the unknown field 'top_k'",
        "ignored max_chunks_per_doc: a long page is read as all its chunks",
        "ignored priority: every request takes equal turns",
    ]


def test_rank_fields_read_the_named_fields_and_max_tokens_per_doc_cuts_the_text(api, cross_encoder):
    documents = [{"title": "Bananas", "body": DOCS[2], "id": 7}, {"title": "strucchange", "body": DOCS[1], "id": 8}]
    response = rerank(api, query=QUERY, documents=documents, rank_fields=["title", "body"], return_documents=True)
    assert response.status_code == 200, response.text
    texts = [f"title: {doc['title']}\nbody: {doc['body']}" for doc in documents]
    direct = cross_encoder.score([(QUERY, text) for text in texts])
    scores = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
    assert [scores[0], scores[1]] == pytest.approx(direct, abs=1e-6)
    assert {r["index"]: r["document"] for r in response.json()["results"]} == dict(enumerate(documents))
    one_field = rerank(api, query=QUERY, documents=documents, rank_fields=["body"]).json()["results"]
    assert {r["index"]: r["relevance_score"] for r in one_field}[1] == pytest.approx(
        cross_encoder.score([(QUERY, DOCS[1])])[0], abs=1e-6
    )
    cut = rerank(api, query=QUERY, documents=[DOCS[1]], max_tokens_per_doc=5).json()
    assert cut["results"][0]["relevance_score"] == pytest.approx(
        cross_encoder.score([(QUERY, DOCS[1][:20])])[0], abs=1e-6
    )


def test_the_official_cohere_client_reranks_through_v1_and_v2(cross_encoder):
    direct = cross_encoder.score([(QUERY, doc) for doc in DOCS])
    best = sorted(range(4), key=lambda i: -direct[i])
    with serving(cross_encoder, api_key="test-key-123") as client:
        url = str(client.base_url)
        v2 = cohere.ClientV2(api_key="test-key-123", base_url=url).rerank(
            model="rerank-v3.5", query=QUERY, documents=[*DOCS, ""], top_n=5, max_tokens_per_doc=4096
        )
        assert [r.index for r in v2.results] == [*best, 4]
        assert [r.relevance_score for r in v2.results] == pytest.approx([direct[i] for i in best] + [-1.0])
        assert v2.meta.api_version.version == "2" and v2.meta.billed_units.search_units == 1
        assert v2.meta.warnings == ["documents[4] was not scored (its text is empty): ranked last, relevance_score -1"]
        v1 = cohere.Client(api_key="test-key-123", base_url=url).rerank(
            model="rerank-english-v3.0",
            query=QUERY,
            documents=[{"text": DOCS[0]}, {"text": DOCS[1]}],
            top_n=1,
            return_documents=True,
        )
        assert [(r.index, r.document.text) for r in v1.results] == [(1, DOCS[1])]
        assert v1.results[0].relevance_score == pytest.approx(direct[1])
        assert v1.meta.api_version.version == "1" and v1.meta.billed_units.search_units == 1
        with pytest.raises(cohere.core.ApiError) as refused:
            cohere.ClientV2(api_key="wrong", base_url=url).rerank(model="m", query=QUERY, documents=DOCS)
        assert refused.value.status_code == 401


def test_health_says_when_the_cross_encoders_head_was_never_trained(api, cross_encoder, tmp_path):
    (warning,) = api.get("/health").json()["warnings"]
    assert "never trained" in warning and "--reranker saved" in warning
    assert reranker_warnings(cross_encoder) == [warning]
    cross_encoder.save(tmp_path / "trained")  # a saved cross-encoder has its head (trained or not: a choice)
    assert reranker_warnings(Reranker.load(tmp_path / "trained")) == []


@pytest.mark.slow
def test_the_serve_command_serves_until_terminated(cross_encoder):
    port = free_port()
    command = [*docrerank_command(), "serve", "--port", str(port), "--max-documents", "3", "--name", "minilm"]
    command += ["--reranker", "cross-encoder", "--preload", "--api-key-env", "DOCRERANK_TEST_KEY"]
    environment = {**os.environ, "DOCRERANK_TEST_KEY": "the-test-key"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        # --preload: /health answers 503 (loading) until the model has scored its warm-up pair
        while health_answer(process, url, deadline).status_code != 200:
            time.sleep(0.25)
        health = httpx.get(f"{url}/health", timeout=10).json()
        assert health["status"] == "ready" and health["stats"]["pairs"] == 1  # the warm-up pair
        assert "never trained" in health["warnings"][0]
        body = {"query": QUERY, "documents": DOCS[:3], "top_n": 1}
        assert httpx.post(f"{url}/v1/rerank", json=body, timeout=60).status_code == 401
        key = {"Authorization": "Bearer the-test-key"}
        response = httpx.post(f"{url}/v1/rerank", json=body, timeout=60, headers=key)
        assert response.status_code == 200 and response.json()["model"] == "minilm"
        direct = cross_encoder.score([(QUERY, doc) for doc in DOCS[:3]])
        best = max(range(3), key=lambda i: direct[i])
        assert response.json()["results"] == [{"index": best, "relevance_score": pytest.approx(direct[best])}]
        too_many = httpx.post(f"{url}/v2/rerank", json={**body, "documents": DOCS}, timeout=60, headers=key)
        assert too_many.status_code == 413 and "max_documents" in too_many.json()["detail"]
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"at {url}/v1/rerank and /v2/rerank (API docs: {url}/docs;" in output and "API key required" in output
    assert "WARNING: the cross-encoder's scoring head was never trained" in " ".join(output.split())
    assert "the-test-key" not in output
