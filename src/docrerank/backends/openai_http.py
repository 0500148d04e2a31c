"""Any OpenAI-compatible chat-completions server: vLLM, Ollama, llama.cpp's server, OpenAI and the like.

Requests go out concurrently (bounded by ``max_concurrency``) over one aiohttp connection pool per batch
(aiohttp rather than httpx: httpx's pool costs grow with the square of the open connections, which
capped it at a tenth of the ideal rate at 64 concurrent requests here).
Retries with exponential backoff and full jitter cover 429, 5xx, connection errors, timeouts and
unreadable bodies; a ``Retry-After`` header, when sent, sets the wait instead. When retries run out the
request's result carries the error; the batch goes on. The API key is read from the environment variable
the config names, at request time, and is never stored, logged or cached.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import re
import time
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import ConfigDict, Field, field_validator
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from docrerank.backends.base import Backend, BackendConfig, Capability, emit_result, scores_from_top_tokens
from docrerank.backends.messages import (
    ChatRequest,
    ChoiceRequest,
    ChoiceScores,
    Generation,
    ImagePart,
    Message,
    Usage,
)
from docrerank.errors import DocrerankError

__all__ = [
    "OpenAIBackend",
    "OpenAIConfig",
    "chat_body",
    "choice_body",
    "generation_from_response",
    "scores_from_response",
    "to_openai_messages",
]

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAIConfig(BackendConfig):
    """An OpenAI-compatible server. Say what the server supports; the stages check it at start-up."""

    # A key pasted where its variable's name belongs must not be echoed into error messages and logs.
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["openai"] = "openai"
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str
    api_key_env: str | None = Field(
        None, description="NAME of the environment variable that holds the API key (never the key itself)"
    )
    max_concurrency: int = Field(16, ge=1, le=1024)
    timeout_s: float = Field(120.0, gt=0, description="per request, per attempt")
    max_retries: int = Field(5, ge=0)
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    retry_after_max_s: float = Field(120.0, gt=0, description="longest Retry-After honoured")
    supports_images: bool = False
    supports_logprobs: bool = True
    json_mode: Literal["json_schema", "json_object", "none"] = Field(
        "json_schema", description="how the server takes a JSON schema; 'none': parse and repair the text"
    )
    top_logprobs: int = Field(20, ge=1, le=20)
    extra_body: dict[str, Any] = Field(default_factory=dict, description="extra fields sent with each request")

    @field_validator("api_key_env")
    @classmethod
    def _a_name_not_a_key(cls, value: str | None) -> str | None:
        if value is not None and (not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) or _looks_like_a_key(value)):
            raise ValueError("api_key_env takes the NAME of an environment variable (e.g. OPENAI_API_KEY), not the key")
        return value


def _looks_like_a_key(value: str) -> bool:
    """Long, with lower-case letters and digits, at most one underscore (``hf_...``): a token, not a name."""
    return len(value) >= 20 and value.count("_") <= 1 and bool(re.search(r"[a-z]", value) and re.search(r"\d", value))


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    pass


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header value (delta-seconds or an HTTP date), if any."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Chat turns in the OpenAI format; images as data URLs."""
    converted = []
    for message in messages:
        if not message.has_images:
            converted.append({"role": message.role, "content": message.text})
            continue
        content = [
            {"type": "image_url", "image_url": {"url": part.data_url()}}
            if isinstance(part, ImagePart)
            else {"type": "text", "text": part.text}
            for part in message.parts
        ]
        converted.append({"role": message.role, "content": content})
    return converted


