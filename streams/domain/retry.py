"""Retry timing: exponential backoff, capped, delivered through the delay tiers."""

from __future__ import annotations

# Delay tiers for retries and scheduled starts: task.retry.1s … task.retry.32s.
RETRY_TIERS_MS: tuple[int, ...] = (1000, 2000, 4000, 8000, 16000, 32000)


def backoff_ms(failed_attempts: int, base_ms: int, max_ms: int) -> int:
    """Delay before retry number ``failed_attempts`` (1 -> base, 2 -> 2*base, 3 -> 4*base ...)."""
    exponent = max(0, failed_attempts - 1)
    if exponent >= 62:  # 2**62 * base overflows any sane cap anyway
        return max_ms
    return min(base_ms * (1 << exponent), max_ms)


def tier_for_delay(delay_ms: int) -> int:
    """The delay tier that carries a wait of ``delay_ms``: the largest tier not longer than
    it (the shortest tier for tiny delays)."""
    fitting = [t for t in RETRY_TIERS_MS if t <= delay_ms]
    return fitting[-1] if fitting else RETRY_TIERS_MS[0]


def has_retry_left(attempt: int, max_retries: int) -> bool:
    """``attempt`` just failed; ``max_retries`` retries allow ``max_retries + 1`` attempts."""
    return attempt < max_retries + 1
