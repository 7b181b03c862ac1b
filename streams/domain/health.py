"""Session health: a score in [0, 1] and a circuit breaker with a half-open probe.

The score moves by fixed rules (applied in ``evolve`` from outcome events, so they are part of
the event semantics, not configuration): a failure multiplies it by ``FAILURE_FACTOR``, a
success adds ``SUCCESS_STEP``. From a perfect score three failures in a row open the circuit
(1.0 -> 0.6 -> 0.36 -> 0.216). Status thresholds, cooldown and the score a successful probe
restores are configuration and only used when deciding, like the reuse threshold (below it a
session is not reused while a better one can take the work) and the agent's workload limit.
"""

from __future__ import annotations

from typing import Final

from streams.domain.config import DomainConfig
from streams.domain.state import Circuit, SessionRecord

FAILURE_FACTOR: Final = 0.6
SUCCESS_STEP: Final = 0.1

HEALTHY: Final = "healthy"
DEGRADED: Final = "degraded"
UNHEALTHY: Final = "unhealthy"

_RANK: Final = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}


def after_success(score: float) -> float:
    return round(min(1.0, score + SUCCESS_STEP), 6)


def after_failure(score: float) -> float:
    return round(max(0.0, score * FAILURE_FACTOR), 6)


def status_for(score: float, config: DomainConfig) -> str:
    if score > config.session_healthy_above:
        return HEALTHY
    if score < config.session_unhealthy_below:
        return UNHEALTHY
    return DEGRADED


def rank(score: float, config: DomainConfig) -> int:
    """0 healthy, 1 degraded, 2 unhealthy: lower is preferred."""
    return _RANK[status_for(score, config)]


def reusable(session: SessionRecord, config: DomainConfig) -> bool:
    """Whether the session's health is at or above the reuse threshold: below it the session
    is passed over while another of its client's sessions can take the work, and otherwise
    takes one unit at a time, like a probe, until successes lift it back."""
    return session.score >= config.session_reuse_threshold


def overloaded(session: SessionRecord, config: DomainConfig) -> bool:
    """Whether the agent's last reported workload is at or above ``max_workload``."""
    return session.workload >= config.max_workload


def free_capacity(session: SessionRecord) -> int:
    """Units a session can take now: none while open, exactly one probe while half-open."""
    if session.circuit == Circuit.OPEN:
        return 0
    if session.circuit == Circuit.HALF_OPEN:
        return 0 if session.units else 1
    return max(0, session.max_concurrent - len(session.units))


def success_rate(session: SessionRecord) -> float:
    total = session.successes + session.failures
    return 1.0 if total == 0 else session.successes / total


def next_circuit(
    circuit: str, score: float, success: bool, config: DomainConfig
) -> tuple[str, float]:
    """Circuit and score after an outcome whose score effect is already in ``score``."""
    if circuit == Circuit.HALF_OPEN:
        if success:
            return Circuit.CLOSED, max(score, config.session_probe_recovery_score)
        return Circuit.OPEN, score
    if circuit == Circuit.CLOSED and status_for(score, config) == UNHEALTHY:
        return Circuit.OPEN, score
    return circuit, score
