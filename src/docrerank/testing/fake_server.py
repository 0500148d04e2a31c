"""A FAKE OpenAI-compatible server on loopback, for fault injection and for timing the orchestration.

It is not a model: it answers chat completions with a canned text after a fixed latency, or misbehaves
on purpose (429 with and without Retry-After, 500, a hang past the client's timeout, a dropped
connection, a body that is not JSON, a reply with empty or cut-off content, an error that echoes the
request's credentials), following a script in arrival order or a ``plan`` that decides per request body
(so that a fault follows its request across retries and runs). The tests use it to check retries and
error recording, and its ``on_request`` hook to time orchestration (the reliability suite SIGKILLs a
client when its Nth request arrives); bench/backends.py uses it to measure how close the HTTP backend
gets to ideal concurrency.
Real model servers are tested with the real ``llama_cpp.server``.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) on a raw asyncio server in a thread,
so that it is cheap enough not to be the bottleneck at hundreds of requests a second.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus

__all__ = ["FAULTS", "FakeOpenAIServer", "body_key", "schema_answer"]

# Script actions: "ok", "429", "429:<seconds>" (with Retry-After), "500" (or any other status code, e.g.
# "400"), "hang", "drop", "malformed" (an HTTP body of cut-off JSON), "empty" (200, empty content),
# "truncated" (200, the answer's content cut in half, finish_reason "length"), "echo-auth" (401 whose error
# message repeats the Authorization header, as a careless proxy might). "empty" and "truncated" carry no
# logprobs, so a choice request fails on them too.
FAULTS = ("429", "500", "hang", "drop", "malformed", "empty", "truncated", "echo-auth")


def body_key(body: dict) -> str:
    """A short stable key of a request body, to count requests per body at the server."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _Log:
    requests: int = 0
    actions: list[str] = field(default_factory=list)
    bodies: list[dict] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # request headers, names in lower case
    times: list[float] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # body_key of each request, in arrival order


def _schema_instance(schema: dict, root: dict, key: str) -> object:
    """A small valid instance of a JSON schema, its strings questions made distinct by ``key`` (the path)."""
    if "$ref" in schema:
        return _schema_instance(root["$defs"][schema["$ref"].rsplit("/", 1)[-1]], root, key)
    if "anyOf" in schema:
        return _schema_instance(next(s for s in schema["anyOf"] if s.get("type") != "null"), root, key)
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {
            name: _schema_instance(sub, root, f"{key} {name}") for name, sub in schema.get("properties", {}).items()
        }
    if kind == "array":
        n = min(max(schema.get("minItems", 0), 3), schema.get("maxItems", 3))
        return [_schema_instance(schema.get("items", {}), root, f"{key} {i}") for i in range(n)]
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if key.endswith(" answer"):
        return "it"  # an answer no page check can refute: a fake's made-up answer would drop every positive
    return f"What is {key.strip()} here?"


def schema_answer(body: dict) -> str:
    """The canned answer to a request with a JSON schema: a valid instance whose strings differ per request."""
    schema = body["response_format"]["json_schema"]["schema"]
    digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()[:8]
    return json.dumps(_schema_instance(schema, schema, f"item x{digest}"))


def _completion(body: dict, text: str, finish_reason: str = "stop", logprobs: bool = True) -> dict:
    result: dict = {
        "id": "fake",
        "object": "chat.completion",
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }
    if body.get("logprobs") and logprobs:
        top = [{"token": "yes", "logprob": -0.2}, {"token": "no", "logprob": -1.8}, {"token": "Yes", "logprob": -3.0}]
        result["choices"][0]["logprobs"] = {"content": [{"token": "yes", "logprob": -0.2, "top_logprobs": top}]}
    return result


