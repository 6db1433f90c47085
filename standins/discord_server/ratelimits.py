"""Discord's REST rate limits as the stand-in enforces them: buckets, the global limit, the headers.

Pure bookkeeping, no I/O: :class:`RateLimiter` is asked once per REST request as it arrives
(:meth:`RateLimiter.take`) and answers with a :class:`Decision`: the request may go on (a bucket
token was taken) or must be answered ``429``; either way the decision carries the
``X-RateLimit-*`` headers Discord sends (https://discord.com/developers/docs/topics/rate-limits).

Buckets are fixed windows, as Discord's headers describe them: the first request opens a window
of ``window`` seconds with ``limit`` tokens; ``X-RateLimit-Reset-After`` counts down to its end.
A refused request takes no token. Which bucket a request falls in is decided by
:func:`classify` from its method and path; the numbers are in :data:`RULES` and
:data:`GLOBAL_LIMIT` (``standins/discord_server/README.md`` says where they come from).
Interaction routes (the callback and the interaction's webhook) are exempt from the global
limit, as Discord documents. Windows run on the real monotonic clock: discord.py sleeps in real
time, whatever the stand-in's own clock offset says.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["GLOBAL_LIMIT", "GLOBAL_WINDOW", "RULES", "BucketRule", "Decision", "RateLimiter", "classify"]


@dataclass(frozen=True)
class BucketRule:
    """``limit`` requests per ``window`` seconds, one bucket per top-level resource (``per``)."""

    name: str
    limit: int
    window: float
    per: str  # what keys the bucket: "interaction token", "channel" or "route"

    @property
    def bucket_hash(self) -> str:
        """What ``X-RateLimit-Bucket`` carries: opaque, without the top-level resource (as Discord's)."""
        return hashlib.md5(self.name.encode(), usedforsecurity=False).hexdigest()


#: The per-route buckets (see the README of the stand-in for the sources of each number).
RULES: dict[str, BucketRule] = {rule.name: rule for rule in (
    BucketRule("interaction_callback", 5, 2.0, "interaction token"),
    BucketRule("interaction_webhook", 5, 2.0, "interaction token"),
    BucketRule("channel_message_create", 5, 5.0, "channel"),
    BucketRule("channel_message_edit", 5, 5.0, "channel"),
    BucketRule("channel_message_delete", 5, 1.0, "channel"),
    BucketRule("channel_message_read", 5, 1.0, "channel"),
    BucketRule("other", 50, 1.0, "route"),
)}
GLOBAL_LIMIT = 50  # requests per GLOBAL_WINDOW for a bot token, interaction routes exempt
GLOBAL_WINDOW = 1.0


def classify(method: str, path: str, application_id: str) -> tuple[BucketRule, str, bool]:
    """``(rule, major parameter, exempt from the global limit)`` for a REST request (``path`` under ``/api/v10``)."""
    parts = path.strip("/").split("/")
    if parts[:1] == ["interactions"] and len(parts) == 4 and parts[3] == "callback":
        return RULES["interaction_callback"], parts[2], True
    if parts[:1] == ["webhooks"] and len(parts) >= 3 and parts[1] == application_id:
        return RULES["interaction_webhook"], parts[2], True
    if parts[:1] == ["channels"] and len(parts) >= 3 and parts[2] == "messages":
        channel = parts[1]
        if method == "GET":
            return RULES["channel_message_read"], channel, False
        if len(parts) == 3 and method == "POST":
            return RULES["channel_message_create"], channel, False
        if len(parts) == 4 and method == "PATCH":
            return RULES["channel_message_edit"], channel, False
        if len(parts) == 4 and method == "DELETE":
            return RULES["channel_message_delete"], channel, False
    # any other route: its own bucket per method and path (ids included, so per guild, per channel...)
    return RULES["other"], f"{method} {path}", False


@dataclass
class _Window:
    opened: float
    ends: float
    used: int = 0


@dataclass(frozen=True)
class Decision:
    """What the limiter decided for one request, and the headers of the answer."""

    allowed: bool
    rule: BucketRule
    major: str
    limit: int
    remaining: int
    reset_after: float  # seconds until the request's bucket resets
    reset_at: float  # the same as an epoch time (``X-RateLimit-Reset``)
    scope: str | None = None  # on a 429: "user" (the route's bucket) or "global"
    retry_after: float = 0.0  # on a 429

    @property
    def is_global(self) -> bool:
        return self.scope == "global"

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers (and, on a 429, ``Retry-After`` and ``Via``, which discord.py
        requires before it trusts a 429 as Discord's and not Cloudflare's)."""
        if self.is_global:
            headers = {"X-RateLimit-Global": "true", "X-RateLimit-Scope": "global"}
        else:
            headers = {
                "X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": f"{self.reset_at:.3f}",
                "X-RateLimit-Reset-After": f"{self.reset_after:.3f}",
                "X-RateLimit-Bucket": self.rule.bucket_hash,
            }
            if self.scope is not None:
                headers["X-RateLimit-Scope"] = self.scope
        if self.scope is not None:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
            headers["Via"] = "1.1 google"
        return headers

    def body(self) -> dict[str, object]:
        """The JSON body of the 429."""
        return {"message": "You are being rate limited.", "retry_after": round(self.retry_after, 3),
                "global": self.is_global}


@dataclass
class RateLimiter:
    """Per-route buckets and the global limit (see the module docstring)."""

    rules: dict[str, BucketRule] = field(default_factory=lambda: dict(RULES))
    global_limit: int = GLOBAL_LIMIT
    global_window: float = GLOBAL_WINDOW
    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time  # for X-RateLimit-Reset (epoch seconds)
    _windows: dict[tuple[str, str], _Window] = field(default_factory=dict)
    _global: _Window | None = None
    _pruned: float = float("-inf")

    def take(self, method: str, path: str, application_id: str) -> Decision:
        """Decide on one request arriving now; an allowed request takes a token of its bucket
        (and of the global limit unless exempt)."""
        rule, major, exempt = classify(method, path, application_id)
        rule = self.rules.get(rule.name, rule)
        now = self.monotonic()
        window = self._window((rule.name, major), rule.window, now)
        reset_after = max(0.0, window.opened + rule.window - now)
        reset_at = self.wall() + reset_after
        if window.used >= rule.limit:
            return Decision(False, rule, major, rule.limit, 0, reset_after, reset_at, scope="user",
                            retry_after=reset_after)
        if not exempt:
            glob = self._global_window(now)
            if glob.used >= self.global_limit:
                wait = max(0.0, glob.opened + self.global_window - now)
                return Decision(False, rule, major, rule.limit, rule.limit - window.used, reset_after, reset_at,
                                scope="global", retry_after=wait)
            glob.used += 1
        window.used += 1
        return Decision(True, rule, major, rule.limit, rule.limit - window.used, reset_after, reset_at)

    def _window(self, key: tuple[str, str], length: float, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None or now >= window.ends:
            if now - self._pruned >= 1.0:  # forget buckets whose windows have ended (once a second)
                self._pruned = now
                self._windows = {k: w for k, w in self._windows.items() if now < w.ends}
            window = self._windows[key] = _Window(opened=now, ends=now + length)
        return window

    def _global_window(self, now: float) -> _Window:
        if self._global is None or now >= self._global.ends:
            self._global = _Window(opened=now, ends=now + self.global_window)
        return self._global
