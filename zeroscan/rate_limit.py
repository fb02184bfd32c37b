"""Per-key token-bucket rate limits, shared by the JSON API and the portal."""
import threading
import time
from typing import Callable


class TokenBucket:
    """Per-key token buckets; `take(key)` returns 0 when allowed, else seconds until a token."""

    def __init__(self, burst: int, per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if burst < 1 or per_s <= 0:
            raise ValueError(f"rate limit needs burst >= 1 and rate > 0, got {burst} and {per_s}")
        self.burst, self.per_s, self._clock = burst, per_s, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.per_s
