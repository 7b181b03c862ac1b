"""The undo journal of a partition state (``streams.domain.state``).

``decide``/``tick`` fold the events they emit into the state (so later rules see earlier
decisions, exactly as ``evolve`` will), then roll everything back: every write between
``begin`` and ``rollback`` goes through ``put``/``delete`` (or appends a lane entry) and is
recorded with the value it replaced. The keys changed since the last dump are kept in
``dirty`` for incremental persistence, journaled too.
"""

from __future__ import annotations

from typing import Any, Final

_MISSING: Final = object()
_DIRTY: Final = object()  # journal marker: a key newly added to ``dirty``
APPENDED: Final = object()  # journal marker: an entry appended to a lane (a deque)


class AttributeSlot:
    """Lets the journal restore an attribute of the state (``meta``, ``pool``) like a dict
    entry: ``slot[name] = old``."""

    __slots__ = ("_owner",)

    def __init__(self, owner: object) -> None:
        self._owner = owner

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self._owner, key, value)

    def pop(self, key: str, default: Any = None) -> Any:  # pragma: no cover - never missing
        return default


class Journaled:
    __slots__ = ("dirty", "_log", "_copied")

    def __init__(self, dirty: set[bytes]) -> None:
        self.dirty: set[bytes] = dirty
        self._log: list[tuple[Any, Any, Any]] | None = None
        self._copied: set[tuple[str, str]] = set()

    def begin(self) -> None:
        """Start recording undo information (see the module docstring)."""
        if self._log is not None:
            raise RuntimeError("a journal is already open on this state")
        self._log = []
        self._copied = set()

    def rollback(self) -> None:
        """Undo every write since ``begin`` and stop recording."""
        log = self._log
        self._log = None
        self._copied = set()
        if log is None:
            return
        for container, key, old in reversed(log):
            if old is APPENDED:
                container.pop()
            elif old is _DIRTY:
                self.dirty.discard(key)
            elif old is _MISSING:
                container.pop(key, None)
            else:
                container[key] = old

    def _touch(self, key: bytes) -> None:
        if key not in self.dirty:
            self.dirty.add(key)
            if self._log is not None:
                self._log.append((self.dirty, key, _DIRTY))

    def put(self, container: dict[Any, Any], key: Any, value: Any) -> None:
        if self._log is not None:
            self._log.append((container, key, container.get(key, _MISSING)))
        container[key] = value

    def delete(self, container: dict[Any, Any], key: Any) -> None:
        if key not in container:
            return
        if self._log is not None:
            self._log.append((container, key, container[key]))
        del container[key]

    def index_add(self, index: dict[Any, dict[Any, None]], outer: Any, inner: Any) -> None:
        bucket = index.get(outer)
        if bucket is None:
            bucket = {}
            self.put(index, outer, bucket)
        self.put(bucket, inner, None)

    def index_remove(self, index: dict[Any, dict[Any, None]], outer: Any, inner: Any) -> None:
        bucket = index.get(outer)
        if bucket is None:
            return
        self.delete(bucket, inner)
        if not bucket:
            self.delete(index, outer)
