"""The undo journal of a partition state, and the set of store keys it changed.

``PartitionState`` (``streams.domain.state``) makes every write through ``put``/``delete``,
``own``/``own_attribute`` (a record to mutate) and ``touch`` (its store key), so that

* the keys changed since the last dump are known (``dirty``), for incremental persistence, and
* between ``begin`` and ``rollback`` every write can be undone: ``decide`` folds the events it
  emits into the state (so later rules see earlier decisions, exactly as ``evolve`` will), then
  rolls everything back. The cost is proportional to what the command touched, not to the size
  of the partition. Records are copied before their first mutation in a decision, so the
  objects a caller holds never change under it.
* or, ending with ``commit`` instead, keeps the decision's writes: the state is then where
  ``evolve`` of the decision's events would have brought it (``decide_folded``), without
  folding every event a second time. What is not journaled (retention and timer heaps, memory
  eviction) is only done outside decisions; while journaling it is ``defer``-red, dropped by
  ``rollback`` and done by ``commit``, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar

_MISSING: Final = object()
_DIRTY: Final = object()  # journal marker: a key newly added to ``dirty``
_APPENDED: Final = object()  # journal marker: an entry appended to a deque


class Clonable(Protocol):
    def clone(self: C) -> C: ...


C = TypeVar("C", bound=Clonable)


class Journal:
    """The journaling half of a partition state (its records and indices are the other)."""

    __slots__ = ("dirty", "_log", "_copied", "_deferred")

    def __init__(self, dirty: set[bytes]) -> None:
        self.dirty = dirty
        self._log: list[tuple[Any, Any, Any]] | None = None
        # (id of the container, key) of records already private to this decision
        self._copied: set[tuple[int, Any]] = set()
        # what is done outside decisions only, asked for during this one (see ``commit``)
        self._deferred: list[tuple[Callable[..., None], tuple[Any, ...]]] = []

    def begin(self) -> None:
        """Start recording undo information."""
        if self._log is not None:
            raise RuntimeError("a journal is already open on this state")
        self._log = []
        self._copied = set()
        self._deferred = []

    def defer(self, action: Callable[..., None], *args: Any) -> None:
        """``action(*args)`` is only done outside decisions: while journaling, ``commit`` does
        it (``rollback`` forgets it); otherwise at once."""
        if self._log is None:
            action(*args)
        else:
            self._deferred.append((action, args))

    def commit(self) -> None:
        """Keep every write since ``begin``, stop recording, then do what was deferred."""
        if self._log is None:
            raise RuntimeError("no journal is open on this state")
        self._log = None
        self._copied = set()
        deferred, self._deferred = self._deferred, []
        for action, args in deferred:
            action(*args)

    def rollback(self) -> None:
        """Undo every write since ``begin`` and stop recording."""
        log = self._log
        self._log = None
        self._copied = set()
        self._deferred = []
        if log is None:
            return
        for container, key, old in reversed(log):
            if old is _APPENDED:
                container.pop()
            elif old is _DIRTY:
                self.dirty.discard(key)
            elif old is _MISSING:
                container.pop(key, None)
            else:
                container[key] = old

    def touch(self, key: bytes) -> None:
        """The record stored under ``key`` changed (or went)."""
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

    def appended(self, entries: deque[Any]) -> None:
        """An entry was appended to ``entries`` (undone by popping it)."""
        if self._log is not None:
            self._log.append((entries, None, _APPENDED))

    def added(self, container: dict[Any, Any], key: Any, record: Any) -> None:
        """``record`` is new at ``key``: this decision may mutate it without a copy."""
        self.put(container, key, record)
        self._copied.add((id(container), key))

    def own(self, container: dict[Any, C], key: Any) -> C:
        """The record at ``key``, safe to mutate: while journaling, a private copy (made once
        per decision) replaces it."""
        record = container[key]
        if self._log is not None and (id(container), key) not in self._copied:
            self._copied.add((id(container), key))
            record = record.clone()
            self.put(container, key, record)
        return record

    def own_attribute(self, name: str) -> Any:
        """The record held in attribute ``name`` (``meta``, ``pool``), safe to mutate."""
        record = getattr(self, name)
        if self._log is not None and (0, name) not in self._copied:
            self._copied.add((0, name))
            self._log.append((_Attributes(self), name, record))
            record = record.clone()
            setattr(self, name, record)
        return record

    # -- journaled indices -------------------------------------------------------------------

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


class _Attributes:
    """Lets the journal restore an attribute of the state like a dict entry."""

    __slots__ = ("_owner",)

    def __init__(self, owner: object) -> None:
        self._owner = owner

    def __setitem__(self, name: str, value: Any) -> None:
        setattr(self._owner, name, value)

    def pop(self, name: str, default: Any = None) -> Any:  # pragma: no cover - never missing
        return default
