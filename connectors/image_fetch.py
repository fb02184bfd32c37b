"""Fetching images: `fetch` for the operator's trusted inputs (brand logos and product photos
named in a brands file: local paths and file:// allowed), and `ListingFetcher` for the uris
sellers write, every one under the egress policy (connectors/egress.py) and time budgets.

HTTP is a small HTTP/1.1 client of our own over a socket to the address the policy checked
(Host and TLS SNI carry the name), so no DNS answer is used twice, no proxy, `.netrc` or
credential comes from the environment, and one deadline covers the name lookup, connect, TLS,
headers and body (`BoundedResolver`: a lookup cannot be interrupted, so it runs on a bounded
pool of its own and the fetch waits for it no longer than its deadline).
A listing batch's images are fetched concurrently from a bounded pool, at most a few per host,
under a per-listing and a per-batch budget; failures are remembered per uri for a while.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import queue
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from connectors.egress import Destination, EgressPolicy, EgressRefused, Resolver, system_resolver, open_regular_file
from connectors.image_checks import ALLOWED_CONTENT_TYPES, ImageLimits, ImageRejected, check_sha256, sniff_format

Clock = Callable[[], float]

# requests' advice: a connect timeout slightly above a multiple of 3 s (TCP's retransmit window).
CONNECT_TIMEOUT_S = 3.05
# Longest silence between two reads of a response; a healthy image host streams continuously.
READ_TIMEOUT_S = 5.0
# One deadline per fetch, over connect, TLS, headers and body: 10 MiB (the byte cap) at
# ~10 Mbit/s is 8 s; a product-photo CDN answers in well under a second.
FETCH_DEADLINE_S = 10.0
MAX_REDIRECTS = 3
# Status line plus headers; image CDNs send 1-2 KiB, http.client allows 100 headers of 64 KiB.
MAX_HEADER_BYTES = 32 << 10
_CHUNK = 64 << 10

# Per listing: its images share one budget (the contract allows 20 images per listing), so one
# listing of silent hosts costs at most this, however many images it names.
LISTING_BUDGET_S = 12.0
# Per batch (an Arrow batch of up to 2,000 records): fetching stops here; what is unfinished
# becomes an image_error. The checkpoint timeout is 5 min (flink-conf/config.yaml) and the
# interval 2 s, so a batch that fetches for at most 20 s keeps every checkpoint far inside it.
BATCH_BUDGET_S = 20.0
# Fetched bytes a batch holds before decoding: the usual new images of a batch are a few hundred
# photos of 100-500 KB (~50 MB); past this the rest of the batch's images are not fetched. At
# most `threads` fetches of MAX_IMAGE_BYTES each are in flight beyond it.
BATCH_BYTES = 128 << 20
# Concurrent fetches per worker process: enough that 20 silent hosts cost one deadline, not
# twenty; threads mostly wait on sockets.
FETCH_THREADS = 16
# At most this many fetches to one host at a time: a host that stalls takes 4 threads, not 16;
# browsers open 6 connections per host.
PER_HOST_FETCHES = 4
# A uri that failed is not fetched again for 10 min (a re-post of the same listing comes back
# within minutes); at most 50,000 uris remembered (~10 MB).
NEGATIVE_TTL_S = 600.0
NEGATIVE_ENTRIES = 50_000
# Threads that run name lookups (getaddrinfo cannot be interrupted). A fetch waits for its
# lookup only until its deadline, so a lookup that never answers holds one of these, never a
# fetch thread, until the system resolver gives up (glibc: 5 s per try and server). At most 16
# fetches start a new lookup per 10 s deadline, so 64 leave room for the lookups that answer
# even while sellers' stalled names hold dozens; lookups of one name share one thread.
DNS_THREADS = 64
# A lookup still unanswered after this long (a TCP connect's timeout, or half the fetch
# deadline if that is shorter) is a stalled name: the host is remembered for NEGATIVE_TTL_S and
# its other uris are not looked up again. A shorter wait, cut by a listing's or batch's budget,
# is not held against the name.
DNS_STALLED_S = CONNECT_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class FetchTimeouts:
    connect_s: float = CONNECT_TIMEOUT_S
    read_s: float = READ_TIMEOUT_S
    total_s: float = FETCH_DEADLINE_S


@dataclass(frozen=True, slots=True)
class FetchBudgets:
    """The time budgets of listing fetches (tunable in Settings)."""

    timeouts: FetchTimeouts = FetchTimeouts()
    listing_s: float = LISTING_BUDGET_S
    batch_s: float = BATCH_BUDGET_S
    batch_bytes: int = BATCH_BYTES
    threads: int = FETCH_THREADS
    per_host: int = PER_HOST_FETCHES
    negative_ttl_s: float = NEGATIVE_TTL_S
    negative_entries: int = NEGATIVE_ENTRIES
    dns_threads: int = DNS_THREADS

    def __post_init__(self) -> None:
        for name in ("listing_s", "batch_s", "negative_ttl_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"fetch budget {name} must be >= 0, got {getattr(self, name)}")
        if self.threads < 1 or self.per_host < 1 or self.dns_threads < 1:
            raise ValueError(f"fetch threads, per_host and dns_threads must be >= 1, got "
                             f"{self.threads}, {self.per_host}, {self.dns_threads}")

    def to_config(self) -> dict:
        t = self.timeouts
        return {"connect_s": t.connect_s, "read_s": t.read_s, "total_s": t.total_s, "listing_s": self.listing_s,
                "batch_s": self.batch_s, "batch_bytes": self.batch_bytes, "threads": self.threads, "per_host": self.per_host,
                "negative_ttl_s": self.negative_ttl_s, "negative_entries": self.negative_entries,
                "dns_threads": self.dns_threads}

    @classmethod
    def from_config(cls, cfg: dict | None) -> "FetchBudgets":
        c = dict(cfg or {})
        known = {"connect_s", "read_s", "total_s"} | {f.name for f in dataclasses.fields(cls)} - {"timeouts"}
        if set(c) - known:
            raise ValueError(f"unknown fetch budget(s) {sorted(set(c) - known)}; known: {sorted(known)}")
        t = FetchTimeouts(**{k: float(c.pop(k)) for k in ("connect_s", "read_s", "total_s") if k in c})
        return cls(timeouts=t, **c)


class FetchFailed(ImageRejected):
    """A fetch that did not deliver an image (network, HTTP, content type, size, time)."""


class DeadlineExceeded(FetchFailed):
    """The fetch's deadline passed (lookup, connect, TLS, headers and body share it)."""


