"""API access: scoped bearer tokens compared in constant time, and a request-body limit.

Two ASGI middlewares wrap the HTTP app:

- :class:`TokenAuth` resolves the caller's token to a :class:`Grant` (``read`` or ``operator``,
  optionally limited to some sites). Every secret is compared with :func:`hmac.compare_digest`
  (all of them, so the time taken does not tell which one nearly matched). Tokens come from the
  ``Authorization: Bearer`` header (RFC 6750 §2.1); ``?access_token=`` (§2.3) only when enabled.
- :class:`BodyLimit` answers 413 to a body above the limit, by ``Content-Length`` before reading
  anything and by counting bytes for chunked uploads, so no request is buffered whole.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dcpue.config.service import ApiToken, ServiceSettings
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Paths anyone may fetch: liveness and the dashboard's page and code (they hold no data).
PUBLIC_PATHS = ("/healthz", "/", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
#: Scope a request needs: GET/HEAD and Grafana's read-only POSTs are ``read``.
READ_POSTS = ("/grafana/",)


@dataclass(frozen=True)
class Grant:
    """What one token allows: its name (for logs, never the secret), scope and sites."""

    name: str
    secret: bytes
    scope: str
    sites: frozenset[str] | None = None

    def allows(self, scope: str, site: str) -> bool:
        if self.sites is not None and site not in self.sites:
            return False
        return scope == "read" or self.scope == "operator"


def grants(settings: ServiceSettings, legacy: str | None = None) -> list[Grant]:
    """Grants from ``[service] tokens`` plus the single ``bearer_token`` (an operator token);
    a token whose environment variable is unset grants nothing."""
    out = [] if not legacy else [Grant("bearer_token", legacy.encode(), "operator")]
    for t in settings.tokens:
        secret = _secret(t)
        if secret:
            out.append(Grant(t.name, secret.encode(), t.scope,
                             None if t.sites is None else frozenset(t.sites)))
    return out


def _secret(t: ApiToken) -> str | None:
    return t.token if t.token_env is None else os.environ.get(t.token_env)


def match(given: bytes, candidates: Sequence[Grant]) -> Grant | None:
    """The grant whose secret equals ``given``; every candidate is compared in constant time."""
    found = None
    for g in candidates:
        if hmac.compare_digest(given, g.secret) and found is None:
            found = g
    return found


def needed_scope(method: str, path: str) -> str:
    if method in ("GET", "HEAD", "OPTIONS") or path.startswith(READ_POSTS):
        return "read"
    return "operator"


def secrets_of(candidates: Iterable[Grant]) -> list[str]:
    """The secrets as text, for redaction checks (tests, logs)."""
    return [g.secret.decode() for g in candidates]


class TokenAuth:
    """ASGI middleware: 401 without a known token, 403 when its scope or sites do not allow
    the request; the matched grant is put in ``scope["state"]["grant"]``."""

    def __init__(self, app: ASGIApp, grants: Sequence[Grant], site: str,
                 query_token: bool = False) -> None:
        self.app, self.grants, self.site, self.query_token = app, list(grants), site, query_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        grant = match(self._given(scope), self.grants)
        if grant is None:
            await _reply(send, 401, "missing or wrong bearer token",
                         [(b"www-authenticate", b'Bearer realm="dcpue"')])
            return
        need = needed_scope(scope["method"], path)
        if not grant.allows(need, self.site):
            await _reply(send, 403, f"token {grant.name!r} does not allow {need} access to "
                         f"site {self.site!r}")
            return
        scope.setdefault("state", {})["grant"] = grant
        await self.app(scope, receive, send)

    def _given(self, scope: Scope) -> bytes:
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return value[7:].strip()
        if self.query_token:
            from urllib.parse import parse_qs

            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            return query.get("access_token", [""])[0].encode()
        return b""


class BodyLimit:
    """ASGI middleware: refuse request bodies above ``max_bytes`` with 413.

    The body is read here (never more than ``max_bytes`` + one chunk) and replayed to the app,
    so a refused upload is answered before the app sees it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await _reply(send, 413, f"request body above {self.max_bytes} bytes")
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _reply(send, 413, f"request body above {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _reply(send: Send, status: int, error: str,
                 headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *headers]})
    await send({"type": "http.response.body", "body": body})
