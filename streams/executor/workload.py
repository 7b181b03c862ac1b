"""The workload an executor reports on each session heartbeat (0 idle .. 1 full): by default
its running handler calls over its concurrency; a user can set a value or give a function
(CPU, memory, a browser farm's own load). The processor gives no new work to a session whose
agent reports at or above ``TASKSTREAM_MAX_WORKLOAD`` (0.9) until a later report is below it;
so once a report was at or above the bound, the executor reports again as soon as a result
brings the workload below it (``Workload.fell``), not only at the next heartbeat: the session
would otherwise sit idle for up to a heartbeat interval with free capacity."""

from __future__ import annotations

from collections.abc import Callable

WorkloadSource = Callable[[], float]


class Workload:
    def __init__(
        self, default: WorkloadSource, source: WorkloadSource | None = None, bound: float = 1.0
    ) -> None:
        self._default = default
        self._source = source
        self._fixed: float | None = None
        self.bound = bound  # the processor's max_workload
        self._over = False  # the last report was at or above the bound

    def set(self, value: float | WorkloadSource | None) -> None:
        """A fixed value, a function asked at each heartbeat, or None for the default."""
        if value is None or callable(value):
            self._fixed, self._source = None, value
            return
        self._fixed, self._source = _checked(value), None

    def current(self) -> float:
        if self._fixed is not None:
            return self._fixed
        source = self._source or self._default
        return min(1.0, max(0.0, float(source())))

    def report(self) -> float:
        """The value to report now (rounded as sent), remembering whether it is over the bound."""
        value = round(self.current(), 4)
        self._over = value >= self.bound
        return value

    def fell(self) -> bool:
        """Whether the last report was at or above the bound and the workload now is below."""
        return self._over and self.current() < self.bound


def _checked(value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"workload must be between 0 and 1, got {value}")
    return value
