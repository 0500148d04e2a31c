"""The ASGI guards in front of the routes: the API key (401) and the body size limit (413), both answered before
FastAPI reads or parses a byte of the body, so an unauthenticated or oversize request costs the server nothing."""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["OPEN_PATHS", "ApiKeyAuth", "BodySizeLimit"]

OPEN_PATHS = frozenset({"/health"})  # the routes answered without the API key


async def _send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """Answers 413 to a request body over ``max_bytes`` (declared or streamed), before anything parses it."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _too_large(self, send: Send, size: str) -> None:
        await _send_json(
            send, 413, f"the request body is {size} bytes, over the limit of {self.max_bytes} (max_body_bytes)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send, declared.decode())
            return
        body, more = bytearray(), True
        while more:  # read the whole body (at most max_bytes), then hand it on
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._too_large(send, f"over {self.max_bytes}")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


class ApiKeyAuth:
    """Answers 401 to a request without ``Authorization: Bearer <key>``, on every route but ``OPEN_PATHS``."""

    def __init__(self, app: ASGIApp, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            await self.app(scope, receive, send)
            return
        detail = "this server needs an API key: send `Authorization: Bearer <key>` (the key its operator set)"
        await _send_json(send, 401, detail, [(b"www-authenticate", b"Bearer")])
