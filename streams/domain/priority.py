"""Priority: catalog urgency or override, aging while queued, the boost of retries and expedites.

1 is the most urgent (critical), 5 the least (background).
"""

from __future__ import annotations

from typing import Final

CRITICAL: Final = 1
HIGH: Final = 2
LOWEST: Final = 5


def effective_priority(
    queue_priority: int, queued_at_ms: int, now_ms: int, aging_step_ms: int
) -> int:
    """One level better per ``aging_step_ms`` waited, never better than critical.

    So a background task waits at most four aging steps before it competes as critical:
    low priorities never starve.
    """
    waited = max(0, now_ms - queued_at_ms)
    return max(CRITICAL, queue_priority - waited // aging_step_ms)


def queue_priority_for(base: int, *, expedited: bool, retry: bool) -> int:
    """The priority a task is queued with. Retries go high unless already better."""
    if expedited:
        return CRITICAL
    if retry:
        return min(base, HIGH)
    return base
