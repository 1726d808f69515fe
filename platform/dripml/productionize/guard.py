"""Endpoint limits: what the prediction server checks before a request reaches the model.

:class:`RequestGuard` is a pure ASGI middleware, the outermost of dripml's in the BentoML
service (:func:`dripml.productionize.serving.build_service`). Per HTTP request, in order:

1. **Token** (only when one is configured, ``DRIPML_SERVE_TOKEN``): a request to a protected
   route (``/predict``) without ``Authorization: Bearer <token>`` gets a 401 before its body
   is read. The comparison is constant-time (:func:`hmac.compare_digest`); the token is never
   logged nor echoed. Health (``/healthz``, ``/livez``, ``/readyz``), ``/metrics`` and the
   docs stay open.
2. **Body limit** (``DRIPML_SERVE_MAX_BODY_MIB``, default 10 MiB): a ``Content-Length`` over
   the limit gets a 413 at once, without reading a byte of the body; a chunked body gets a
   413 as soon as what arrived passes the limit. At most the limit is ever held in memory.
3. **Truncated body**: a body that stops arriving (no data for :data:`BODY_IDLE_TIMEOUT_S`
   seconds, e.g. shorter than its ``Content-Length``) gets a 400 that says how many bytes
   came, instead of BentoML's 504 after its 60 s request timeout.

The body read here is handed on to the service as one message, so nothing is read twice.

Every 4xx body has one shape, :class:`ClientError` (``{"error": str, "error_count": int,
"detail": [{"loc": [...], "msg": str, "type": str}, ...]}``), declared in the OpenAPI document
(:func:`openapi_error_schemas`) and produced for BentoML's own 4xx by
:func:`dripml.productionize.serving.readable_error`.

:func:`exposure_warning` words the warning ``drip serve`` prints when it binds beyond loopback.
Importing this module imports neither BentoML nor anything else heavy.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dripml.core.network import is_loopback

__all__ = [
    "BODY_IDLE_TIMEOUT_S",
    "ClientError",
    "ErrorItem",
    "RequestGuard",
    "client_error",
    "exposure_warning",
    "is_loopback",
    "openapi_error_schemas",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read ``body`` to the next app as one
    ``http.request`` message, then defers to ``receive`` (a disconnect, say): how a middleware
    that had to read the body passes the request on (the request guard, the /predict fast
    path, the web page's CSRF check)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_IDLE_TIMEOUT_S = 1.0
"""Seconds a request body may stall (no byte arriving) before the request gets a 400."""

MIB = 1024 * 1024

_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


# --------------------------------------------------------------------------- the error shape


class ErrorItem(BaseModel):
    """One problem of a rejected request."""

    model_config = ConfigDict(extra="allow", title="ErrorItem")

    loc: list[str | int] = Field(description="where: e.g. [\"records\", 0, \"age\"], "
                                             "[\"body\"] or [\"header\", \"authorization\"]")
    msg: str = Field(description="what is wrong, in words")
    type: str = Field(description="a machine-readable kind, e.g. float_type, body_too_large, "
                                  "body_truncated, missing_token, invalid_token")


class ClientError(BaseModel):
    """The body of every 4xx response of the prediction server."""

    model_config = ConfigDict(title="ClientError")

    error: str = Field(description="one line naming each problem and what to do")
    error_count: int = Field(ge=0, description="how many problems (detail lists the first "
                                               "100)")
    detail: list[ErrorItem] = Field(description="the problems, one by one")


def client_error(message: str, *, kind: str, loc: tuple[str | int, ...] = ("body",)
                 ) -> dict[str, Any]:
    """A :class:`ClientError` body with one problem: ``message`` at ``loc`` of type ``kind``."""
    return {"error": message, "error_count": 1,
            "detail": [{"loc": list(loc), "msg": message, "type": kind}]}


def openapi_error_schemas() -> dict[str, dict[str, Any]]:
    """:class:`ClientError` and :class:`ErrorItem` as OpenAPI 3.0 component schemas (name ->
    schema), their references pointing at ``#/components/schemas/``."""
    schema = ClientError.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.pop("$defs", {})
    components["ClientError"] = schema
    return components


