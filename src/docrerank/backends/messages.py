"""What goes into a model and what comes out, independent of the backend.

A request is a chat: system/user/assistant turns whose content mixes text and page images. Images are
carried as encoded bytes with a content hash, so requests can be hashed for the response cache without
re-encoding, and sent as data URLs (HTTP) or decoded to PIL (local models).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChatRequest",
    "ChoiceRequest",
    "ChoiceScores",
    "Generation",
    "ImagePart",
    "Message",
    "SamplingParams",
    "TextPart",
    "Usage",
]


class TextPart(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """A page image, held as encoded bytes (PNG or JPEG)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    type: Literal["image"] = "image"
    data: bytes = Field(repr=False)
    mime: str = "image/png"

    @classmethod
    def from_path(cls, path: str | Path) -> ImagePart:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            mime = Image.MIME.get(image.format or "", "")
        if mime not in ("image/png", "image/jpeg", "image/webp"):  # what chat APIs take: re-encode as PNG
            with Image.open(io.BytesIO(data)) as image:
                return cls.from_pil(image.convert("RGB"))
        return cls(data=data, mime=mime)

    @classmethod
    def from_pil(cls, image: Image.Image) -> ImagePart:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return cls(data=buffer.getvalue(), mime="image/png")

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def to_pil(self) -> Image.Image:
        with Image.open(io.BytesIO(self.data)) as image:
            return image.convert("RGB")

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode()}"


Part = TextPart | ImagePart


class Message(BaseModel):
    """One chat turn. ``content`` is a string, or a list of text and image parts in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart | ImagePart]

    @property
    def parts(self) -> list[Part]:
        return [TextPart(text=self.content)] if isinstance(self.content, str) else list(self.content)

    @property
    def text(self) -> str:
        """The text parts, one per line (what a text-only backend sees)."""
        return "\n".join(part.text for part in self.parts if isinstance(part, TextPart))

    @property
    def has_images(self) -> bool:
        return any(isinstance(part, ImagePart) for part in self.parts)


class SamplingParams(BaseModel):
    """How to sample. ``temperature=0`` is greedy; ``seed`` makes sampling repeatable where supported."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(512, ge=1)
    seed: int | None = 0
    stop: tuple[str, ...] = ()


class ChatRequest(BaseModel):
    """A generation request: a chat, sampling settings, and optionally a JSON schema for the output."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    messages: list[Message]
    sampling: SamplingParams = SamplingParams()
    json_schema: dict[str, Any] | None = None
    id: str | None = Field(None, description="the caller's id, echoed in the result; not part of the cache key")

    @property
    def has_images(self) -> bool:
        return any(message.has_images for message in self.messages)

    def cache_payload(self) -> dict[str, Any]:
        """The request as hashed for the cache: images by content hash, the caller's id left out."""
        return {
            "messages": [_message_payload(m) for m in self.messages],
            "sampling": self.sampling.model_dump(mode="json"),
            "json_schema": self.json_schema,
        }


class ChoiceRequest(BaseModel):
    """A choice-scoring request: the probabilities of a few answers (e.g. yes/no) at the next token.

    The chat should end with the user turn that asks the question; the backend adds the assistant
    prefix of its chat template and reads the next-token distribution there.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    messages: list[Message]
    choices: tuple[str, ...] = ("yes", "no")
    id: str | None = None

    @property
    def has_images(self) -> bool:
        return any(message.has_images for message in self.messages)

    def cache_payload(self) -> dict[str, Any]:
        return {"messages": [_message_payload(m) for m in self.messages], "choices": list(self.choices)}


def _message_payload(message: Message) -> dict[str, Any]:
    parts = [
        {"type": "image", "sha256": part.sha256} if isinstance(part, ImagePart) else {"type": "text", "text": part.text}
        for part in message.parts
    ]
    return {"role": message.role, "content": parts}


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Generation(BaseModel):
    """A generation result. On failure ``error`` says why and ``text`` keeps whatever raw text came back.

    ``parsed`` holds the decoded JSON when the request had a ``json_schema`` and the output parsed. An
    ``error`` with ``output_error`` set is about the model's answer (it did not parse), not about getting one:
    that answer is cached like any other and a rerun does not ask again; any other error is a request
    that got no answer, which is never cached, so a rerun retries it.
    """

    id: str | None = None
    text: str = ""
    parsed: Any = None
    finish_reason: str | None = None
    usage: Usage = Usage()
    error: str | None = None
    output_error: bool = False
    cached: bool = False
    attempts: int = 1
    latency_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def answered(self) -> bool:
        """The model answered (its output may still be unusable): nothing to ask again."""
        return self.error is None or self.output_error


class ChoiceScores(BaseModel):
    """Next-token probabilities of each choice, normalised over the choices (they sum to 1).

    ``mass`` is the total probability the model put on the choices (and their case/space variants)
    before normalising: a low mass means the model wanted to say something else.
    """

    model_config = ConfigDict(ser_json_inf_nan="constants")

    id: str | None = None
    probs: dict[str, float] = {}
    logprobs: dict[str, float] = {}
    mass: float = 0.0
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)  # the prompt the model read (a choice decodes nothing)
    cached: bool = False
    attempts: int = 1
    latency_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def prob(self, choice: str) -> float:
        return self.probs[choice]


def payload_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
