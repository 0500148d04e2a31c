"""vLLM offline batch inference (GPU only): a whole batch of chats handed to ``vllm.LLM.chat`` at once.

vLLM cannot be installed on CPU-only machines (a CUDA build with its own torch), so this module imports
it only when a model is loaded, and a missing vLLM is a clear error with the install hint. The request
bodies are the OpenAI chat format (vLLM takes it, images as data URLs), and scores come from the top-k
log-probabilities of one generated token, exactly as for an OpenAI-compatible server.

Every failure is a per-request result (``error`` set), as for every backend: a request vLLM refuses or fails
on, alone or as part of a batch it rejects whole, never stops the others. A vLLM that is not installed or a
model that does not load is an error about the config, raised.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field

from docrerank.backends.base import Backend, BackendConfig, Capability, scores_from_top_tokens
from docrerank.backends.messages import ChatRequest, ChoiceRequest, ChoiceScores, Generation, Usage
from docrerank.backends.openai_http import to_openai_messages
from docrerank.errors import DocrerankError

__all__ = ["VllmBackend", "VllmConfig"]

INSTALL_HINT = "pip install vllm  (Linux with a CUDA GPU; it brings its own torch build)"


class VllmConfig(BackendConfig):
    type: Literal["vllm"] = "vllm"
    model: str
    dtype: str = "auto"
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_model_len: int | None = None
    max_images_per_prompt: int = Field(1, ge=0)
    top_logprobs: int = Field(20, ge=1)
    trust_remote_code: bool = False


class VllmBackend(Backend):
    type_name: ClassVar[str] = "vllm"
    install_hint: ClassVar[str] = INSTALL_HINT
    config_class: ClassVar[type[BackendConfig]] = VllmConfig
    config: VllmConfig

    best_capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)

    def __init__(self, config: VllmConfig, cache=None):
        super().__init__(config, cache)
        self._llm = None
        self._lock = threading.Lock()

    def identity(self) -> dict[str, Any]:
        return {"type": self.type_name, "model": self.config.model, "dtype": self.config.dtype}

    def _vllm(self):
        try:
            import vllm
        except ImportError as exc:
            raise DocrerankError(f"the vllm backend needs vLLM: {INSTALL_HINT} ({exc})") from None
        return vllm

    @property
    def llm(self):
        if self._llm is None:
            vllm = self._vllm()
            config = self.config
            try:
                self._llm = vllm.LLM(
                    model=config.model,
                    dtype=config.dtype,
                    tensor_parallel_size=config.tensor_parallel_size,
                    gpu_memory_utilization=config.gpu_memory_utilization,
                    max_model_len=config.max_model_len,
                    limit_mm_per_prompt={"image": config.max_images_per_prompt},
                    trust_remote_code=config.trust_remote_code,
                )
            except Exception as exc:  # noqa: BLE001 - vLLM's errors have no common base
                raise DocrerankError(
                    f"vLLM cannot load the model {config.model!r} ({type(exc).__name__}: {exc}): check the model "
                    "name or path, and lower gpu_memory_utilization or max_model_len if the GPU is short of memory"
                ) from exc
        return self._llm

    def _sampling(self, request: ChatRequest):
        vllm = self._vllm()
        sampling = request.sampling
        kwargs: dict[str, Any] = {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
            "stop": list(sampling.stop) or None,
        }
        if request.json_schema is not None:
            # vLLM renamed its constrained-decoding parameters; take whichever this version has.
            sampling_module = vllm.sampling_params
            if hasattr(sampling_module, "StructuredOutputsParams"):
                kwargs["structured_outputs"] = sampling_module.StructuredOutputsParams(json=request.json_schema)
            else:
                kwargs["guided_decoding"] = sampling_module.GuidedDecodingParams(json=request.json_schema)
        return vllm.SamplingParams(**kwargs)

    def _chat(self, conversations: list, params: list) -> list:
        with self._lock:
            return self.llm.chat(conversations, params, use_tqdm=False)

    def _run(
        self,
        requests: list,
        prepare: Callable[[Any], tuple[Any, Any]],
        read: Callable[[Any, Any], Any],
        failed: Callable[[str], Any],
    ) -> list:
        """Each request's result, never an exception: ``prepare(request)`` gives its (conversation, sampling
        params), ``read(request, output)`` its result from vLLM's output, ``failed(reason)`` a failed result.

        A request that cannot be prepared or read fails alone. One bad request in a batch (a prompt over
        ``max_model_len``, an image vLLM cannot take) makes ``LLM.chat`` raise for the whole batch: the batch
        is then halved and each half run again, down to the request that fails, so the others still get
        results; a batch that keeps failing ends as every request's error, and a dead engine fails what is
        left at once."""
        if requests:
            with self._lock:  # vLLM missing, a model that does not load: the config's error, raised
                self.llm  # noqa: B018
        results: list = [None] * len(requests)
        ready: list[tuple[int, Any, Any]] = []
        for index, request in enumerate(requests):
            try:
                conversation, params = prepare(request)
            except Exception as exc:  # noqa: BLE001 - a request vLLM would refuse: its own failure
                results[index] = failed(f"cannot build the vLLM request: {type(exc).__name__}: {exc}")
            else:
                ready.append((index, conversation, params))
        pending = [ready] if ready else []
        while pending:
            batch = pending.pop()
            try:
                outputs = self._chat([c for _, c, _ in batch], [p for _, _, p in batch])
                if len(outputs) != len(batch):
                    raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(batch)} requests")
            except Exception as exc:  # noqa: BLE001 - vLLM's errors have no common base
                reason = f"{type(exc).__name__}: {exc}"
                if type(exc).__name__ == "EngineDeadError":  # nothing more will run: fail the rest now
                    for index, _, _ in batch + [item for rest in pending for item in rest]:
                        results[index] = failed(f"the vLLM engine died: {reason}")
                    pending.clear()
                elif len(batch) > 1:
                    middle = len(batch) // 2
                    pending += [batch[middle:], batch[:middle]]
                else:
                    results[batch[0][0]] = failed(f"vLLM failed on this request: {reason}")
                continue
            for (index, _, _), output in zip(batch, outputs, strict=True):
                try:
                    results[index] = read(requests[index], output)
                except Exception as exc:  # noqa: BLE001 - an output without what was asked (no logprobs, ...)
                    results[index] = failed(f"cannot read vLLM's output: {type(exc).__name__}: {exc}")
        return results

    def _generate_sync(self, requests: list[ChatRequest]) -> list[Generation]:
        def read(request: ChatRequest, output: Any) -> Generation:
            completion = output.outputs[0]
            return Generation(
                text=completion.text,
                finish_reason=completion.finish_reason,
                usage=Usage(
                    prompt_tokens=len(output.prompt_token_ids or []),
                    completion_tokens=len(completion.token_ids),
                ),
            )

        return self._run(
            requests,
            lambda r: (to_openai_messages(r.messages), self._sampling(r)),
            read,
            lambda reason: Generation(error=reason),
        )

    def _score_sync(self, requests: list[ChoiceRequest]) -> list[ChoiceScores]:
        vllm = self._vllm()
        params = vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.config.top_logprobs)

        def read(request: ChoiceRequest, output: Any) -> ChoiceScores:
            top = output.outputs[0].logprobs[0]  # token id -> Logprob(logprob, rank, decoded_token)
            pairs = [(item.decoded_token or "", float(item.logprob)) for item in top.values()]
            scores = scores_from_top_tokens(request.choices, pairs)
            scores.usage = Usage(prompt_tokens=len(output.prompt_token_ids or []))
            return scores

        return self._run(
            requests,
            lambda r: (to_openai_messages(r.messages), params),
            read,
            lambda reason: ChoiceScores(error=reason),
        )

    async def _generate(self, requests: list[ChatRequest]) -> list[Generation]:
        return await asyncio.to_thread(self._generate_sync, requests)

    async def _score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScores]:
        return await asyncio.to_thread(self._score_sync, requests)