class FakeOpenAIServer:
    """Run with ``with FakeOpenAIServer(script=["429", "ok"]) as server: ... server.url``.

    Args:
        script: actions for the requests in arrival order; the last one repeats (default: always "ok").
        latency_s: delay before every answer (also before errors).
        hang_s: how long "hang" waits before closing without an answer.
        text: the content of "ok" answers.
        answer_schemas: answer a request that sends a JSON schema (``response_format``) with a valid
            instance of it instead of ``text`` (``schema_answer``), so a whole pipeline can run against
            the server; its strings are questions that differ per request, not meaningful ones.
        separate_process: serve from a child process, so that the server does not share the GIL with the
            client being measured (for benchmarks; ``log`` then stays empty).
        plan: instead of the script, the action for each request from its decoded body and how many times
            that body arrived before (0 the first time): a fault bound to a request, not to an arrival slot.
        on_request: called with the request's arrival number (1-based) and its body as it arrives, before
            any answer: the hook that times orchestration (e.g. kill the client at its Nth request).
    """

    def __init__(
        self,
        script: Iterable[str] = ("ok",),
        latency_s: float = 0.0,
        hang_s: float = 30.0,
        text: str = "ok",
        separate_process: bool = False,
        answer_schemas: bool = False,
        plan: Callable[[dict, int], str] | None = None,
        on_request: Callable[[int, dict], None] | None = None,
    ):
        self.answer_schemas = answer_schemas
        self.plan = plan
        self.on_request = on_request
        self._seen: Counter[str] = Counter()
        self._script = list(script) or ["ok"]
        self.latency_s = latency_s
        self.hang_s = hang_s
        self.text = text
        self.log = _Log()
        self._counter = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self.separate_process = separate_process
        self.record = not separate_process  # a child's log cannot be read back, so it keeps none
        self._plain_ok = json.dumps(_completion({}, text)).encode()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def backend_config(self, max_concurrency: int) -> dict:
        """An ``openai`` backend config for this server: no retries, so a fault shows as it happens."""
        return {
            "type": "openai",
            "base_url": self.url,
            "model": "fake",
            "max_concurrency": max_concurrency,
            "max_retries": 0,
            "timeout_s": 30,
        }

    def _action(self) -> str:
        index = next(self._counter)
        return self._script[min(index, len(self._script) - 1)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers_in: dict[str, str] = {}
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip():
                        headers_in[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
                length = int(headers_in.get("content-length", 0))
                raw = await reader.readexactly(length) if length else b""
                body: dict = {}
                if (
                    self.record
                    or self.plan is not None
                    or b'"logprobs"' in raw
                    or (self.answer_schemas and b'"response_format"' in raw)
                ):  # decoding every body would make the server the bottleneck
                    try:
                        body = json.loads(raw or b"{}")
                    except json.JSONDecodeError:
                        pass
                if self.plan is not None:
                    key = body_key(body)
                    action = self.plan(body, self._seen[key])
                    self._seen[key] += 1
                else:
                    action = self._action()
                if self.record:
                    self.log.requests += 1
                    self.log.actions.append(action)
                    self.log.times.append(time.perf_counter())
                    self.log.bodies.append(body)
                    self.log.headers.append(headers_in)
                    self.log.keys.append(body_key(body))
                if self.on_request is not None:
                    self.on_request(self.log.requests, body)
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                if action == "hang":
                    await asyncio.sleep(self.hang_s)
                    break
                if action == "drop":
                    break
                status, headers, payload = 200, {}, b""
                if action == "ok" and not body:
                    payload = self._plain_ok
                elif action == "ok":
                    schema = self.answer_schemas and "json_schema" in body.get("response_format", {})
                    text = schema_answer(body) if schema else self.text
                    payload = json.dumps(_completion(body, text)).encode()
                elif action == "malformed":
                    payload = b'{"choices": [ {"message": '
                elif action in ("empty", "truncated"):
                    schema = self.answer_schemas and "json_schema" in body.get("response_format", {})
                    full = schema_answer(body) if schema else self.text
                    text, finish = ("", "stop") if action == "empty" else (full[: len(full) // 2], "length")
                    payload = json.dumps(_completion(body, text, finish, logprobs=False)).encode()
                elif action == "echo-auth":
                    status = 401
                    message = f"invalid credentials: {headers_in.get('authorization', '(none)')}"
                    payload = json.dumps({"error": {"message": message}}).encode()
                elif action.startswith("429"):
                    status, payload = 429, b'{"error": {"message": "rate limited"}}'
                    if ":" in action:
                        headers["Retry-After"] = action.split(":", 1)[1]
                elif action.isdigit():
                    status = int(action)
                    payload = json.dumps({"error": {"message": HTTPStatus(status).phrase.lower()}}).encode()
                else:
                    raise ValueError(f"unknown fake-server action {action!r}")
                reason = HTTPStatus(status).phrase
                lines = [
                    f"HTTP/1.1 {status} {reason}",
                    "Content-Type: application/json",
                    f"Content-Length: {len(payload)}",
                ]
                lines += [f"{k}: {v}" for k, v in headers.items()]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _serve_in_child(self, port_pipe) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024))
        port_pipe.send(self._server.sockets[0].getsockname()[1])
        self._loop.run_forever()

    def __enter__(self) -> FakeOpenAIServer:
        if self.separate_process:
            parent, child = multiprocessing.get_context("spawn").Pipe()
            self._process = multiprocessing.get_context("spawn").Process(
                target=self._serve_in_child, args=(child,), daemon=True
            )
            self._process.start()
            self.port = parent.recv()
            return self
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def __getstate__(self) -> dict:  # what a child process needs to serve
        return {k: v for k, v in self.__dict__.items() if k not in ("_loop", "_server", "_thread", "_process")}

    def __exit__(self, *exc_info) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(10)
            return
        loop = self._loop
        if loop is None:
            return

        async def shutdown() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
