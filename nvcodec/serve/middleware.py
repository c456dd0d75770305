"""The limits every HTTP request meets before the app: bearer token, requests in flight, body size
and the time a client may take to send its body. Pure ASGI, so a refused request costs no parsing."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Any, Awaitable, Callable

from fastapi import HTTPException

from ..jsonout import dumps
from .errors import Busy, RequestTimeout, ServeError, TooLarge, Unauthorized, error_body

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPEN_PATHS = frozenset({"/healthz"})
"""Paths served without a token."""
UNLIMITED_PATHS = frozenset({"/healthz", "/metrics"})
"""Paths that never count against --max-concurrent (probes must get through under load)."""


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(path: str) -> str:
    """The endpoint a path belongs to (a bounded label for metrics)."""
    if path.startswith("/v1/videos/"):
        return "/v1/videos/{name}/frames/{i}.png" if "/frames/" in path else "/v1/videos/{name}"
    if path in ("/v1/videos", "/v1/infer", "/healthz", "/metrics", "/openapi.json"):
        return path
    return "other"


async def send_error(send: Send, exc: ServeError, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer `exc` as a JSON error, straight on the ASGI channel."""
    body = dumps(error_body(exc)).encode()
    await send({"type": "http.response.start", "status": exc.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: auth (`token`), `max_concurrent` requests in flight (429 beyond), bodies of at
    most `max_body` bytes (413) sent within `body_timeout` seconds (408); `observe(route, method,
    status, seconds)` records every request; `counter` holds `in_flight`."""

    def __init__(self, app: Callable, *, token: str | None, max_concurrent: int, max_body: int,
                 body_timeout: float, counter: Any, observe: Callable[[str, str, int, float], None]) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_concurrent = max_concurrent
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.counter = counter
        self.observe = observe

    def _authorized(self, scope: Scope) -> bool:
        if self.token is None or scope["path"] in OPEN_PATHS:
            return True
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        scope.setdefault("state", {})["started"] = started
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        limited = scope["path"] not in UNLIMITED_PATHS
        counted = False
        try:
            if not self._authorized(scope):
                await send_error(sending, Unauthorized("missing or wrong bearer token"),
                                 [(b"www-authenticate", b'Bearer realm="nvcodec"')])
                return
            if limited:
                if self.counter.in_flight >= self.max_concurrent:
                    await send_error(sending, Busy(f"more than {self.max_concurrent} requests in flight; retry later"),
                                     [(b"retry-after", b"1")])
                    return
                self.counter.in_flight += 1
                counted = True
            length = dict(scope.get("headers", [])).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await send_error(sending, TooLarge(f"request body over --max-body {self.max_body} bytes"))
                return
            await self.app(scope, self._receiving(receive, started), sending)
        finally:
            if counted:
                self.counter.in_flight -= 1
            method = scope.get("method", "")
            self.observe(route_label(scope["path"]), method if method in METHODS else "other", status[0],
                         time.monotonic() - started)

    def _receiving(self, receive: Receive, started: float) -> Receive:
        seen = [0]
        done = [False]

        async def wrapped() -> Message:
            if done[0]:
                return await receive()
            left = started + self.body_timeout - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(0.001, left))
            except asyncio.TimeoutError:
                raise HTTPException(RequestTimeout.status, str(RequestTimeout(
                    f"the request body took longer than {self.body_timeout:g} s"))) from None
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_body:
                    raise HTTPException(TooLarge.status, f"request body over --max-body {self.max_body} bytes")
                if not message.get("more_body", False):
                    done[0] = True
            else:
                done[0] = True
            return message

        return wrapped
