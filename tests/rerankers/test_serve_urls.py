"""`docrerank serve --allow-urls`: image URLs fetched safely, over real HTTP on loopback only.

A loopback HTTP server (``http.server``, HTTP/1.1) serves images, redirects, oversize and slowly dribbled
bodies; the rerank server (uvicorn on 127.0.0.1) serves ``GrayPageModel`` of test_serve. Addresses that are
refused (127.0.0.2, 169.254.169.254, ::1) are never connected to: the refusal comes first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import free_port
from tests.rerankers.serving import image_bytes, serving
from tests.rerankers.test_serve import GrayPageModel

PAGE = image_bytes(77)
SECRET = "SECRET-upstream-detail-10.0.0.7"


class Files(BaseHTTPRequestHandler):
    """Routes: /page.png, /slow.png (dribbled in pieces), /big (declared), /big-chunked (no length),
    /error (a 500 whose body must not reach the client), /to/<target> (a 302 to the target of that name)."""

    protocol_version = "HTTP/1.1"
    redirects: dict[str, str] = {}

    def log_message(self, *args) -> None:
        pass

    def _head(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/page.png":
            self._head(200, {"Content-Type": "image/png", "Content-Length": str(len(PAGE))})
            self.wfile.write(PAGE)
        elif self.path == "/slow.png":
            self._head(200, {"Content-Type": "image/png", "Content-Length": str(len(PAGE))})
            for start in range(0, len(PAGE), 10):  # the body in pieces, each sent apart from the next
                self.wfile.write(PAGE[start : start + 10])
                self.wfile.flush()
                time.sleep(0.02)
        elif self.path == "/big":
            self._head(200, {"Content-Type": "image/png", "Content-Length": "60000"})
            self.wfile.write(bytes(60_000))
        elif self.path == "/big-chunked":
            self._head(200, {"Content-Type": "image/png", "Transfer-Encoding": "chunked"})
            for _ in range(6):
                self.wfile.write(b"2710\r\n" + bytes(10_000) + b"\r\n")  # 0x2710 = 10000
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/error":
            body = SECRET.encode()
            self._head(500, {"Content-Length": str(len(body))})
            self.wfile.write(body)
        elif self.path.startswith("/to/"):
            self._head(302, {"Location": self.redirects[self.path[4:]], "Content-Length": "0"})
        else:
            self._head(404, {"Content-Length": "0"})


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    Files.redirects.update(
        {
            "page": "/page.png",
            "chain": f"{base}/to/page",  # two hops, then the image
            "other-loopback": f"http://127.0.0.2:{server.server_address[1]}/page.png",
            "metadata": "http://169.254.169.254/latest/meta-data/",
            "ipv6-loopback": f"http://[::1]:{server.server_address[1]}/page.png",
            "chain-to-metadata": f"{base}/to/metadata",
            "loop": f"{base}/to/loop",
            "file": "file:///etc/passwd",
        }
    )
    yield base
    server.shutdown()


def rerank(client, *urls: str):
    return client.post("/v1/rerank", json={"query": "q", "documents": [{"image": url} for url in urls]})


def test_a_loopback_url_is_refused_by_default_and_fetched_with_the_explicit_allowance(files):
    with serving(GrayPageModel(), allow_urls=True) as client:
        for url in (f"{files}/page.png", files.replace("127.0.0.1", "localhost") + "/page.png"):
            refused = rerank(client, url)  # a literal loopback address, and a name that resolves to one
            assert refused.status_code == 400, refused.text
            detail = refused.json()["detail"]
            assert "documents[0]" in detail and "does not fetch from" in detail and "--allow-private-urls" in detail
    with serving(GrayPageModel(), allow_urls=True, allow_private_urls=True) as client:
        fetched = rerank(client, f"{files}/page.png", files.replace("127.0.0.1", "localhost") + "/page.png")
        assert fetched.status_code == 200, fetched.text
        assert [r["relevance_score"] for r in fetched.json()["results"]] == pytest.approx([77 / 255] * 2)
    with serving(GrayPageModel(), allow_urls=True, allowed_url_networks=("127.0.0.1/32",)) as client:
        assert rerank(client, f"{files}/page.png").status_code == 200


@pytest.mark.parametrize("target", ["other-loopback", "metadata", "ipv6-loopback", "chain-to-metadata"])
def test_a_redirect_to_an_address_not_allowed_is_refused_at_that_hop(files, target):
    # 127.0.0.1 alone is allowed: the first hop is fetched, the redirect's target is not
    with serving(GrayPageModel(), allow_urls=True, allowed_url_networks=("127.0.0.1/32",)) as client:
        assert rerank(client, f"{files}/to/page").status_code == 200  # a redirect within what is allowed
        response = rerank(client, f"{files}/to/{target}")
        assert response.status_code == 400, response.text
        assert "does not fetch from" in response.json()["detail"]


def test_redirects_are_followed_hop_by_hop_up_to_the_limit_and_only_to_http(files):
    with serving(GrayPageModel(), allow_urls=True, allow_private_urls=True, max_redirects=3) as client:
        chained = rerank(client, f"{files}/to/chain", f"{files}/to/loop")
        assert chained.status_code == 200, chained.text
        results = chained.json()["results"]
        assert results[0] == {"index": 0, "relevance_score": pytest.approx(77 / 255)}
        assert results[1]["index"] == 1 and results[1]["relevance_score"] == -1.0  # not scored, ranked last
        assert any(
            "documents[1]" in w and "redirected more than 3 times" in w for w in chained.json()["meta"]["warnings"]
        )
        not_http = rerank(client, f"{files}/to/file")
        assert not_http.status_code == 400 and "not http(s)" in not_http.json()["detail"]


def test_a_body_over_max_image_bytes_is_refused_declared_or_streamed(files):
    with serving(GrayPageModel(), allow_urls=True, allow_private_urls=True, max_image_bytes=50_000) as client:
        for path in ("/big", "/big-chunked"):
            response = rerank(client, f"{files}{path}")
            assert response.status_code == 413, response.text
            assert "max_image_bytes" in response.json()["detail"] and "documents[0]" in response.json()["detail"]


def test_a_slowly_dribbled_body_is_read_completely(files):
    with serving(GrayPageModel(), allow_urls=True, allow_private_urls=True) as client:
        response = rerank(client, f"{files}/slow.png")
        assert response.status_code == 200, response.text
        assert response.json()["results"] == [{"index": 0, "relevance_score": pytest.approx(77 / 255)}]
        assert "warnings" not in response.json()["meta"]


def test_upstream_failures_are_per_document_and_never_echoed(files):
    closed = f"http://127.0.0.1:{free_port()}/page.png"
    with serving(GrayPageModel(), allow_urls=True, allow_private_urls=True) as client:
        response = rerank(client, f"{files}/error", f"{files}/page.png", f"{files}/none.png", closed)
        assert response.status_code == 200, response.text
        body = response.json()
        assert [r["index"] for r in body["results"]] == [1, 0, 2, 3]
        assert [r["relevance_score"] for r in body["results"][1:]] == [-1.0] * 3
        warnings = body["meta"]["warnings"]
        assert any("documents[0]" in w and "HTTP 500" in w for w in warnings)
        assert any("documents[2]" in w and "HTTP 404" in w for w in warnings)
        assert any("documents[3]" in w and "could not be fetched" in w for w in warnings)
        assert SECRET not in response.text and "Errno" not in response.text and "Connect" not in response.text
