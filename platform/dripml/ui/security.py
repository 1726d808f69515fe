"""Who may use the page, and which POSTs are the page's own.

- **Authentication** (when a token or a trusted user header is configured): every request but
  ``/healthz``, ``/login`` and ``/static/`` needs ``Authorization: Bearer <token>``, or the
  ``dripml_ui_token`` cookie that ``GET /login?token=...`` sets, or (with
  ``trusted_user_header``) that header, which an authenticating ingress sets. Otherwise 401.
- **CSRF** (always, double submit): every response carries a random ``dripml_csrf`` cookie
  (SameSite=Strict); every POST/PUT/PATCH/DELETE must echo it in the ``X-CSRF-Token`` header
  (or, for an urlencoded form, a ``csrf_token`` field), else 403. A request authenticated by
  the bearer token itself is exempt: a browser never adds that header by itself.
- **Body size**: a request body past the upload limit gets a 413 as soon as its
  ``Content-Length`` says so, or once that many bytes were read; nothing past the limit is
  buffered.

Templates call :func:`csrf_token` for the value to embed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import HTTPException, Request

from dripml.productionize.guard import Message, Receive, Send, replay_body
from dripml.ui.settings import UiSettings

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_COOKIE = "dripml_ui_token"
CSRF_COOKIE = "dripml_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
OPEN_PATHS = ("/healthz", "/login")
OPEN_PREFIXES = ("/static/",)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_LIMIT_BYTES = 64 * 1024
"""The largest urlencoded form read for its ``csrf_token`` field."""
BODY_SLACK_BYTES = 64 * 1024
"""Room for the multipart framing and small fields beside an upload at the limit."""


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser session (what a page embeds and its JS sends back)."""
    state = request.scope.setdefault("state", {})
    token = state.get("csrf_token")
    if not token:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        state["csrf_token"] = token
    return str(token)


def session_cookie_value(token: str) -> str:
    """The login cookie's value: an HMAC of the token (the token itself is never stored)."""
    return hmac.new(token.encode(), b"dripml-ui-session", hashlib.sha256).hexdigest()


class BodyTooLarge(HTTPException):
    """A request body went past the limit while it was read (an HTTPException, so FastAPI's
    body parsing lets it through as a 413)."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


class SecurityMiddleware:
    """Authentication, CSRF and the body size limit, as pure ASGI (streams pass through)."""

    def __init__(self, app: ASGIApp, settings: UiSettings) -> None:
        self.app = app
        self.settings = settings
        self.limit = settings.max_upload_bytes + BODY_SLACK_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        cookies = _cookies(headers.get("cookie", ""))
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        open_path = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
        bearer = self._bearer_ok(headers)
        if not open_path and not self._authenticated(headers, cookies, bearer):
            await _json(send, 401, "authentication required: send 'Authorization: Bearer "
                        "<token>' (DRIPML_UI_TOKEN), or open /login?token=<token> once in "
                        "the browser", {"www-authenticate": "Bearer"})
            return
        state = scope.setdefault("state", {})
        known = cookies.get(CSRF_COOKIE)
        state["csrf_token"] = known or secrets.token_urlsafe(32)
        length = headers.get("content-length")
        if method in UNSAFE_METHODS and length and length.isdigit() and int(length) > self.limit:
            await _json(send, 413, self._too_large())
            return
        receive = self._limited(receive)
        if method in UNSAFE_METHODS and not open_path and not bearer:
            sent = headers.get(CSRF_HEADER)
            if sent is None and headers.get("content-type", "").startswith(
                    "application/x-www-form-urlencoded"):
                body, receive = await _read_form(receive)
                if body is None:
                    await _json(send, 413, "form too large")
                    return
                sent = (parse_qs(body.decode("latin-1")).get(CSRF_FIELD) or [None])[0]
            if not known or not sent or not hmac.compare_digest(sent, known):
                await _json(send, 403, "CSRF check failed: send the X-CSRF-Token header (or "
                            "a csrf_token form field) with the value of the dripml_csrf "
                            "cookie; load a page first to get one")
                return
        started = False

        async def send_with_cookie(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not known:
                    secure = "; Secure" if scope.get("scheme") == "https" else ""
                    cookie = (f"{CSRF_COOKIE}={state['csrf_token']}; Path=/; "
                              f"SameSite=Strict{secure}")
                    message.setdefault("headers", [])
                    message["headers"] = [*message["headers"],
                                          (b"set-cookie", cookie.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        except BodyTooLarge:
            if started:
                raise
            await _json(send, 413, self._too_large())

    def _too_large(self) -> str:
        return (f"upload too large: the limit is {self.settings.max_upload_mib} MiB "
                f"(drip ui --max-upload-mib)")

    def _limited(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.limit
        detail = self._too_large()

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(detail)
            return message

        return limited

    def _bearer_ok(self, headers: dict[str, str]) -> bool:
        token = self.settings.token_value
        auth = headers.get("authorization", "")
        if not token or not auth.lower().startswith("bearer "):
            return False
        return hmac.compare_digest(auth[7:].strip().encode(), token.encode())

    def _authenticated(self, headers: dict[str, str], cookies: dict[str, str],
                       bearer: bool) -> bool:
        if not self.settings.auth_required or bearer:
            return True
        token = self.settings.token_value
        cookie = cookies.get(TOKEN_COOKIE)
        if token and cookie and hmac.compare_digest(cookie, session_cookie_value(token)):
            return True
        header = self.settings.trusted_user_header
        return bool(header and headers.get(header.lower(), "").strip())


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope.get("headers", [])}


def _cookies(raw: str) -> dict[str, str]:
    """Name -> value; lenient (another app's odd cookie on the same host spoils nothing)."""
    jar: dict[str, str] = {}
    for part in raw.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in jar:
            jar[name] = value.strip().strip('"')
    return jar


async def _read_form(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read a small urlencoded body and hand back a receive that replays it."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > FORM_LIMIT_BYTES:
            return None, receive
        more = message.get("more_body", False)
    body = b"".join(chunks)
    return body, replay_body(body, receive)


async def _json(send: Send, status: int, detail: str,
                extra: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