async def send_json(send: Send, status: int, body: dict[str, Any],
                    headers: Collection[tuple[bytes, bytes]] = ()) -> None:
    """Answer with ``status`` and ``body`` as JSON; the connection is closed afterwards (a
    body left unread must not be taken for the next request)."""
    content = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
        (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": content, "more_body": False})


# --------------------------------------------------------------------------- the middleware


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def _mib(n: float) -> str:
    return f"{n / MIB:g} MiB" if n >= MIB else f"{n:g} bytes"


class RequestGuard:
    """Pure ASGI middleware: token, body limit and truncated bodies (see the module docstring).

    Args:
        app: the ASGI app to guard.
        max_body_bytes: the largest request body read, bytes (> 0).
        token: the bearer token protected routes require; None: no token.
        protected: the paths that require the token.
        idle_timeout_s: seconds a body may stall before the request gets a 400.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, token: str | None = None,
                 protected: Collection[str] = ("/predict",),
                 idle_timeout_s: float = BODY_IDLE_TIMEOUT_S) -> None:
        if max_body_bytes <= 0:
            raise ValueError(f"max_body_bytes must be above 0, got {max_body_bytes}")
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._token = token.encode() if token else None
        self.protected = frozenset(protected)
        self.idle_timeout_s = idle_timeout_s

    def __repr__(self) -> str:  # never the token
        return (f"RequestGuard(max_body_bytes={self.max_body_bytes}, "
                f"token_required={self._token is not None})")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._token is not None and scope.get("path") in self.protected:
            problem = self._auth_problem(scope)
            if problem is not None:
                await send_json(send, 401, problem, [(b"www-authenticate", b"Bearer")])
                return
        length_header = _header(scope, b"content-length")
        chunked = b"chunked" in (_header(scope, b"transfer-encoding") or b"").lower()
        if scope.get("method") in _BODYLESS and length_header is None and not chunked:
            await self.app(scope, receive, send)
            return
        expected: int | None = None
        if length_header is not None:
            try:
                expected = int(length_header)
            except ValueError:
                expected = -1
            if expected < 0:
                await send_json(send, 400, client_error(
                    f"Content-Length {length_header.decode('latin-1')!r} is not a whole "
                    "number of bytes", kind="bad_content_length",
                    loc=("header", "content-length")))
                return
            if expected > self.max_body_bytes:
                await send_json(send, 413, self._too_large(f"Content-Length {expected} bytes"))
                return
        body = await self._read_body(receive, send, expected)
        if body is None:
            return
        await self.app(scope, replay_body(body, receive), send)

    def _auth_problem(self, scope: Scope) -> dict[str, Any] | None:
        assert self._token is not None
        value = _header(scope, b"authorization")
        if value is None:
            return client_error(
                f"{scope.get('path')} requires a token: send the header 'Authorization: "
                "Bearer <token>' with the server's DRIPML_SERVE_TOKEN", kind="missing_token",
                loc=("header", "authorization"))
        scheme, _, given = value.strip().partition(b" ")
        ok = scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token)
        if ok:
            return None
        return client_error("invalid token: the Authorization header must be 'Bearer <token>' "
                            "with the server's DRIPML_SERVE_TOKEN", kind="invalid_token",
                            loc=("header", "authorization"))

    def _too_large(self, got: str) -> dict[str, Any]:
        return client_error(
            f"request body too large: {got}, over the server's limit of "
            f"{_mib(self.max_body_bytes)}; send fewer records per request (or start the "
            "server with a larger --max-body-mib / DRIPML_SERVE_MAX_BODY_MIB)",
            kind="body_too_large")

    async def _read_body(self, receive: Receive, send: Send,
                         expected: int | None) -> bytes | None:
        """The whole body, or None once a 4xx has been sent (or the client went away)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout_s):  # no task per message
                    message = await receive()
            except TimeoutError:
                of = f"{size} of {expected} bytes" if expected is not None else f"{size} bytes"
                await send_json(send, 400, client_error(
                    f"request body ended before Content-Length ({of}; no data for "
                    f"{self.idle_timeout_s:g} s): send the whole body"
                    if expected is not None else
                    f"request body stalled after {of} (no data for "
                    f"{self.idle_timeout_s:g} s): send the whole body",
                    kind="body_truncated"))
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_json(send, 413, self._too_large(f"{size} bytes received so far"))
                return None
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


# --------------------------------------------------------------------------- binding


def exposure_warning(host: str, port: int, *, token_required: bool) -> str | None:
    """The warning for a server bound beyond loopback, None for a loopback ``host``.

    It names the address, says that anyone who can reach it can call the model, and whether
    a token is required (``DRIPML_SERVE_TOKEN``).
    """
    if is_loopback(host):
        return None
    wildcard = host.strip() in ("", "0.0.0.0", "::", "[::]")
    where = (f"every interface of this machine ({host or '0.0.0.0'}:{port})" if wildcard
             else f"{host}:{port}")
    if token_required:
        who = ("anyone who can reach it and holds the token (DRIPML_SERVE_TOKEN) can call "
               "the model; health, /metrics and the docs are open to all, and traffic is "
               "plain HTTP (put TLS in front)")
    else:
        who = ("anyone who can reach it can call the model: no token is required (set "
               "DRIPML_SERVE_TOKEN to require one), and the docs show its features")
    return f"warning: the endpoint listens on {where}; {who}"
