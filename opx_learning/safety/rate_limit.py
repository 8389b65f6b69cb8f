"""Per-principal, per-operation sliding-hour rate limits for manual and automation triggers (docs/design.md#rate-limits).

The late-outcomes automation (principal `automation`) has limits of its own
(`AUTOMATION_LIMITS`, `OPX_AUTOMATION_RATE_LIMITS`): its refreshes are counted apart from
people's and bounded by their own figures.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping

from opx_learning.safety.models import (
    LEARNING_OPERATIONS,
    InvalidRequest,
    OperationType,
    Principal,
    RateLimitDecision,
)

WINDOW_SECONDS = 3600
DEFAULT_LIMITS: dict[OperationType, int] = {
    OperationType.PATTERN_EXTRACTION: 5,
    OperationType.CALIBRATION: 3,
    OperationType.SNAPSHOT: 10,
}
AUTOMATION_LIMITS: dict[OperationType, int] = {
    OperationType.PATTERN_EXTRACTION: 20,
    OperationType.CALIBRATION: 30,
    OperationType.SNAPSHOT: 30,
}
MAX_LIMIT = 100


def parse_limits(
    text: str | None,
    defaults: Mapping[OperationType, int] = DEFAULT_LIMITS,
    variable: str = "OPX_RATE_LIMITS",
) -> dict[OperationType, int]:
    """Read limits from `"CALIBRATION=3,SNAPSHOT=10"` (the `OPX_RATE_LIMITS` format); unnamed ones keep `defaults`.

    Raises:
        InvalidRequest: malformed entry, unknown operation or a limit outside 1..100 (naming `variable`).
    """
    limits = dict(defaults)
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        name, sep, value = entry.partition("=")
        if not sep:
            raise InvalidRequest(f"{variable}: {entry.strip()!r} is not OPERATION=LIMIT")
        operation = OperationType.parse(name, f"{variable} operation")
        if operation not in LEARNING_OPERATIONS:
            raise InvalidRequest(f"{variable}: {operation} is not rate limited")
        try:
            limit = int(value)
        except ValueError:
            raise InvalidRequest(f"{variable}: {entry.strip()!r} limit is not an integer") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"{variable}: {operation} limit {limit} is outside 1..{MAX_LIMIT}")
        limits[operation] = limit
    return limits


class RateLimiter(ABC):
    """Sliding-window limiter; `acquire` is atomic across threads and processes.

    Args:
        limits: per-operation limits (default 5 / 3 / 10; `parse_limits(settings.rate_limits)` reads `OPX_RATE_LIMITS`).
        window_seconds: length of the sliding window (one hour).
    """

    def __init__(self, limits: Mapping[OperationType, int] | None = None, window_seconds: int = WINDOW_SECONDS):
        self.limits = dict(limits) if limits is not None else dict(DEFAULT_LIMITS)
        self.window_seconds = window_seconds
        # Principals with limits of their own (e.g. `automation`), by principal name.
        self.principal_limits: dict[str, dict[OperationType, int]] = {}

    @abstractmethod
    def _acquire(self, principal: str, operation: OperationType, limit: int, now: float) -> tuple[bool, int, float | None]:
        """Atomically count requests in `(now - window, now]` and record one more if below `limit`.

        Returns:
            (accepted, requests counted in the window including an accepted one, oldest counted request time).
        """

    @abstractmethod
    def _usage(self, principal: str, operation: OperationType, now: float) -> tuple[int, float | None]:
        """(requests counted in the window, oldest counted request time) without recording anything."""

    def limit_for(self, operation_type: OperationType | str, principal: str | None = None) -> int:
        """The configured limit of a learning operation (for `principal`, when it has limits of its own).

        Raises:
            InvalidRequest: unknown or non-rate-limited operation.
        """
        operation = OperationType.parse(operation_type)
        if operation not in LEARNING_OPERATIONS:
            raise InvalidRequest(f"operation_type: {operation} is not rate limited")
        own = self.principal_limits.get(principal or "")
        if own is not None:
            return own.get(operation, DEFAULT_LIMITS[operation])
        return self.limits.get(operation, DEFAULT_LIMITS[operation])

    def acquire(
        self, principal: Principal | str, operation_type: OperationType | str, *, now: float | None = None
    ) -> RateLimitDecision:
        """Count one request of `principal` for `operation_type` if the limit allows it."""
        name = principal.principal if isinstance(principal, Principal) else str(principal)
        operation = OperationType.parse(operation_type)
        limit = self.limit_for(operation, name)
        moment = time.time() if now is None else now
        accepted, used, oldest = self._acquire(name, operation, limit, moment)
        return self._decision(accepted, name, operation, limit, used, oldest, moment)

    def peek(
        self, principal: Principal | str, operation_type: OperationType | str, *, now: float | None = None
    ) -> RateLimitDecision:
        """What `acquire` would decide now, without counting a request."""
        name = principal.principal if isinstance(principal, Principal) else str(principal)
        operation = OperationType.parse(operation_type)
        limit = self.limit_for(operation, name)
        moment = time.time() if now is None else now
        used, oldest = self._usage(name, operation, moment)
        return self._decision(used < limit, name, operation, limit, used, oldest, moment)

    def _decision(
        self,
        accepted: bool,
        principal: str,
        operation: OperationType,
        limit: int,
        used: int,
        oldest: float | None,
        now: float,
    ) -> RateLimitDecision:
        if accepted:
            remaining, retry_after = max(0, limit - used), 0
        else:
            remaining = 0
            leaves = (oldest if oldest is not None else now) + self.window_seconds
            retry_after = max(1, math.ceil(leaves - now))
        return RateLimitDecision(
            allowed=accepted,
            operation_type=operation,
            principal=principal,
            limit=limit,
            remaining=remaining,
            retry_after=retry_after,
            window_seconds=self.window_seconds,
        )
