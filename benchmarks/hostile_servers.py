"""Hostile image hosts on loopback, for the egress tests and the hostile corpus: a server that
accepts and stays silent, one that drips its headers or its body a byte at a time, one that
redirects wherever it is told, and one that serves given bytes. Real sockets, bounded: every
connection ends within `hold_s` or when the server stops. Records what reached it."""
from __future__ import annotations

import select
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from connectors.egress import EgressRefused

# Longest a hostile connection is held open; the fetcher's deadlines are far shorter.
HOLD_S = 30.0


@dataclass
class Seen:
    connections: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)   # request line and headers


class HostileServer:
    """`host` is 127.0.0.1 or ::1. Paths: /silent, /drip-headers, /drip-body, /redirect?to=URI,
    /img/NAME (bytes from `images`, content type from `types`), /status?code=N."""

    def __init__(self, host: str = "127.0.0.1", images: dict[str, bytes] | None = None,
                 drip_s: float = 0.2, hold_s: float = HOLD_S, types: dict[str, str] | None = None):
        self.host, self.drip_s, self.hold_s = host, drip_s, hold_s
        self.images = dict(images or {})
        self.types = dict(types or {})
        self.seen = Seen()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(128)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name=f"hostile-{self.port}", daemon=True)
        self._accept.start()

    @property
    def base(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            with self._lock:
                self.seen.connections += 1
                self._threads = [t for t in self._threads if t.is_alive()]
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _handle(self, conn: socket.socket) -> None:
        end = time.monotonic() + self.hold_s
        try:
            conn.settimeout(1.0)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536 and time.monotonic() < end:
                try:
                    data = conn.recv(4096)
                except (socket.timeout, TimeoutError):
                    if self._stop.is_set():
                        return
                    continue
                if not data:
                    return
                head += data
            lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            req = {"line": lines[0]}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                req[k.strip().lower()] = v.strip()
            with self._lock:
                self.seen.requests.append(req)
            parts = lines[0].split(" ")
            self._route(conn, urllib.parse.urlsplit(parts[1] if len(parts) > 1 else "/"), end)
        except OSError:
            pass
        finally:
            conn.close()

    def _wait(self, conn: socket.socket, s: float, end: float) -> bool:
        """Wait `s`; False once the server stops, the client hangs up or the hold ends."""
        r, _, _ = select.select([conn], [], [], s)
        if r:
            try:
                if not conn.recv(1, socket.MSG_PEEK):
                    return False
            except OSError:
                return False
        return not self._stop.is_set() and time.monotonic() < end

    def _route(self, conn: socket.socket, url: urllib.parse.SplitResult, end: float) -> None:
        q = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        if path == "/silent":
            while self._wait(conn, 0.1, end):
                pass
        elif path == "/drip-headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Drip: ")
            while self._wait(conn, self.drip_s, end):
                conn.sendall(b"a")
        elif path == "/drip-body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n\x89PNG")
            while self._wait(conn, self.drip_s, end):
                conn.sendall(b"\0")
        elif path == "/redirect":
            loc = q.get("to", "/")
            conn.sendall(f"HTTP/1.1 302 Found\r\nLocation: {loc}\r\nContent-Length: 0\r\n\r\n".encode())
        elif path == "/status":
            code = int(q.get("code", "500"))
            conn.sendall(f"HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nno".encode())
        elif path.startswith("/img/") and path[5:] in self.images:
            body = self.images[path[5:]]
            ctype = self.types.get(path[5:], "image/png")
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + body)
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self._stop.set()
        self._accept.join(5)
        self._sock.close()
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> "HostileServer":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class Listener:
    """A bare listening socket that counts the connections reaching it (a proxy that must see
    none, an internal service a redirect points at)."""

    def __init__(self, host: str = "127.0.0.1"):
        self._srv = HostileServer(host, hold_s=1.0)
        self.port, self.base = self._srv.port, self._srv.base

    @property
    def connections(self) -> int:
        return self._srv.seen.connections

    def close(self) -> None:
        self._srv.close()

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class SilentDns:
    """A DNS server on loopback (UDP) that reads every query and never answers: a seller's
    name server that holds lookups of its names. Counts the queries that reached it."""

    def __init__(self, host: str = "127.0.0.1"):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.1)
        self.addr = self._sock.getsockname()
        self.queries: list[str] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._serve, name=f"silent-dns-{self.addr[1]}", daemon=True)
        self._t.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self._sock.recvfrom(4096)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            self.queries.append(_qname(data[12:]))

    def close(self) -> None:
        self._stop.set()
        self._t.join(5)
        self._sock.close()

    def __enter__(self) -> "SilentDns":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _qname(q: bytes) -> str:
    labels, i = [], 0
    while i < len(q) and q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
        i += 1 + q[i]
    return ".".join(labels)


def udp_resolver(server: tuple[str, int], wait_s: float = 30.0):
    """A stub resolver for `EgressPolicy` that asks one DNS server for A records over UDP and
    waits for the answer as getaddrinfo does (glibc: 5 s a try, retried; here `wait_s` in
    all), so a server that never answers holds the calling thread that long."""
    import random
    import struct

    def resolve(host: str, port: int) -> list[str]:
        qid = random.getrandbits(16)
        q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode("ascii") for p in host.split(".") if p) + b"\0"
        q += struct.pack(">HH", 1, 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(wait_s)
            s.sendto(q, server)
            try:
                data = s.recv(4096)      # a silent server: blocks until wait_s
            except (socket.timeout, TimeoutError):
                raise EgressRefused("unresolvable", "no answer from the name server") from None
        # the answer's A records (enough for a server that does answer)
        an, out, i = struct.unpack(">H", data[6:8])[0], [], len(q)
        for _ in range(an):
            i += 2 if data[i] & 0xC0 == 0xC0 else data.index(b"\0", i) + 1 - i
            rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[i:i + 10])
            i += 10
            if rtype == 1 and rdlen == 4:
                out.append(socket.inet_ntoa(data[i:i + 4]))
            i += rdlen
        return out

    return resolve
