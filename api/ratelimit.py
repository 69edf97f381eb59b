"""Per-key rate limits: a token bucket per API key, in this replica's memory.

A replica admits `per_s` requests per second per key with bursts up to `burst`; behind a load
balancer with R replicas the effective limit is at most R times that (stated in docs/custody-api.md).
Over the limit: 429 with Retry-After and the RateLimit-* headers
(draft-ietf-httpapi-ratelimit-headers: RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset).
The table of buckets is bounded (least recently used keys dropped: a dropped key starts full,
which only ever errs by one burst).
"""

from __future__ import annotations

import collections
import math
import threading
import time

from api.errors import Problem
from node import limits


class RateLimiter:
    def __init__(self, per_s: int, burst: int, keys_max: int = limits.API_RATE_LIMIT_KEYS_TRACKED_MAX):
        assert 0 < per_s <= burst
        self.per_s = per_s
        self.burst = burst
        self.keys_max = keys_max
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now_s: float | None = None) -> dict[str, str]:
        """Takes one token; returns the RateLimit-* headers or raises a 429 Problem."""
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now_s))
            tokens = min(float(self.burst), tokens + (now_s - last) * self.per_s)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now_s)
            while len(self._buckets) > self.keys_max:
                self._buckets.popitem(last=False)
        # Seconds until the bucket is full again / until one token is back.
        reset_s = math.ceil((self.burst - tokens) / self.per_s)
        headers = {
            "RateLimit-Limit": str(self.burst),
            "RateLimit-Remaining": str(int(tokens)),
            "RateLimit-Reset": str(reset_s),
            "RateLimit-Policy": f'{self.burst};w={max(1, self.burst // self.per_s)}',
        }
        if not allowed:
            retry_after_s = max(1, math.ceil((1.0 - tokens) / self.per_s))
            raise Problem(
                429,
                "rate_limit_exceeded",
                f"more than {self.per_s} requests/s (burst {self.burst}) for this API key; retry after {retry_after_s} s",
                headers={**headers, "Retry-After": str(retry_after_s)},
            )
        return headers
