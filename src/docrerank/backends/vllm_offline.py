"""vLLM offline batch inference (GPU only): a whole batch of chats handed to ``vllm.LLM.chat`` at once.

vLLM cannot be installed on CPU-only machines (a CUDA build with its own torch), so this module imports
it only when a model is loaded, and a missing vLLM is a clear error with the install hint. The request
bodies are the OpenAI chat format (vLLM takes it, images as data URLs), and scores come from the top-k
log-probabilities of one generated token, exactly as for an OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import threading
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

    capabilities = frozenset(Capability)  # type: ignore[assignment]

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
            self._llm = vllm.LLM(
                model=config.model,
                dtype=config.dtype,
                tensor_parallel_size=config.tensor_parallel_size,
                gpu_memory_utilization=config.gpu_memory_utilization,
                max_model_len=config.max_model_len,
                limit_mm_per_prompt={"image": config.max_images_per_prompt},
                trust_remote_code=config.trust_remote_code,
            )
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

    def _generate_sync(self, requests: list[ChatRequest]) -> list[Generation]:
        conversations = [to_openai_messages(r.messages) for r in requests]
        with self._lock:
            outputs = self.llm.chat(conversations, [self._sampling(r) for r in requests], use_tqdm=False)
        results = []
        for output in outputs:
            completion = output.outputs[0]
            results.append(
                Generation(
                    text=completion.text,
                    finish_reason=completion.finish_reason,
                    usage=Usage(
                        prompt_tokens=len(output.prompt_token_ids or []),
                        completion_tokens=len(completion.token_ids),
                    ),
                )
            )
        return results

    def _score_sync(self, requests: list[ChoiceRequest]) -> list[ChoiceScores]:
        vllm = self._vllm()
        params = vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.config.top_logprobs)
        conversations = [to_openai_messages(r.messages) for r in requests]
        with self._lock:
            outputs = self.llm.chat(conversations, params, use_tqdm=False)
        results = []
        for request, output in zip(requests, outputs, strict=True):
            top = output.outputs[0].logprobs[0]  # token id -> Logprob(logprob, rank, decoded_token)
            pairs = [(item.decoded_token or "", float(item.logprob)) for item in top.values()]
            results.append(scores_from_top_tokens(request.choices, pairs))
        return results

    async def _generate(self, requests: list[ChatRequest]) -> list[Generation]:
        return await asyncio.to_thread(self._generate_sync, requests)

    async def _score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScores]:
        return await asyncio.to_thread(self._score_sync, requests)
