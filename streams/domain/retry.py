"""Retry timing: exponential backoff, capped, delivered through the delay tiers."""

from __future__ import annotations

from streams.settings import tier_for_delay


def backoff_ms(failed_attempts: int, base_ms: int, max_ms: int) -> int:
    """Delay before retry number ``failed_attempts`` (1 -> base, 2 -> 2*base, 3 -> 4*base ...)."""
    exponent = max(0, failed_attempts - 1)
    if exponent >= 62:  # 2**62 * base overflows any sane cap anyway
        return max_ms
    return min(base_ms * (1 << exponent), max_ms)


def tier_ms(delay_ms: int) -> int:
    """The delay-topic tier that carries a wait of ``delay_ms``."""
    return tier_for_delay(delay_ms)


def has_retry_left(attempt: int, max_retries: int) -> bool:
    """``attempt`` just failed; ``max_retries`` retries allow ``max_retries + 1`` attempts."""
    return attempt < max_retries + 1