class OpenAIBackend(Backend):
    type_name: ClassVar[str] = "openai"
    install_hint: ClassVar[str] = "built in (aiohttp); point base_url at any OpenAI-compatible server"
    config_class: ClassVar[type[BackendConfig]] = OpenAIConfig
    config: OpenAIConfig
    # with a server that supports everything; the config says what this one does
    best_capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)

    @property
    def capabilities(self) -> frozenset[Capability]:
        caps = set()
        if self.config.supports_images:
            caps.add(Capability.IMAGES)
        if self.config.supports_logprobs:
            caps.add(Capability.LOGPROBS)
        if self.config.json_mode != "none":
            caps.add(Capability.JSON_SCHEMA)
        return frozenset(caps)

    def identity(self) -> dict[str, Any]:
        config = self.config
        return {
            "type": self.type_name,
            "base_url": config.base_url.rstrip("/"),
            "model": config.model,
            # what else changes the outputs: constrained decoding, the top-k that choice scores read, extras
            "json_mode": config.json_mode,
            "top_logprobs": config.top_logprobs,
            "extra_body": config.extra_body,
        }

    # -- HTTP -----------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        if self.config.api_key_env is None:
            return {}
        key = os.environ.get(self.config.api_key_env)
        if not key:
            raise DocrerankError(
                f"backend {self.label!r}: the environment variable {self.config.api_key_env} is not set; "
                "export it with the API key, or set api_key_env: null for a server without auth"
            )
        return {"Authorization": f"Bearer {key}"}

    def _redact(self, text: str) -> str:
        """``text`` without the API key: a server or proxy may echo the request's credentials in an error,
        and errors and raw bodies are written to the run directory and logs."""
        key = os.environ.get(self.config.api_key_env) if self.config.api_key_env else None
        return text.replace(key, "[API key removed]") if key else text

    def _session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.config.max_concurrency, ttl_dns_cache=300)
        return aiohttp.ClientSession(
            base_url=self.config.base_url.rstrip("/") + "/",
            headers=self._headers(),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            connector=connector,
        )

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Retryable) and error.retry_after is not None:
            return min(error.retry_after, self.config.retry_after_max_s)
        return wait_random_exponential(multiplier=self.config.backoff_base_s, max=self.config.backoff_max_s)(state)

    async def _post(
        self, session: aiohttp.ClientSession, gate: asyncio.Semaphore, body: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, str | None, int, str]:
        """POST one chat completion with retries: (response JSON or None, error or None, attempts, raw)."""
        attempts = 0
        raw = ""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    async with gate:
                        try:
                            async with session.post("chat/completions", json=body) as response:
                                status = response.status
                                retry_after = _retry_after(response.headers.get("Retry-After"))
                                raw = await response.text(errors="replace")
                        except asyncio.TimeoutError:
                            raise _Retryable(f"timed out after {self.config.timeout_s:g} s") from None
                        except aiohttp.ClientError as exc:
                            raise _Retryable(f"connection error ({type(exc).__name__}: {exc})") from None
                    if status in RETRY_STATUS:
                        raise _Retryable(f"HTTP {status}: {raw[:200]}", retry_after)
                    if status != 200:
                        raise _Fatal(f"HTTP {status}: {raw[:500]}")
                    try:
                        return json.loads(raw), None, attempts, raw
                    except ValueError:
                        raise _Retryable(f"the server sent a body that is not JSON: {raw[:200]!r}") from None
        except _Retryable as exc:
            return None, self._redact(f"{exc} (gave up after {attempts} attempts)"), attempts, self._redact(raw)
        except _Fatal as exc:
            return None, self._redact(str(exc)), attempts, self._redact(raw)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- operations -----------------------------------------------------------------------------------

    async def _generate_one(self, session, gate, request: ChatRequest) -> Generation:
        started = time.perf_counter()
        data, error, attempts, raw = await self._post(session, gate, chat_body(self.config, request))
        if data is None:
            result = Generation(error=error, text=raw)
        else:
            result = generation_from_response(data, raw)
        result.attempts, result.latency_s = attempts, time.perf_counter() - started
        return result

    async def _score_one(self, session, gate, request: ChoiceRequest) -> ChoiceScores:
        started = time.perf_counter()
        data, error, attempts, raw = await self._post(session, gate, choice_body(self.config, request))
        if data is None:
            result = ChoiceScores(error=error)
        else:
            result = scores_from_response(request.choices, data, raw)
        result.attempts, result.latency_s = attempts, time.perf_counter() - started
        return result

    async def _run_all(self, requests: list, one) -> list:
        gate = asyncio.Semaphore(self.config.max_concurrency)

        async def run(position: int, session, request):
            result = await one(session, gate, request)
            emit_result(position, result)
            return result

        async with self._session() as session:
            return list(await asyncio.gather(*(run(i, session, r) for i, r in enumerate(requests))))

    async def _generate(self, requests: list[ChatRequest]) -> list[Generation]:
        return await self._run_all(requests, self._generate_one)

    async def _score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScores]:
        return await self._run_all(requests, self._score_one)


def chat_body(config: OpenAIConfig, request: ChatRequest) -> dict[str, Any]:
    """The chat-completions body of a generation request (also what a Batch API line carries)."""
    sampling = request.sampling
    body: dict[str, Any] = {
        "model": config.model,
        "messages": to_openai_messages(request.messages),
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        **config.extra_body,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if request.json_schema is not None and config.json_mode == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": request.json_schema, "strict": True},
        }
    elif request.json_schema is not None and config.json_mode == "json_object":
        body["response_format"] = {"type": "json_object", "schema": request.json_schema}
    return body


def choice_body(config: OpenAIConfig, request: ChoiceRequest) -> dict[str, Any]:
    """The body of a choice-scoring request: one greedy token with the top log-probabilities."""
    return {
        "model": config.model,
        "messages": to_openai_messages(request.messages),
        "max_tokens": 1,
        "temperature": 0.0,
        "logprobs": True,
        "top_logprobs": config.top_logprobs,
        **config.extra_body,
    }


def generation_from_response(data: Any, raw: str = "") -> Generation:
    """A Generation from a chat-completions response body (an error result if it has no message)."""
    try:
        choice = data["choices"][0]
        text = choice["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        return Generation(error="response has no choices[0].message.content", text=raw or str(data)[:2000])
    usage = data.get("usage") or {}
    return Generation(
        text=text,
        finish_reason=choice.get("finish_reason"),
        usage=Usage(
            prompt_tokens=usage.get("prompt_tokens") or 0, completion_tokens=usage.get("completion_tokens") or 0
        ),
    )


def scores_from_response(choices: tuple[str, ...], data: Any, raw: str = "") -> ChoiceScores:
    """Choice scores from a response with ``top_logprobs`` on its first token."""
    try:
        top = data["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        pairs = [(item["token"], float(item["logprob"])) for item in top]
    except (KeyError, IndexError, TypeError):
        return ChoiceScores(
            error=f"the server returned no top_logprobs (set supports_logprobs: false for it): {raw[:200]}"
        )
    scores = scores_from_top_tokens(choices, pairs)
    scores.usage = Usage(prompt_tokens=((data.get("usage") or {}).get("prompt_tokens") or 0))
    return scores
