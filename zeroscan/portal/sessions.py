"""Portal sessions: a random session id in an HttpOnly, SameSite=Strict cookie, the session kept
on the server under the id's sha256 (a stolen copy of the store opens nothing). A session holds
the account's name and the sha256 of the token it signed in with, never the token: once the
token is rotated or revoked the hash no longer matches and the session ends. Every form carries
the session's CSRF token; a POST without it (or with another session's) is refused."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

COOKIE = "zs_portal"
# A session ends after this long without a request, and this long after sign-in in any case.
IDLE_S = 30 * 60
ABSOLUTE_S = 12 * 3600
MAX_SESSIONS = 10_000


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class Session:
    csrf: str
    created: float
    seen: float
    account: str = ""          # "" before sign-in (the sign-in form has a CSRF token too)
    token_sha256: str = ""
    flash: list[tuple[str, str]] = field(default_factory=list)   # (kind, message) for the next page


class SessionStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic, idle_s: float = IDLE_S,
                 absolute_s: float = ABSOLUTE_S, max_sessions: int = MAX_SESSIONS) -> None:
        self._clock, self.idle_s, self.absolute_s, self.max_sessions = clock, idle_s, absolute_s, max_sessions
        self._by_digest: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self, account: str = "", token_sha256: str = "") -> tuple[str, Session]:
        """A fresh session id (the cookie value) and its session."""
        sid = secrets.token_urlsafe(32)
        now = self._clock()
        s = Session(secrets.token_urlsafe(32), now, now, account, token_sha256)
        with self._lock:
            self._expire(now)
            if len(self._by_digest) >= self.max_sessions:   # the oldest anonymous ones go first
                victims = sorted(self._by_digest.items(), key=lambda kv: (bool(kv[1].account), kv[1].seen))
                for d, _s in victims[: len(self._by_digest) - self.max_sessions + 1]:
                    del self._by_digest[d]
            self._by_digest[_digest(sid)] = s
        return sid, s

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > 128:
            return None
        now = self._clock()
        with self._lock:
            s = self._by_digest.get(_digest(sid))
            if s is None or self._expired(s, now):
                self._by_digest.pop(_digest(sid), None)
                return None
            s.seen = now
            return s

    def drop(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_digest.pop(_digest(sid), None)

    def _expired(self, s: Session, now: float) -> bool:
        return now - s.seen > self.idle_s or now - s.created > self.absolute_s

    def _expire(self, now: float) -> None:
        for d in [d for d, s in self._by_digest.items() if self._expired(s, now)]:
            del self._by_digest[d]

    def __len__(self) -> int:
        return len(self._by_digest)


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    return session is not None and bool(sent) and hmac.compare_digest(session.csrf, sent or "")
