"""The viewer's web app, over HTTP (FastAPI's test client, the real app): only the run's page images and the
shipped static files are served; writes need this server's token and origin, fit in a bounded body, and are
refused read-only or while the run is being generated; the Host must name this server."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from filelock import FileLock

from docrerank.pipeline.corrections import read_corrections
from docrerank.viewer import RunView, create_app
from docrerank.viewer.app import MAX_BODY

TOKEN = "test-token"
BASE = "http://127.0.0.1:8765"


@pytest.fixture
def client(run_copy):
    view = RunView.open(run_copy)
    return TestClient(create_app(view, token=TOKEN), base_url=BASE), view


def _item(view):
    return next(i for i in view.all_items() if i.record.kind == "negative")


def _post(client, body, headers=None, path="/api/corrections"):
    return client.post(path, content=json.dumps(body), headers={"x-docrerank-token": TOKEN, **(headers or {})})


@pytest.mark.parametrize(
    "path",
    [
        "/image/../../../etc/passwd",
        "/image/..%2F..%2F..%2Fetc%2Fpasswd",
        "/image/%2e%2e%2f%2e%2e%2fpages.parquet",
        "/static/../app.py",
        "/static/..%2Fapp.py",
        "/static/%2e%2e%2fitems.py",
        "/static/templates",
        "/image/0000000000000000000000000000000",
    ],
)
def test_nothing_outside_the_run_images_and_static_files_is_served(client, path):
    app, _ = client
    response = app.get(path)
    assert response.status_code == 404, (path, response.text[:200])
    assert b"import" not in response.content and b"root:" not in response.content


def test_the_pages_images_and_static_files_are_served(client):
    app, view = client
    assert app.get(f"/image/{view.page_ids[0]}").headers["content-type"] == "image/png"
    assert app.get("/static/viewer.js").status_code == 200
    for path in ("/", "/page/1", f"/page/{len(view.page_ids)}", "/stats", "/review"):
        assert app.get(path, follow_redirects=True).status_code == 200, path
    assert app.get(f"/page/{len(view.page_ids) + 1}").status_code == 404


def test_a_write_without_the_token_or_from_another_origin_is_refused(client, run_copy):
    app, view = client
    item = _item(view)
    body = {"action": "drop", "page_id": item.record.page_id, "query_id": item.record.query_id}
    assert app.post("/api/corrections", content=json.dumps(body)).status_code == 403
    assert _post(app, body, {"x-docrerank-token": "guessed"}).status_code == 403
    assert _post(app, body, {"origin": "http://evil.example"}).status_code == 403
    assert not read_corrections(run_copy)
    assert _post(app, body, {"origin": BASE}).status_code == 201
    assert [c.action for c in read_corrections(run_copy)] == ["drop"]


def test_a_body_over_the_bound_and_a_foreign_host_are_refused(client, run_copy):
    app, view = client
    item = _item(view)
    big = {"action": "edit", "page_id": item.record.page_id, "query_id": item.record.query_id, "text": "x" * MAX_BODY}
    assert _post(app, big).status_code == 413
    assert app.get("/", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding
    assert not read_corrections(run_copy)


def test_unknown_items_and_bad_bodies_are_named(client, run_copy):
    app, view = client
    item = _item(view)
    unknown = _post(app, {"action": "drop", "page_id": item.record.page_id, "query_id": "nope"})
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    assert _post(app, {"action": "delete-everything", "page_id": "x", "query_id": "y"}).status_code == 422
    no_text = {"action": "edit", "page_id": item.record.page_id, "query_id": item.record.query_id}
    assert _post(app, no_text).status_code == 422
    assert _post(app, {}, path="/api/corrections/nope/undo").status_code == 404
    assert not read_corrections(run_copy)


def test_read_only_and_a_run_being_generated_refuse_writes(run_copy):
    view = RunView.open(run_copy)
    item = _item(view)
    body = {"action": "drop", "page_id": item.record.page_id, "query_id": item.record.query_id}
    read_only = TestClient(create_app(view, token=TOKEN, read_only=True), base_url=BASE)
    assert _post(read_only, body).status_code == 403
    assert 'data-writable="no"' in read_only.get("/page/1").text
    app = TestClient(create_app(view, token=TOKEN), base_url=BASE)
    with FileLock(run_copy / ".lock", is_singleton=False):  # what `docrerank generate` holds while it writes
        assert view.in_progress
        assert _post(app, body).status_code == 403 and "read-only" in app.get("/page/1").text
        kept_files = [p for p in (run_copy / "stages" / "selected").glob("*.jsonl") if ".rejected" not in p.name]
        shard = next(p for p in kept_files if p.read_text().strip())
        kept = len(shard.read_text().splitlines())
        before = sum(i.stage == "selected" and i.status == "kept" for i in view.all_items())
        shard.write_text("")  # the generation rewrites a shard: a request while it runs reads it as it is now
        app.get("/")
        assert sum(i.stage == "selected" and i.status == "kept" for i in view.all_items()) == before - kept
    assert _post(app, body).status_code == 201
