"""What one visitor may ask of a shared app: the operator's limits (environment variables, safe
defaults on a public Space, relaxed ones for a local run) and the bookkeeping that enforces them.

Set in one place, read by the form (which states them), the training job (deadline, fits,
steps) and every callback (rate limits, one running job per visitor).
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from typing import Optional

from gera.errors import GeraError


def public_mode() -> bool:
    """A public app: on a Hugging Face Space (``SPACE_ID`` is set there) or ``GERA_PUBLIC=1``."""
    return bool(os.environ.get("SPACE_ID")) or os.environ.get("GERA_PUBLIC", "") in ("1", "true")


@dataclass(frozen=True)
class Limits:
    """Per job and per visitor. ``None`` = no limit. Each field has an environment variable:
    ``GERA_`` + its name in capitals (e.g. ``GERA_JOB_SECONDS=600``)."""

    job_seconds: Optional[float] = None  # wall clock of one training job, embedding included
    max_fits: Optional[int] = None  # budgets × seeds × methods × grid points of one job
    max_steps: Optional[int] = None  # training steps per fit
    trains_per_hour: Optional[int] = None  # training jobs one visitor may start
    queries_per_minute: Optional[int] = None  # queries one visitor may send
    session_ttl_seconds: float = 3 * 3600  # a visitor's run (models, files) is dropped after this
    cache_max_bytes: Optional[int] = None  # the shared embedding cache (least recently used go)

    @classmethod
    def public(cls) -> "Limits":
        """Safe defaults for a public Space on a small machine."""
        return cls(job_seconds=300, max_fits=60, max_steps=3000, trains_per_hour=6,
                   queries_per_minute=60, session_ttl_seconds=3600, cache_max_bytes=2 * 1024 ** 3)

    @classmethod
    def from_env(cls, public: bool) -> "Limits":
        base = cls.public() if public else cls()
        values = {}
        for f in fields(cls):
            raw = os.environ.get(f"GERA_{f.name.upper()}", "").strip()
            if not raw:
                continue
            if raw.lower() == "none" and f.name != "session_ttl_seconds":
                values[f.name] = None
                continue
            try:
                values[f.name] = (float if f.name.endswith("seconds") else int)(raw)
            except ValueError:
                raise GeraError(f"GERA_{f.name.upper()}={raw!r} is not a number"
                                + ("" if f.name == "session_ttl_seconds" else " (or none)")
                                + ".") from None
        return cls(**{**base.__dict__, **values})

    def describe(self) -> str:
        """One line for the form: what a job may use here ("" when nothing is limited)."""
        parts = []
        if self.job_seconds is not None:
            parts.append(f"a job runs at most {self.job_seconds:g} s")
        if self.max_fits is not None:
            parts.append(f"at most {self.max_fits} fits per job (budgets × seeds × methods × "
                         "tuning grid)")
        if self.max_steps is not None:
            parts.append(f"at most {self.max_steps} steps per fit")
        if self.trains_per_hour is not None:
            parts.append(f"{self.trains_per_hour} jobs an hour per visitor")
        if not parts:
            return ""
        return "Limits on this shared app: " + "; ".join(parts) + "; one job at a time per visitor."


class RateLimiter:
    """At most ``count`` events per visitor in any ``window_s`` seconds (a sliding window)."""

    def __init__(self, count: Optional[int], window_s: float, what: str):
        self.count, self.window_s, self.what = count, window_s, what
        self._seen: dict[str, deque] = {}
        self._lock = threading.Lock()

    def check(self, visitor: str) -> None:
        """Count one event for ``visitor``, or raise ``GeraError`` if that is one too many."""
        if self.count is None:
            return
        now = time.monotonic()
        with self._lock:
            times = self._seen.setdefault(visitor, deque())
            while times and now - times[0] > self.window_s:
                times.popleft()
            if len(times) >= self.count:
                wait = self.window_s - (now - times[0]) if times else self.window_s
                raise GeraError(f"Too many {self.what} from you: at most {self.count} every "
                                f"{self.window_s:g} s here. Try again in {wait:.0f} s.")
            times.append(now)
            if len(self._seen) > 10_000:  # forget visitors who have gone quiet
                for key in [k for k, t in self._seen.items() if not t or now - t[-1] > self.window_s]:
                    del self._seen[key]


class RunningJobs:
    """Which visitors have a training job running: one each."""

    def __init__(self):
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def start(self, visitor: str) -> None:
        with self._lock:
            if visitor in self._running:
                raise GeraError("You already have a training job running: wait for it to finish, "
                                "or cancel it, before starting another.")
            self._running.add(visitor)

    def finish(self, visitor: str) -> None:
        with self._lock:
            self._running.discard(visitor)


def visitor_of(request) -> str:
    """Who is asking (a ``gr.Request``; ``None`` outside a request): the client's address. On a
    Space, behind its proxy, the address the proxy appended last to X-Forwarded-For; elsewhere
    that header is the client's own word, so the connection's address."""
    if request is None:
        return "local"
    if os.environ.get("SPACE_ID"):
        forwarded = (getattr(request, "headers", None) or {}).get("x-forwarded-for", "")
        if forwarded.strip():
            return forwarded.split(",")[-1].strip()
    host = getattr(getattr(request, "client", None), "host", None)
    return host or getattr(request, "session_hash", None) or "unknown"


@dataclass
class Guards:
    """The per-visitor limits every callback checks (one set per app)."""

    limits: Limits
    trains: RateLimiter
    queries: RateLimiter
    running: RunningJobs

    @classmethod
    def of(cls, limits: Limits) -> "Guards":
        return cls(limits, RateLimiter(limits.trains_per_hour, 3600, "training jobs"),
                   RateLimiter(limits.queries_per_minute, 60, "queries"), RunningJobs())