class LookupTimedOut(DeadlineExceeded):
    """The host name lookup did not answer within the fetch's deadline (rule 'dns-deadline')."""

    rule = "dns-deadline"


# -- HTTP ------------------------------------------------------------------------------------

def http_get(uri: str, policy: EgressPolicy, limits: ImageLimits = ImageLimits(),
             timeouts: FetchTimeouts = FetchTimeouts(), *, deadline: float | None = None,
             clock: Clock = time.monotonic, resolver: "Resolver | BoundedResolver" = system_resolver,
             tls: ssl.SSLContext | None = None) -> bytes:
    """GET an image under the policy, following up to MAX_REDIRECTS redirects, each checked.
    Every hop's lookup runs under the same deadline (`BoundedResolver`)."""
    end = clock() + timeouts.total_s if deadline is None else min(deadline, clock() + timeouts.total_s)
    dns = resolver if isinstance(resolver, BoundedResolver) else BoundedResolver.shared(resolver)

    def lookup(host: str, port: int) -> list[str]:
        return dns.resolve(host, port, end, clock)

    for _ in range(MAX_REDIRECTS + 1):
        dest = policy.destination(uri, lookup)
        status, headers, conn = _exchange(dest, timeouts, end, clock, tls)
        try:
            if status in (301, 302, 303, 307, 308):
                loc = headers.get("location")
                if not loc:
                    raise FetchFailed(f"HTTP {status} without a Location")
                uri = urllib.parse.urljoin(uri, loc)
                continue
            if status != 200:
                raise FetchFailed(f"HTTP {status}")
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if ctype not in ALLOWED_CONTENT_TYPES:
                raise FetchFailed(f"content type {ctype[:40] or 'missing'!r}, expected one of "
                                  f"{', '.join(sorted(ALLOWED_CONTENT_TYPES))}")
            return _read_body(conn, headers, limits.max_bytes)
        finally:
            conn.sock.close()
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


