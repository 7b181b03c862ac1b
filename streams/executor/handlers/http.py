"""One aiohttp session shared by the built-in handlers, and a request helper that turns every
transport problem into the handler's typed error with secrets masked. Every connection it makes,
redirect hops included, passes the outbound guard (``outbound.OutboundPolicy``)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDict

from schemas.masking import Masker
from streams.executor.errors import HandlerError
from streams.executor.handlers.errors import OutboundRefusedError
from streams.executor.handlers.outbound import OutboundPolicy, refusal_in

log = logging.getLogger(__name__)

MAX_BODY_CHARS = 65_536
_EXCERPT_CHARS = 200


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    content_type: str
    body: Any
    """Parsed JSON when the answer says JSON (and parses), else text (truncated)."""
    elapsed_ms: int
    headers: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""


class HttpClient:
    """A lazily created ``aiohttp.ClientSession`` (created inside the running loop on first use)
    whose connector enforces ``outbound`` (default: public addresses only).

    There is no way to hand in a ready session: its connector would bypass the guard.
    """

    def __init__(self, outbound: OutboundPolicy | None = None) -> None:
        self.outbound = outbound if outbound is not None else OutboundPolicy()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=self.outbound.connector())
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        error: type[HandlerError],
        masker: Masker,
        timeout_ms: int,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpAnswer:
        """Send one request; a 2xx answer is returned, anything else raises ``error`` with a
        message naming ``what``, the method, the (masked) URL and the status."""
        answer = await self.fetch(
            method,
            url,
            what=what,
            error=error,
            masker=masker,
            timeout_ms=timeout_ms,
            headers=headers,
            json_body=json_body,
            params=params,
        )
        if not 200 <= answer.status < 300:
            raise error(status_message(what, method, masker.url(url), answer))
        return answer

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        what: str,
        error: type[HandlerError],
        masker: Masker,
        timeout_ms: int,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        timeout_error: type[HandlerError] | None = None,
    ) -> HttpAnswer:
        """Send one request and return its answer whatever the status (the body masked, and
        an excerpt of a non-2xx body kept as text). Transport failures raise ``error``
        (``timeout_error`` for a timeout, when given); a refused destination raises
        ``OutboundRefusedError``."""
        safe = f"{method} {masker.url(url)}"
        started = time.monotonic()
        try:
            async with self.session().request(
                method,
                url,
                headers=dict(headers or {}),
                params=dict(params) if params else None,
                json=json_body,
                timeout=aiohttp.ClientTimeout(total=timeout_ms / 1000),
                allow_redirects=True,
            ) as response:
                status = response.status
                reason = response.reason or ""
                content_type = response.headers.get("Content-Type", "")
                answer_headers = CIMultiDict(response.headers)
                text = await response.text(errors="replace")
        except TimeoutError:
            raise (timeout_error or error)(
                f"{what} timed out after {timeout_ms} ms: {safe}"
            ) from None
        except aiohttp.ClientError as exc:
            refused = refusal_in(exc)
            if refused is not None:
                raise OutboundRefusedError(f"{what} refused: {safe}: {refused}") from None
            detail = masker.text(str(exc)) or type(exc).__name__
            raise error(f"{what} request failed: {safe}: {detail}") from None
        elapsed_ms = int((time.monotonic() - started) * 1000)
        log.info("%s: %s -> %d in %d ms", what, safe, status, elapsed_ms)
        if not 200 <= status < 300:
            excerpt = masker.text(text[:_EXCERPT_CHARS]).strip()
            return HttpAnswer(status, content_type, excerpt, elapsed_ms, answer_headers, reason)
        body: Any = text[:MAX_BODY_CHARS]
        if "json" in content_type.lower() and text:
            try:
                body = json.loads(text)
            except ValueError:
                pass
        return HttpAnswer(
            status, content_type, masker.json(body), elapsed_ms, answer_headers, reason
        )


def status_message(what: str, method: str, safe_url: str, answer: HttpAnswer) -> str:
    """``"<what> got HTTP 422 Unprocessable from POST <url>: <excerpt>"``."""
    message = f"{what} got HTTP {answer.status} {answer.reason} from {method} {safe_url}".rstrip()
    excerpt = answer.body if isinstance(answer.body, str) else ""
    return f"{message}: {excerpt}" if excerpt else message
