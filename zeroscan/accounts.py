"""Accounts of the HTTP API and the command line: a name, a role and the sha256 of its API token
(the token itself is shown once, at creation or rotation, and never stored). Roles: `owner`
(registers and manages its own brands, removes listings, reads its signals and standing),
`reviewer` (decides appeals), `operator` (approves or rejects owners' submissions, grants
privileges). Kept in one small JSON file that the
command line writes (under a file lock, replaced atomically) and the API server re-reads when it
changes, so a rotated or revoked token stops working at the next request."""
from __future__ import annotations

import enum
import fcntl
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import orjson

from brand_signals.registry import check_account_name
from connectors.atomic_file import write_atomically

# 32 random bytes = 256 bits: guessing is hopeless, so a fast unsalted sha256 is a safe verifier.
TOKEN_BYTES = 32
# A recognisable prefix lets secret scanners find leaked tokens.
TOKEN_PREFIX = "zs_"


class Role(enum.Enum):
    OWNER = "owner"
    REVIEWER = "reviewer"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    token_sha256: str            # "" once revoked
    created_at_ms: int
    token_at_ms: int = 0         # when the current token was issued (0: at creation)
    revoked: bool = False        # no token works; the account's brands stay its own
    role: Role = Role.OWNER


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AccountStore:
    def __init__(self, path: Path, *, now_ms: Callable[[], int] = _now_ms) -> None:
        self.path = Path(path)
        self._now_ms = now_ms
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int, int], dict[str, Account]] | None = None

    @classmethod
    def at_state_dir(cls, state_dir: Path) -> "AccountStore":
        return cls(Path(state_dir) / "accounts.json")

    def _load(self) -> dict[str, Account]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if self._cache is not None and self._cache[0] == stamp:
                return self._cache[1]
            raw = orjson.loads(self.path.read_bytes())
            accounts = {a["name"]: Account(a["name"], a["token_sha256"], a["created_at_ms"], a.get("token_at_ms", 0),
                                           a.get("revoked", False), Role(a.get("role", "owner")))
                        for a in raw["accounts"]}
            self._cache = (stamp, accounts)
            return accounts

    def list(self) -> list[Account]:
        return sorted(self._load().values(), key=lambda a: a.name)

    def get(self, name: str) -> Account | None:
        return self._load().get(name)

    def create(self, name: str, role: Role = Role.OWNER) -> tuple[Account, str]:
        """A new account and its token; the token is returned once and only its hash is kept."""
        check_account_name(name)
        token = _new_token()
        now = self._now_ms()

        def add(accounts: dict[str, Account]) -> Account:
            if name in accounts:
                raise ValueError(f"account {name!r} already exists")
            return Account(name, hash_token(token), now, now, role=role)

        return self._update(name, add), token

    def rotate(self, name: str) -> tuple[Account, str]:
        """A new token for an existing account (a revoked one included, which it restores); the
        old token stops working at once. The new token is returned once."""
        token = _new_token()
        now = self._now_ms()

        def renew(accounts: dict[str, Account]) -> Account:
            old = self._existing(accounts, name)
            return Account(name, hash_token(token), old.created_at_ms, now, role=old.role)

        return self._update(name, renew), token

    def revoke(self, name: str) -> Account:
        """No token works for the account until it is rotated; its brands stay its own (no one
        else may change them)."""
        def disable(accounts: dict[str, Account]) -> Account:
            old = self._existing(accounts, name)
            return Account(name, "", old.created_at_ms, old.token_at_ms, revoked=True, role=old.role)

        return self._update(name, disable)

    @staticmethod
    def _existing(accounts: dict[str, Account], name: str) -> Account:
        old = accounts.get(name)
        if old is None:
            raise ValueError(f"no account {name!r}")
        return old

    def _update(self, name: str, change: Callable[[dict[str, Account]], Account]) -> Account:
        """Read, change one account and write back, under the store's file lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            accounts = dict(self._load())
            accounts[name] = account = change(accounts)
            self._write(accounts)
        return account

    def _write(self, accounts: dict[str, Account]) -> None:
        body = orjson.dumps({"accounts": [
            {"name": a.name, "token_sha256": a.token_sha256, "created_at_ms": a.created_at_ms,
             "token_at_ms": a.token_at_ms, "revoked": a.revoked, "role": a.role.value}
            for a in sorted(accounts.values(), key=lambda a: a.name)]}, option=orjson.OPT_INDENT_2)
        write_atomically(self.path, body, 0o600)

    def authenticate(self, token: str) -> Account | None:
        """The account whose token this is; every stored hash is compared in constant time."""
        digest = hash_token(token)
        found = None
        for a in self._load().values():
            if hmac.compare_digest(digest, a.token_sha256) and not a.revoked:
                found = a
        return found


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