class BoundedResolver:
    """Name lookups under a fetch's deadline. `getaddrinfo` cannot be interrupted, so each
    lookup runs on a daemon thread of this resolver (at most `threads`, started on demand and
    ended when idle), and the fetch waits for it only until its deadline: a name whose DNS never
    answers costs the fetch its deadline and holds a resolver thread, never a fetch thread. One
    lookup per name and port is in flight whoever asks; a name still unanswered after
    `stalled_s` is remembered (`failures`), so its other uris fail at once. Address literals
    need no lookup."""

    IDLE_S = 30.0
    _shared: "dict[Callable, BoundedResolver]" = {}
    _shared_lock = threading.Lock()

    def __init__(self, resolver: Resolver = system_resolver, threads: int = DNS_THREADS,
                 ttl_s: float = NEGATIVE_TTL_S, entries: int = NEGATIVE_ENTRIES,
                 stalled_s: float = DNS_STALLED_S, clock: Clock = time.monotonic):
        self.resolver, self.threads, self.stalled_s = resolver, threads, stalled_s
        self.failures = NegativeCache(ttl_s, entries, clock)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._inflight: dict[tuple[str, int], tuple[Future, float]] = {}
        self._lock = threading.Lock()
        self._running = self._idle = 0
        self.lookups = 0           # lookups started (a test and the benchmark read it)

    @classmethod
    def shared(cls, resolver: Resolver) -> "BoundedResolver":
        """One per resolver function, for callers without their own (the trusted fetch, tests)."""
        with cls._shared_lock:
            if resolver not in cls._shared:
                cls._shared[resolver] = cls(resolver)
            return cls._shared[resolver]

    def resolve(self, host: str, port: int, end: float, clock: Clock = time.monotonic) -> list[str]:
        """The addresses of `host`, or LookupTimedOut once `end` (on `clock`) passes."""
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            return [host]
        except ValueError:
            pass
        known = self.failures.get(host)
        if known is not None:
            raise FetchFailed(f"{known} (a remembered failure, not looked up again)")
        key = (host, port)
        with self._lock:
            job = self._inflight.get(key)
            if job is None:
                job = self._inflight[key] = (Future(), time.monotonic())
                self.lookups += 1
                self._jobs.put((key, job[0]))
                if self._idle > 0:                 # an idle thread takes it
                    self._idle -= 1
                elif self._running < self.threads:
                    self._running += 1
                    threading.Thread(target=self._work, name="zeroscan-dns", daemon=True).start()
                # else: every thread is busy; it waits its turn (and the fetch its deadline)
        fut, started = job
        try:
            return fut.result(timeout=max(end - clock(), 0.0))
        except FutureTimeout:
            pending = time.monotonic() - started
            why = (f"host name lookup did not answer within the fetch's deadline "
                   f"(rule {LookupTimedOut.rule!r}; pending {pending:.1f}s)")
            if pending >= self.stalled_s:
                self.failures.put(host, f"host name lookup stalled (rule {LookupTimedOut.rule!r})")
            raise LookupTimedOut(why) from None

    def _work(self) -> None:
        """`_idle` counts threads free for a new lookup: a thread becomes free when its lookup
        ends, and is taken when a lookup is queued; a free thread with nothing to do ends."""
        while True:
            try:
                key, fut = self._jobs.get(timeout=self.IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty() and self._idle > 0:
                        self._idle -= 1
                        self._running -= 1
                        return
                continue
            try:
                fut.set_result(self.resolver(*key))
            except BaseException as e:          # EgressRefused('unresolvable'), anything it raises
                fut.set_exception(e)
            finally:
                with self._lock:
                    self._inflight.pop(key, None)
                    self._idle += 1


class _Conn:
    """One socket with the fetch's deadline applied to every wait on it."""

    def __init__(self, sock: socket.socket, end: float, read_s: float, clock: Clock):
        self.sock, self.end, self.read_s, self.clock = sock, end, read_s, clock
        self.buf = bytearray()

    def _left(self) -> float:
        left = self.end - self.clock()
        if left <= 0:
            raise DeadlineExceeded("fetch took longer than its deadline (connect, headers and body share one)")
        return left

    def recv(self) -> bytes:
        self.sock.settimeout(min(self.read_s, self._left()))
        try:
            data = self.sock.recv(_CHUNK)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            self._left()
            raise FetchFailed(f"timed out: no data for {self.read_s}s") from None
        self._left()
        return data

    def read_until(self, marker: bytes, limit: int) -> bytes:
        while (i := self.buf.find(marker)) < 0:
            if len(self.buf) > limit:
                raise FetchFailed(f"response headers longer than {limit} bytes")
            data = self.recv()
            if not data:
                raise FetchFailed("connection closed before the headers ended")
            self.buf += data
        out = bytes(self.buf[:i])
        del self.buf[:i + len(marker)]
        return out

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self.recv()
            if not data:
                raise FetchFailed("connection closed before the body ended")
            self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _connect(dest: Destination, timeouts: FetchTimeouts, end: float, clock: Clock,
             tls: ssl.SSLContext | None) -> socket.socket:
    last = "no address"
    for addr in dest.addresses:
        left = end - clock()
        if left <= 0:
            break
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(min(timeouts.connect_s, left))
            sock.connect((addr, dest.port))
        except OSError as e:
            sock.close()
            last = "timed out" if isinstance(e, (socket.timeout, TimeoutError)) else (e.strerror or type(e).__name__)
            continue
        if dest.scheme != "https":
            return sock
        return _tls(sock, dest.host, tls or ssl.create_default_context(), end, clock)
    raise FetchFailed(f"could not connect: {last}")


def _tls(sock: socket.socket, host: str, ctx: ssl.SSLContext, end: float, clock: Clock) -> socket.socket:
    """The TLS handshake, non-blocking, so a server that drips it cannot pass the deadline."""
    import select

    ts = ctx.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    ts.setblocking(False)
    try:
        while True:
            try:
                ts.do_handshake()
                return ts
            except ssl.SSLWantReadError:
                r, w = [ts], []
            except ssl.SSLWantWriteError:
                r, w = [], [ts]
            left = end - clock()
            if left <= 0 or not any(select.select(r, w, [], left)):
                raise DeadlineExceeded("fetch took longer than its deadline (in the TLS handshake)")
    except ssl.SSLError as e:
        ts.close()
        raise FetchFailed(f"TLS failed: {e.reason or type(e).__name__}") from None
    except BaseException:
        ts.close()
        raise


def _exchange(dest: Destination, timeouts: FetchTimeouts, end: float, clock: Clock,
              tls: ssl.SSLContext | None) -> tuple[int, dict[str, str], _Conn]:
    sock = _connect(dest, timeouts, end, clock, tls)
    conn = _Conn(sock, end, timeouts.read_s, clock)
    try:
        req = (f"GET {dest.target} HTTP/1.1\r\nHost: {dest.host_header}\r\n"
               f"Accept: {', '.join(sorted(ALLOWED_CONTENT_TYPES))}\r\nAccept-Encoding: identity\r\n"
               f"User-Agent: zeroscan\r\nConnection: close\r\n\r\n").encode("ascii")
        sock.settimeout(min(timeouts.read_s, max(end - clock(), 0.001)))
        sock.sendall(req)
        head = conn.read_until(b"\r\n\r\n", MAX_HEADER_BYTES).decode("latin-1")
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise FetchFailed("not an HTTP/1.x response")
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise FetchFailed("malformed response header")
            headers[name.strip().lower()] = value.strip()
    except BaseException:
        sock.close()
        raise
    return int(parts[1]), headers, conn


def _read_body(conn: _Conn, headers: dict[str, str], cap: int) -> bytes:
    if headers.get("content-encoding", "identity").lower() not in ("identity", ""):
        raise FetchFailed("compressed response (content-encoding) refused")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            size_line = conn.read_until(b"\r\n", 1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise FetchFailed("malformed chunked body") from None
            if size == 0:
                return bytes(out)
            if len(out) + size > cap:
                raise FetchFailed(f"more than {cap} bytes, above the limit")
            out += conn.read_exact(size)
            conn.read_exact(2)
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise FetchFailed("malformed Content-Length")
        if int(declared) > cap:
            raise FetchFailed(f"Content-Length {declared}, above the {cap}-byte limit")
        return conn.read_exact(int(declared))
    out = bytearray(conn.buf)
    conn.buf.clear()
    while chunk := conn.recv():
        out += chunk
        if len(out) > cap:
            raise FetchFailed(f"more than {cap} bytes, above the limit")
    return bytes(out)


# -- trusted operator input ------------------------------------------------------------------

def fetch(uri: str, base_dir: Path | str | None, expected_sha256: str | None = None, *,
          limits: ImageLimits = ImageLimits(), timeouts: FetchTimeouts = FetchTimeouts(),
          policy: EgressPolicy = EgressPolicy()) -> bytes:
    """The bytes of an image the operator names (a brands file's logos, the image store's own
    file:// uris): a path relative to `base_dir`, an absolute path, `file://`, or `http(s)://`
    under `policy`. Never for seller-supplied uris (ListingFetcher). Capped and type-checked by
    magic bytes; the full decode is left to `check_image` / `ImageStore.put`."""
    parsed = urllib.parse.urlsplit(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        try:
            data = http_get(uri, policy, limits, timeouts)
        except EgressRefused as e:
            raise ImageRejected(str(e)) from None
    elif scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ImageRejected(f"{uri[:200]}: file:// uris on another host are not supported")
        data = _read_trusted(Path(urllib.request.url2pathname(parsed.path)), limits)
    elif scheme == "":
        path = Path(uri)
        if not path.is_absolute():
            if base_dir is None:
                raise ImageRejected(f"{uri[:200]}: a relative path needs a base folder")
            path = Path(base_dir) / path
        data = _read_trusted(path, limits)
    else:
        raise ImageRejected(f"{uri[:200]}: unsupported scheme {scheme[:20]!r} (use a path, file:// or http(s)://)")
    check_sha256(data, expected_sha256)
    sniff_format(data)
    return data


def _read_trusted(path: Path, limits: ImageLimits) -> bytes:
    try:
        return open_regular_file(path.resolve(), limits.max_bytes)
    except EgressRefused as e:
        raise ImageRejected(f"{path}: {e}") from None


# -- seller-supplied uris --------------------------------------------------------------------

class NegativeCache:
    """Failed uris and why, for `ttl_s` seconds, at most `entries` of them (oldest dropped)."""

    def __init__(self, ttl_s: float, entries: int, clock: Clock = time.monotonic):
        self.ttl_s, self.entries, self.clock = ttl_s, entries, clock
        self._d: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, uri: str) -> str | None:
        with self._lock:
            hit = self._d.get(uri)
            if hit is None:
                return None
            if hit[0] <= self.clock():
                del self._d[uri]
                return None
            self.hits += 1
            return hit[1]

    def put(self, uri: str, reason: str) -> None:
        if self.ttl_s <= 0 or self.entries <= 0:
            return
        with self._lock:
            self._d[uri] = (self.clock() + self.ttl_s, reason)
            self._d.move_to_end(uri)
            while len(self._d) > self.entries:
                self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)


class FetchRequest(NamedTuple):
    group: int                  # the listing it belongs to (its images share a budget)
    uri: str
    sha256: str | None = None


class ListingFetcher:
    """Fetches the images sellers name, only under `policy` (Kafka mode: http(s) only; with
    `policy.local_root`: also files inside that folder) and within `budgets`.

    Called as `fetcher(uri, base_dir, sha256)` for one image, or `fetch_many(requests)` for a
    batch. `base_dir` is ignored: what is local is the policy's `local_root`, never the caller's."""

    def __init__(self, policy: EgressPolicy, budgets: FetchBudgets = FetchBudgets(),
                 limits: ImageLimits = ImageLimits(), clock: Clock = time.monotonic,
                 resolver: Resolver = system_resolver, tls: ssl.SSLContext | None = None):
        self.policy, self.budgets, self.limits, self.clock = policy, budgets, limits, clock
        self.resolver, self.tls = resolver, tls
        self.dns = BoundedResolver(resolver, budgets.dns_threads, budgets.negative_ttl_s,
                                   budgets.negative_entries, min(DNS_STALLED_S, budgets.timeouts.total_s / 2), clock)
        self.failures = NegativeCache(budgets.negative_ttl_s, budgets.negative_entries, clock)
        # hosts that recently let a fetch time out: their uris go last, one at a time, so a
        # seller's slow hosts cannot take the pool from the hosts that answer
        self.slow_hosts = NegativeCache(budgets.negative_ttl_s, budgets.negative_entries, clock)
        self._pool: ThreadPoolExecutor | None = None
        self._host_busy: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, uri: str, base_dir: str | None = None, expected_sha256: str | None = None) -> bytes:
        out = self.fetch_many([FetchRequest(0, uri, expected_sha256)])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def fetch_one(self, uri: str, deadline: float | None = None) -> bytes:
        """One image under the policy, no cache; raises ImageRejected / EgressRefused."""
        kind = self.policy.classify(uri)
        if kind == "local":
            data = open_regular_file(self.policy.local_file(uri), self.limits.max_bytes)
        else:
            data = http_get(uri, self.policy, self.limits, self.budgets.timeouts, deadline=deadline,
                            clock=self.clock, resolver=self.dns, tls=self.tls)
        sniff_format(data)
        return data

    def fetch_many(self, requests: Sequence[FetchRequest]) -> list[bytes | ImageRejected]:
        """Every request's bytes or its error, in order, within the batch budget. One fetch per
        distinct uri; a listing's fetches end at its budget; nothing runs past the batch's."""
        b = self.budgets
        batch_end = self.clock() + b.batch_s
        results: list[bytes | ImageRejected | None] = [None] * len(requests)
        slots: dict[str, list[int]] = {}
        first: dict[str, FetchRequest] = {}
        for i, r in enumerate(requests):
            r = FetchRequest(*r)
            if r.uri not in slots:
                known = self.failures.get(r.uri)
                if known is not None:
                    results[i] = FetchFailed(f"{known} (a remembered failure, not fetched again)")
                    continue
                first[r.uri] = r
            slots.setdefault(r.uri, []).append(i)
        queue = sorted(first.values(), key=lambda r: self.slow_hosts.get(_host_key(r.uri)) is not None)
        slow = {h for h in map(_host_key, first) if self.slow_hosts.get(h) is not None}
        group_end: dict[int, float] = {}
        running: dict[Future, str] = {}
        pool = self._executor()
        held = 0
        while queue or running:
            now = self.clock()
            if now >= batch_end:
                break
            if held > b.batch_bytes:
                full = FetchFailed(f"batch byte budget of {b.batch_bytes} bytes spent")
                for r in queue:
                    self._fill(results, slots[r.uri], full)
                queue = []
            waiting = []
            for r in queue:
                host = _host_key(r.uri)
                if self._host_busy.get(host, 0) >= (1 if host in slow else b.per_host):
                    waiting.append(r)
                    continue
                end = min(group_end.setdefault(r.group, now + b.listing_s), batch_end)
                if end <= now:
                    self._fill(results, slots[r.uri], FetchFailed(f"listing fetch budget of {b.listing_s}s spent"))
                    continue
                with self._lock:
                    self._host_busy[host] = self._host_busy.get(host, 0) + 1
                running[pool.submit(self._guarded, r.uri, host, end)] = r.uri
            queue = waiting
            if not running:
                time.sleep(0.01)          # every queued host is busy with an earlier batch's fetch
                continue
            done, _ = wait(running, timeout=max(batch_end - self.clock(), 0), return_when=FIRST_COMPLETED)
            for fut in done:
                out = fut.result()
                held += len(out) if isinstance(out, bytes) else 0
                self._fill(results, slots[running.pop(fut)], out)
        spent = FetchFailed(f"batch fetch budget of {b.batch_s}s spent")
        for i, r in enumerate(results):
            if r is None:
                results[i] = spent
        return results  # type: ignore[return-value]

    @staticmethod
    def _fill(results: list, slots: list[int], out) -> None:
        for j in slots:
            results[j] = out

    def _guarded(self, uri: str, host: str, end: float) -> bytes | ImageRejected:
        own_end = self.clock() + self.budgets.timeouts.total_s
        remember = True
        try:
            return self.fetch_one(uri, end)
        except DeadlineExceeded as e:
            out = e
            remember = end >= own_end - 1e-3   # cut by a listing or batch budget: not the uri's own fault
            self.slow_hosts.put(host, "slow")
        except ImageRejected as e:
            out = e
        except EgressRefused as e:
            out = FetchFailed(str(e))
        except (OSError, ValueError, UnicodeError) as e:  # anything else a hostile peer provokes
            out = FetchFailed(f"fetch failed ({type(e).__name__})")
        finally:
            with self._lock:
                self._host_busy[host] -= 1
        if remember:
            self.failures.put(uri, str(out))
        if "timed out" in str(out) or "could not connect" in str(out):
            self.slow_hosts.put(host, "slow")
        return out

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.budgets.threads, thread_name_prefix="zeroscan-fetch")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _host_key(uri: str) -> str:
    """host:port, as browsers count connections per host."""
    try:
        parts = urllib.parse.urlsplit(uri)
        return f"{(parts.hostname or '').lower()}:{parts.port or ''}"
    except ValueError:
        return ""
