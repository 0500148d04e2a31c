"""What the server tests share: the app served by a real uvicorn on a free port of 127.0.0.1, images, FAKE
rerankers that time orchestration only (no model), and a loopback HTTP server of images for the URL tests."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx
import uvicorn
from PIL import Image

from docrerank.pages.content import PageLike
from docrerank.rerankers import Reranker
from docrerank.rerankers.base import page_text
from docrerank.server import ServerSettings, create_app


def image_bytes(gray: int, fmt: str = "PNG", size: tuple[int, int] = (16, 12)) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, gray).save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@contextmanager
def serving(reranker: Reranker, warnings: list[str] | None = None, **settings) -> Iterator[httpx.Client]:
    """The app on a free port of 127.0.0.1, run by uvicorn in a thread; a client for it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    app = create_app(reranker, ServerSettings(**settings), warnings)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=120) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class FakeWordReranker(Reranker):
    """FAKE reranker, for orchestration tests only: a pair scores the share of the query's words found in the
    page's text. Each call is recorded (its pairs' queries); ``gate_call`` = n makes call n wait for ``gate``
    (``entered`` is set when it does), so a test can hold the model busy for as long as it needs, with no
    timing in the assertions. ``fail_query`` makes a call raise, like a model failing on an input."""

    kind = "fake-word-reranker"
    uses = frozenset({"text"})

    def __init__(self, gate_call: int | None = None, fail_query: str | None = None):
        self.calls: list[list[str]] = []
        self.gate_call, self.fail_query = gate_call, fail_query
        self.gate, self.entered = threading.Event(), threading.Event()

    def score(self, pairs: Sequence[tuple[str, PageLike]]) -> list[float]:
        self.calls.append([query for query, _ in pairs])
        if self.gate_call is not None and len(self.calls) == self.gate_call:
            self.entered.set()
            assert self.gate.wait(60), "the test never opened the gate"
        if self.fail_query is not None and any(query == self.fail_query for query, _ in pairs):
            raise RuntimeError("the FAKE model failed on this input")
        scores = []
        for query, page in pairs:
            words, text = query.lower().split(), set(page_text(page).lower().split())
            scores.append(sum(word in text for word in words) / len(words))
        return scores


def wait_until(condition, what: str, timeout: float = 60) -> None:
    """Poll ``condition`` until it holds (a test's synchronisation, never an assertion on time)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)
