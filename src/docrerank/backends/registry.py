"""Backend configs by ``type``, and building a backend from one.

The config models import nothing heavy, so a YAML file can be checked (and a missing capability reported)
before any model library is imported. Each backend class declares what its type can do at best
(``best_capabilities``); the ``openai`` type's actual capabilities come from its config (what the server
supports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import ConfigDict, Field, TypeAdapter

from docrerank.backends.base import Backend, BackendConfig, Capability
from docrerank.backends.cache import ResponseCache
from docrerank.backends.llamacpp import LlamaCppBackend, LlamaCppConfig
from docrerank.backends.openai_http import OpenAIBackend, OpenAIConfig
from docrerank.backends.transformers_local import TransformersBackend, TransformersConfig
from docrerank.backends.vllm_offline import VllmBackend, VllmConfig

__all__ = [
    "AnyBackendConfig",
    "BACKEND_TYPES",
    "backends_with",
    "best_capabilities",
    "load_backend",
    "load_backend_config",
]

AnyBackendConfig = Annotated[
    LlamaCppConfig | OpenAIConfig | TransformersConfig | VllmConfig, Field(discriminator="type")
]

BACKEND_TYPES: dict[str, type[Backend]] = {
    cls.type_name: cls for cls in (LlamaCppBackend, OpenAIBackend, TransformersBackend, VllmBackend)
}

# Errors leave the input values out: an API key pasted into a config must not reach messages and logs.
_adapter: TypeAdapter = TypeAdapter(AnyBackendConfig, config=ConfigDict(hide_input_in_errors=True))


def best_capabilities(backend_type: str) -> frozenset[Capability]:
    """What a backend type can do at best (the openai type: with a server that supports everything)."""
    return BACKEND_TYPES[backend_type].best_capabilities


def backends_with(capability: Capability) -> list[str]:
    """The backend types that can have ``capability``, as names to show a user."""
    notes = {"openai": "openai (if the server supports it)"}
    return [notes.get(name, name) for name, cls in BACKEND_TYPES.items() if capability in cls.best_capabilities]


def load_backend_config(source: dict[str, Any] | str | Path) -> BackendConfig:
    """A backend config from a dict or a YAML file; unknown fields and types are errors."""
    data = yaml.safe_load(Path(source).read_text()) if isinstance(source, (str, Path)) else source
    return _adapter.validate_python(data)


def load_backend(config: Any, cache: ResponseCache | str | Path | None = None) -> Backend:
    """Build the backend a config describes (a config object, a dict, or a YAML path).

    Nothing heavy is loaded here: models load on first use, so a failing capability check costs nothing.
    """
    if not hasattr(config, "type") or isinstance(config, dict):
        config = load_backend_config(config)
    if isinstance(cache, (str, Path)):
        cache = ResponseCache(cache)
    return BACKEND_TYPES[config.type](config, cache=cache)
