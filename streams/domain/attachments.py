"""What a task's attachments must be: references to files kept elsewhere (issue 19).

One rule for every door: the submission door and the decider (``streams.domain.submission``,
``streams.domain.management``) and the gateway's request models apply
:func:`attachment_problems`, so the HTTP answer (422), the SDK's ``InvalidCommandError`` and a
raw producer's ``TaskRejected`` give the same reason, naming the field
(``attachments[1].url: ...``).

Pure: ``schemas`` and the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from schemas.commands import TaskAttachment

__all__ = [
    "MAX_ATTACHMENTS",
    "MAX_ATTACHMENT_NAME",
    "MAX_ATTACHMENT_URL",
    "MAX_CONTENT_TYPE",
    "attachment_problems",
    "one_attachment_problems",
]

MAX_ATTACHMENTS = 20
MAX_ATTACHMENT_NAME = 255
MAX_ATTACHMENT_URL = 2048
MAX_CONTENT_TYPE = 255

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_WHITESPACE = re.compile(r"\s")
# type "/" subtype, optional parameters (RFC 6838 names; parameters are not checked further).
_MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(;.*)?$"
)


def _url_problem(url: str) -> str | None:
    if len(url) > MAX_ATTACHMENT_URL:
        return f"longer than {MAX_ATTACHMENT_URL} characters"
    if _WHITESPACE.search(url) or _CONTROL.search(url):
        return "must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        return f"not a valid URL: {url[:100]!r}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"must be an http or https URL, not {url[:100]!r}"
    if not parts.hostname:
        return f"must name a host: {url[:100]!r}"
    if "@" in parts.netloc:
        return "must not carry a user name or password (share a link without credentials)"
    return None


def one_attachment_problems(attachment: TaskAttachment, where: str) -> Iterable[str]:
    """The problems of one attachment, each starting with ``where`` (``attachments[0]``)."""
    problem = _url_problem(attachment.url)
    if problem is not None:
        yield f"{where}.url: {problem}"
    name = attachment.name
    if not name.strip():
        yield f"{where}.name: must not be empty"
    elif len(name) > MAX_ATTACHMENT_NAME:
        yield f"{where}.name: longer than {MAX_ATTACHMENT_NAME} characters"
    elif _CONTROL.search(name):
        yield f"{where}.name: control characters (line breaks, NUL, ...) are not allowed"
    if attachment.size_bytes is not None and attachment.size_bytes < 0:
        yield f"{where}.size_bytes: must be >= 0, not {attachment.size_bytes}"
    kind = attachment.content_type
    if kind is not None and (len(kind) > MAX_CONTENT_TYPE or not _MEDIA_TYPE.match(kind)):
        yield f"{where}.content_type: must be a media type such as application/pdf, not {kind[:100]!r}"


def attachment_problems(
    attachments: Sequence[TaskAttachment], field: str = "attachments"
) -> list[str]:
    """What is wrong with a task's attachments: their number, then each one."""
    if len(attachments) > MAX_ATTACHMENTS:
        return [f"{field}: more than {MAX_ATTACHMENTS} attachments ({len(attachments)})"]
    problems: list[str] = []
    for index, attachment in enumerate(attachments):
        problems.extend(one_attachment_problems(attachment, f"{field}[{index}]"))
    return problems
