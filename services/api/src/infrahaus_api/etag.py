"""Conditional GETs: an `ETag` on readable resources and `304 Not Modified` for an `If-None-Match` that matches.

A handler opts in with `opt=ETAG_STRONG` (one resource: the same bytes, the same tag) or `opt=ETAG_WEAK` (lists
and the summary: equivalent content, RFC 9110 §8.8.1). The tag is a hash of the encoded body, computed once on the
way out: no second query and nothing stored, so a 304 costs the same work as a 200 minus sending the body (what a
dashboard saves is bandwidth and parsing). Answers get `Cache-Control: private, no-cache` unless they set their
own: a browser may keep them and revalidate with `If-None-Match` by itself, a shared cache keeps nothing.
"""

import hashlib
from typing import Any, Final

from litestar.enums import ScopeType
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

ETAG_STRONG: Final[dict[str, Any]] = {"etag": "strong"}
ETAG_WEAK: Final[dict[str, Any]] = {"etag": "weak"}
NOT_MODIFIED = ResponseSpec(data_container=None, description="Not modified: `If-None-Match` still matches (no body).")

_CACHE_CONTROL = (b"cache-control", b"private, no-cache")
# Headers that describe a body: a 304 has none (RFC 9110 §15.4.5 keeps the validators and caching headers).
_BODY_HEADERS = frozenset({b"content-type", b"content-length", b"content-encoding", b"transfer-encoding"})


def etag_of(body: bytes, *, weak: bool) -> str:
    """The entity tag of an encoded body."""
    digest = hashlib.blake2b(body, digest_size=16).hexdigest()
    return f'W/"{digest}"' if weak else f'"{digest}"'


def matches(if_none_match: str, etag: str) -> bool:
    """`If-None-Match` uses the weak comparison: `W/"x"` and `"x"` match; `*` matches any current tag."""
    wanted = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


def etag_middleware(app: ASGIApp) -> ASGIApp:
    """Tag the 200 answers of GET handlers that opted in; answer 304 when the client's tag still matches."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        kind = handler.opt.get("etag") if handler is not None and scope["type"] == ScopeType.HTTP else None
        if kind is None or scope.get("method") != "GET":
            await app(scope, receive, send)
            return
        if_none_match = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"if-none-match"), None)
        start: HTTPResponseStartEvent | None = None
        chunks: list[bytes] = []

        async def tagging_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] != 200:
                    await send(message)
                    return
                start = message  # held until the whole body is known
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            tag = etag_of(body, weak=kind == "weak")
            headers = [(k, v) for k, v in start["headers"] if k != b"etag"]
            headers.append((b"etag", tag.encode()))
            if not any(k == b"cache-control" for k, _ in headers):
                headers.append(_CACHE_CONTROL)
            if if_none_match is not None and matches(if_none_match, tag):
                kept = [(k, v) for k, v in headers if k not in _BODY_HEADERS]
                await send({"type": "http.response.start", "status": 304, "headers": kept})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await app(scope, receive, tagging_send)

    return middleware
