"""The egress policy for seller-supplied image uris: which uris the scanner may fetch at all,
which addresses it may connect to, and which local files (file mode only) it may read.

Sellers write listings, so a listing's uri is hostile input. Kafka mode fetches `http(s)://`
only; file mode (`zeroscan scan`) also reads paths relative to the listings file that stay
inside its folder once resolved (symlinks included). Every address a host name resolves to is
checked, before connecting and on every redirect, and the caller connects to the address that
was checked (`Destination.addresses`), never to the name again. Refusals raise
`EgressRefused` naming the rule, never the content of anything read.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

# The contract caps an image uri at 2,048 characters (listing.schema.json).
MAX_URI_CHARS = 2048
# 100.64.0.0/10 (RFC 6598, carrier-grade NAT) is neither private nor global to `ipaddress`.
_SHARED = ipaddress.ip_network("100.64.0.0/10")
# IPv6 forms that carry an IPv4 address the packet may end up at: NAT64 (RFC 6052) and the
# deprecated IPv4-compatible ::a.b.c.d (RFC 4291 2.5.5.1); mapped (::ffff:) and 6to4/Teredo
# are read by `ipaddress` itself.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_COMPAT = ipaddress.ip_network("::/96")


class EgressRefused(ValueError):
    """A uri or an address the policy refuses; `rule` names the rule."""

    def __init__(self, rule: str, message: str):
        super().__init__(f"refused by egress rule {rule!r}: {message}")
        self.rule = rule


def address_class(ip: IPAddress) -> str | None:
    """Why an address is internal (loopback, private, ...), or None for a global unicast one.
    IPv4 carried inside IPv6 (mapped, compatible, NAT64, 6to4, Teredo) is judged as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_unspecified:
            return "unspecified"
        if ip.is_loopback:
            return "loopback"
        inner = _embedded_ipv4(ip)
        if ip in _NAT64_LOCAL:
            return "private"
        if inner is not None:
            why = address_class(inner)
            return why if why is None else f"{why} (IPv4 inside IPv6)"
    for name in ("unspecified", "loopback", "link_local", "multicast"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "shared address space (CGNAT)"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not globally routable"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise EgressRefused("unresolvable", f"host name does not resolve ({type(e).__name__})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked http(s) uri: connect to one of `addresses`, send `host` as Host and SNI."""

    scheme: str
    host: str
    port: int
    target: str                 # path and query, as sent on the request line
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """`allow`: networks and host names exempt from the internal-address rule (an operator's
    own image CDN; tests allow loopback). `deny`: networks and host names always refused.
    `local_root`: file mode's folder; None (Kafka mode) reads no local file at all."""

    allow_nets: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = frozenset()
    deny_nets: tuple[IPNetwork, ...] = ()
    deny_hosts: frozenset[str] = frozenset()
    local_root: Path | None = None

    @classmethod
    def from_lists(cls, allow: str | list[str] = "", deny: str | list[str] = "",
                   local_root: Path | str | None = None) -> "EgressPolicy":
        """From comma-separated (or listed) CIDRs, addresses and host names."""
        an, ah = _parse_list(allow, "allow")
        dn, dh = _parse_list(deny, "deny")
        return cls(an, ah, dn, dh, None if local_root is None else Path(local_root).resolve())

    def to_config(self) -> dict:
        """JSON-able form, for the job's operator configuration."""
        return {"allow": [str(n) for n in self.allow_nets] + sorted(self.allow_hosts),
                "deny": [str(n) for n in self.deny_nets] + sorted(self.deny_hosts),
                "local_root": None if self.local_root is None else str(self.local_root)}

    @classmethod
    def from_config(cls, cfg: dict | None) -> "EgressPolicy":
        cfg = cfg or {}
        return cls.from_lists(cfg.get("allow", []), cfg.get("deny", []), cfg.get("local_root"))

    def with_local_root(self, root: Path | str | None) -> "EgressPolicy":
        return EgressPolicy(self.allow_nets, self.allow_hosts, self.deny_nets, self.deny_hosts,
                            None if root is None else Path(root).resolve())

    # --- uris ------------------------------------------------------------------------------
    def classify(self, uri: str) -> str:
        """'http' for a uri to fetch over the network, 'local' for a file-mode path; refuses the rest."""
        if not isinstance(uri, str) or not uri:
            raise EgressRefused("uri", "empty uri")
        if len(uri) > MAX_URI_CHARS:
            raise EgressRefused("uri", f"uri longer than {MAX_URI_CHARS} characters")
        if any(ord(c) < 0x21 or c == "\x7f" for c in uri):
            raise EgressRefused("uri", "control characters or spaces in the uri")
        scheme = urllib.parse.urlsplit(uri).scheme.lower()
        if scheme in ("http", "https"):
            return "http"
        if scheme == "file":
            raise EgressRefused("scheme", "file:// uris are never fetched for listings")
        if scheme:
            raise EgressRefused("scheme", f"scheme {scheme[:20]!r} is not fetched (http or https only)")
        if self.local_root is None:
            raise EgressRefused("local-path", "local paths are not read in Kafka mode (http or https only)")
        return "local"

    def local_file(self, uri: str) -> Path:
        """A file-mode path, resolved (symlinks included), that must stay inside `local_root`."""
        if self.classify(uri) != "local":
            raise EgressRefused("local-path", "not a local path")
        rel = PurePosixPath(uri)
        if rel.is_absolute() or uri.startswith("~"):
            raise EgressRefused("local-path", "absolute paths are not read (only paths relative to the listings file)")
        if ".." in rel.parts:
            raise EgressRefused("local-path", "'..' in a path is not read")
        try:
            resolved = (self.local_root / rel).resolve(strict=True)
        except FileNotFoundError:
            raise EgressRefused("local-path", "no such file beside the listings file") from None
        except (OSError, RuntimeError):           # a symlink loop, a name too long
            raise EgressRefused("local-path", "path does not resolve") from None
        if not resolved.is_relative_to(self.local_root):
            raise EgressRefused("local-path", "path leaves the listings file's folder (through a link)")
        return resolved

    def destination(self, uri: str, resolver: Resolver = system_resolver) -> Destination:
        """Parse and check an http(s) uri and every address its host resolves to."""
        if self.classify(uri) != "http":
            raise EgressRefused("scheme", "not an http(s) uri")
        parts = urllib.parse.urlsplit(uri)
        if "@" in parts.netloc:
            raise EgressRefused("credentials", "credentials in a uri are never sent")
        try:
            port = parts.port
        except ValueError:
            raise EgressRefused("uri", "bad port") from None
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise EgressRefused("uri", "no host")
        scheme = parts.scheme.lower()
        port = port or (443 if scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return Destination(scheme, host, port, target, self.check_host(host, port, resolver))

    def check_host(self, host: str, port: int, resolver: Resolver = system_resolver) -> tuple[str, ...]:
        """Every address `host` resolves to, each checked; refused if any one is refused."""
        if host in self.deny_hosts:
            raise EgressRefused("deny-list", "host is on the deny list")
        addresses = resolver(host, port)
        if not addresses:
            raise EgressRefused("unresolvable", "host name has no address")
        for a in addresses:
            self.check_address(ipaddress.ip_address(a.split("%", 1)[0]), host)
        return tuple(addresses)

    def check_address(self, ip: IPAddress, host: str = "") -> None:
        """Deny list first, then the internal-address rule unless the allow list exempts it.
        An IPv4-mapped address (::ffff:a.b.c.d) is the IPv4 host itself, so it matches IPv4
        entries of both lists; the deny list also matches the IPv4 address any other IPv6 form
        carries (compatible, NAT64, 6to4, Teredo), the allow list does not (another host)."""
        mapped = _mapped(ip)
        if any(_in(a, self.deny_nets) for a in (mapped, _embedded_ipv4(ip)) if a is not None):
            raise EgressRefused("deny-list", "address is on the deny list")
        why = address_class(ip)
        if why is None:
            return
        if host in self.allow_hosts or _in(mapped, self.allow_nets):
            return
        raise EgressRefused("internal-address", f"host resolves to a {why} address")


def _mapped(ip: IPAddress) -> IPAddress:
    """The address to compare with list entries: ::ffff:a.b.c.d as a.b.c.d."""
    return ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address) or ip.is_loopback or ip.is_unspecified:
        return None
    inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
    if inner is None and (ip in _NAT64 or ip in _COMPAT):
        inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return inner


def _in(ip: IPAddress, nets: tuple[IPNetwork, ...]) -> bool:
    return any(ip in n for n in nets if n.version == ip.version)


def _parse_list(items: str | list[str], what: str) -> tuple[tuple[IPNetwork, ...], frozenset[str]]:
    if isinstance(items, str):
        items = items.split(",")
    nets, hosts = [], set()
    for raw in items:
        item = raw.strip().lower()
        if not item:
            continue
        try:
            nets.append(_network(item))
        except ValueError:
            if not all(c.isalnum() or c in "-." for c in item):
                raise ValueError(f"egress {what} list: {raw.strip()!r} is neither a CIDR, an address nor a host name") from None
            hosts.add(item.rstrip("."))
    return tuple(nets), frozenset(hosts)


def _network(item: str) -> IPNetwork:
    """A CIDR or an address, IPv6 also in brackets (`[::1]`, `[::1]/128`, `[fe80::]/10`); an
    IPv4-mapped network (`::ffff:127.0.0.0/104`) becomes the IPv4 network it maps."""
    addr, slash, prefix = item.partition("/")
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    net = ipaddress.ip_network(addr + slash + prefix, strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.network_address.ipv4_mapped:
        v4 = net.network_address.ipv4_mapped
        return ipaddress.ip_network(f"{v4}/{net.prefixlen - 96}", strict=False)
    return net


def open_regular_file(path: Path, max_bytes: int) -> bytes:
    """Read a regular file of at most `max_bytes` without ever blocking on it: opened
    non-blocking and without following a last-moment symlink, then checked with fstat, so a
    FIFO, a device or a folder is refused without a blocking read."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise EgressRefused("local-path", "no such file") from None
    except PermissionError:
        raise EgressRefused("local-path", "no permission to read the file") from None
    except OSError as e:                               # ELOOP (a symlink), ENXIO (a FIFO without writer)
        raise EgressRefused("local-path", f"not a readable regular file ({os.strerror(e.errno or 0)})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise EgressRefused("not-a-file", "not a regular file (a FIFO, device, socket or folder)")
        if st.st_size > max_bytes:
            raise EgressRefused("size", f"{st.st_size} bytes, above the {max_bytes}-byte limit")
        os.set_blocking(fd, True)
        chunks, got = [], 0
        while got <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > max_bytes:
            raise EgressRefused("size", f"above the {max_bytes}-byte limit")
        return b"".join(chunks)
    finally:
        os.close(fd)
