"""Model backends: one batch-first interface over llama.cpp, OpenAI-compatible servers, transformers, vLLM."""

from docrerank.backends.base import Backend, BackendConfig, BackendStats, Capability, CapabilityError
from docrerank.backends.bundles import BUNDLES, resolve_bundle
from docrerank.backends.cache import ResponseCache
from docrerank.backends.messages import (
    ChatRequest,
    ChoiceRequest,
    ChoiceScores,
    Generation,
    ImagePart,
    Message,
    SamplingParams,
    TextPart,
    Usage,
)
from docrerank.backends.registry import AnyBackendConfig, backends_with, load_backend, load_backend_config

__all__ = [
    "AnyBackendConfig",
    "BUNDLES",
    "Backend",
    "BackendConfig",
    "BackendStats",
    "Capability",
    "CapabilityError",
    "ChatRequest",
    "ChoiceRequest",
    "ChoiceScores",
    "Generation",
    "ImagePart",
    "Message",
    "ResponseCache",
    "SamplingParams",
    "TextPart",
    "Usage",
    "backends_with",
    "load_backend",
    "load_backend_config",
    "resolve_bundle",
]
