"""Sellers' image uris, attacked as a seller would: internal addresses (numeric forms, names,
redirects, rebinding), credentials, the worker's proxy and .netrc, local files (file://,
absolute, '..', symlinks, FIFOs), slow hosts (silent, dripping headers or body), twenty silent
hosts in one batch, and re-posts of failed uris. Real sockets on loopback, allowed explicitly
only where a test serves from it."""
from __future__ import annotations

import ipaddress
import os
import time

import cv2
import numpy as np
import pytest

from benchmarks.hostile_servers import HostileServer, Listener, SilentDns, udp_resolver
from connectors.egress import EgressPolicy, EgressRefused, address_class
from connectors.image_fetch import (
    FetchBudgets,
    FetchFailed,
    FetchRequest,
    FetchTimeouts,
    ListingFetcher,
    LookupTimedOut,
    NegativeCache,
    fetch,
    http_get,
)
from connectors.image_store import ImageRejected

pytestmark = pytest.mark.unit

_ok, _buf = cv2.imencode(".png", np.full((8, 8, 3), 200, np.uint8))
PNG = _buf.tobytes()
V4 = EgressPolicy.from_lists(allow="127.0.0.1/32")
FAST = FetchTimeouts(connect_s=1.0, read_s=0.5, total_s=1.0)


def fetcher(policy=V4, **budgets) -> ListingFetcher:
    return ListingFetcher(policy, FetchBudgets(timeouts=budgets.pop("timeouts", FAST), **budgets))


@pytest.fixture
def server():
    with HostileServer("127.0.0.1", images={"a.png": PNG, "page": b"<html>x</html>"},
                       types={"page": "text/html"}) as s:
        yield s


ADDRESSES = [
    ("127.0.0.1", "loopback", "IPv4 loopback"),
    ("10.1.2.3", "private", "RFC 1918"),
    ("172.16.0.1", "private", "RFC 1918"),
    ("192.168.1.1", "private", "RFC 1918"),
    ("169.254.169.254", "link-local", "cloud metadata service"),
    ("100.64.0.1", "shared address space (CGNAT)", "RFC 6598"),
    ("224.0.0.1", "multicast", "IPv4 multicast"),
    ("240.0.0.1", "reserved", "class E"),
    ("255.255.255.255", "reserved", "broadcast"),
    ("0.0.0.0", "unspecified", "this host"),
    ("::1", "loopback", "IPv6 loopback"),
    ("::", "unspecified", "IPv6 unspecified"),
    ("fe80::1", "link-local", "IPv6 link-local"),
    ("fc00::1", "private", "unique local"),
    ("ff02::1", "multicast", "IPv6 multicast"),
    ("::ffff:127.0.0.1", "loopback (IPv4 inside IPv6)", "IPv4-mapped"),
    ("::ffff:10.0.0.1", "private (IPv4 inside IPv6)", "IPv4-mapped private"),
    ("::127.0.0.1", "loopback (IPv4 inside IPv6)", "IPv4-compatible"),
    ("64:ff9b::a9fe:a9fe", "link-local (IPv4 inside IPv6)", "NAT64 to the metadata service"),
    ("2002:7f00:1::", "loopback (IPv4 inside IPv6)", "6to4 of 127.0.0.1"),
    ("8.8.8.8", None, "global"),
    ("2606:4700::1111", None, "global IPv6"),
    ("::ffff:8.8.8.8", None, "IPv4-mapped global"),
]


@pytest.mark.parametrize("ip,why,reason", ADDRESSES, ids=[f"{a}-{r}" for a, _, r in ADDRESSES])
def test_address_classes(ip, why, reason):
    assert address_class(ipaddress.ip_address(ip)) == why


NUMERIC = ["127.0.0.1", "127.1", "2130706433", "0x7f.1", "0x7f000001", "017700000001", "localhost",
           "LOCALHOST.", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "0.0.0.0", "[::1]", "127.0.0.1."]


@pytest.mark.parametrize("host", NUMERIC)
def test_loopback_in_any_spelling_is_refused_and_never_connected(server, host):
    with pytest.raises(EgressRefused, match="internal-address"):
        http_get(f"http://{host}:{server.port}/img/a.png", EgressPolicy(), timeouts=FAST)
    assert server.seen.connections == 0


def test_allowed_loopback_is_fetched_with_the_name_as_host(server):
    assert http_get(f"{server.base}/img/a.png", V4, timeouts=FAST) == PNG
    assert server.seen.requests[-1]["host"] == f"127.0.0.1:{server.port}"


def test_connects_to_the_checked_address_sending_the_name():
    """No DNS rebinding: the name is resolved once per hop, the socket goes to that address."""
    calls = []

    def resolver(host, port):
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["10.0.0.1"]   # a rebinding resolver

    with HostileServer("127.0.0.1", images={"a.png": PNG}) as s:
        f = ListingFetcher(EgressPolicy.from_lists(allow="127.0.0.1/32"), FetchBudgets(timeouts=FAST),
                           resolver=resolver)
        assert f.fetch_one(f"http://images.example:{s.port}/img/a.png") == PNG
        assert calls == ["images.example"]
        assert s.seen.requests[-1]["host"] == f"images.example:{s.port}"


def test_any_internal_address_among_many_refuses_the_host():
    pol = EgressPolicy()
    with pytest.raises(EgressRefused, match="private"):
        pol.destination("http://cdn.example/x.png", lambda h, p: ["93.184.216.34", "10.0.0.7"])


@pytest.mark.parametrize("target,rule", [
    ("http://127.0.0.1:{port}/img/a.png", "internal-address"),     # loopback behind a redirect
    ("http://10.0.0.1/latest/meta-data", "internal-address"),      # a private address
    ("http://169.254.169.254/latest/meta-data/", "internal-address"),  # the metadata service
    ("http://2130706433:{port}/", "internal-address"),             # numeric loopback
    ("file:///etc/passwd", "scheme"),                               # a local file
], ids=["loopback", "private", "metadata", "numeric", "file"])
def test_redirects_are_checked_on_every_hop(target, rule):
    """The seller's host (on ::1, allowed) redirects; the target (on 127.0.0.1, not allowed)
    must see no connection."""
    with HostileServer("::1") as v6, Listener("127.0.0.1") as internal:
        to = target.format(port=internal.port)
        with pytest.raises(EgressRefused, match=rule):
            http_get(f"{v6.base}/redirect?to={to}", EgressPolicy.from_lists(allow="::1"), timeouts=FAST)
        assert v6.seen.connections == 1 and internal.connections == 0


def test_redirect_within_the_allowed_host_is_followed(server):
    assert http_get(f"{server.base}/redirect?to=/img/a.png", V4, timeouts=FAST) == PNG


def test_credentials_in_a_uri_are_refused_and_never_sent(server):
    with pytest.raises(EgressRefused, match="credentials"):
        http_get(f"http://user:secret@127.0.0.1:{server.port}/img/a.png", V4, timeouts=FAST)
    assert server.seen.connections == 0


def test_proxy_variables_and_netrc_are_ignored(server, tmp_path, monkeypatch):
    with Listener("127.0.0.1") as proxy:
        for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(var, proxy.base)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        (tmp_path / ".netrc").write_text("machine 127.0.0.1 login seller password hunter2\n")
        (tmp_path / ".netrc").chmod(0o600)
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
        assert http_get(f"{server.base}/img/a.png", V4, timeouts=FAST) == PNG
        assert proxy.connections == 0
        assert "authorization" not in server.seen.requests[-1]
        assert "proxy-authorization" not in server.seen.requests[-1]


def test_deny_list_wins_and_allow_list_takes_cidrs_and_names(server):
    both = EgressPolicy.from_lists(allow="127.0.0.0/8", deny="127.0.0.1")
    with pytest.raises(EgressRefused, match="deny-list"):
        http_get(f"{server.base}/img/a.png", both, timeouts=FAST)
    by_name = EgressPolicy.from_lists(allow="localhost")
    assert http_get(f"http://localhost:{server.port}/img/a.png", by_name, timeouts=FAST) == PNG
    with pytest.raises(ValueError, match="neither a CIDR"):
        EgressPolicy.from_lists(allow="10.0.0.0/8,not a host!")


def _has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")


def _policy_from_env(monkeypatch, allow: str, deny: str = "") -> EgressPolicy:
    """The policy as the job builds it: ZEROSCAN_EGRESS_ALLOW/_DENY -> Settings -> the operator's
    JSON configuration -> the worker's policy."""
    from zeroscan.settings import Settings

    monkeypatch.setenv("ZEROSCAN_EGRESS_ALLOW", allow)
    monkeypatch.setenv("ZEROSCAN_EGRESS_DENY", deny)
    st = Settings.from_env()
    cfg = EgressPolicy.from_lists(list(st.egress_allow), list(st.egress_deny)).to_config()
    return EgressPolicy.from_config(cfg)


@needs_ipv6
@pytest.mark.parametrize("allow", ["::1/128", "[::1]/128", "[::1]", "::1", "::/127", "0:0::1/128"])
def test_ipv6_loopback_is_allowed_by_cidr_from_settings(monkeypatch, allow):
    with HostileServer("::1", images={"a.png": PNG}) as v6:
        f = ListingFetcher(_policy_from_env(monkeypatch, allow), FetchBudgets(timeouts=FAST))
        assert f.fetch_many([FetchRequest(0, f"{v6.base}/img/a.png")]) == [PNG]
        assert v6.seen.requests[-1]["host"] == f"[::1]:{v6.port}"


@needs_ipv6
def test_ipv6_loopback_is_refused_unless_allowed_itself(monkeypatch):
    """127.0.0.1/32 (or 127.0.0.0/8) does not allow ::1, another address; nothing connects."""
    with HostileServer("::1", images={"a.png": PNG}) as v6:
        for allow in ("", "127.0.0.1/32", "127.0.0.0/8", "::2/128"):
            f = ListingFetcher(_policy_from_env(monkeypatch, allow), FetchBudgets(timeouts=FAST))
            [out] = f.fetch_many([FetchRequest(0, f"{v6.base}/img/a.png")])
            assert isinstance(out, FetchFailed) and "'internal-address'" in str(out), (allow, out)
        assert v6.seen.connections == 0


def test_ipv4_mapped_forms_match_ipv4_entries_of_both_lists(server, monkeypatch):
    """::ffff:127.0.0.1 is 127.0.0.1: an IPv4 allow entry allows it (a real dual-stack
    connection to the IPv4 server), a mapped allow entry allows the IPv4 address, and an IPv4
    deny entry refuses the mapped spelling (no way around the deny list)."""
    mapped = f"http://[::ffff:127.0.0.1]:{server.port}/img/a.png"
    plain = f"{server.base}/img/a.png"
    for allow in ("127.0.0.1/32", "::ffff:127.0.0.1", "[::ffff:127.0.0.0]/104", "::ffff:7f00:1/128"):
        pol = _policy_from_env(monkeypatch, allow)
        assert http_get(plain, pol, timeouts=FAST) == PNG, allow
        assert http_get(mapped, pol, timeouts=FAST) == PNG, allow
    before = server.seen.connections
    deny = _policy_from_env(monkeypatch, "127.0.0.0/8,::ffff:127.0.0.0/104", deny="127.0.0.1")
    for uri in (plain, mapped):
        with pytest.raises(EgressRefused, match="deny-list"):
            http_get(uri, deny, timeouts=FAST)
    assert server.seen.connections == before


@pytest.mark.parametrize("address", ["::ffff:203.0.113.9", "64:ff9b::cb00:7109", "2002:cb00:7109::"])
def test_a_denied_ipv4_address_is_denied_inside_ipv6(address):
    """A deny entry for a (global) IPv4 address also refuses the IPv6 forms that carry it."""
    pol = EgressPolicy.from_lists(deny="203.0.113.9/32")
    with pytest.raises(EgressRefused, match="deny-list"):
        pol.destination("http://cdn.example/x.png", lambda h, p: [address])


# -- name lookups under the fetch's deadline ----------------------------------------------------

def test_a_lookup_that_never_answers_is_cut_at_the_fetch_deadline(server):
    """The seller's name server (a real UDP server on loopback) never answers: the fetch ends
    at its one deadline with an error naming the rule, the stuck lookup holds a resolver thread
    and no fetch thread, and the name is remembered: a re-post and the host's other uris fail
    at once, without another query."""
    with SilentDns() as dns:
        f = ListingFetcher(V4, FetchBudgets(timeouts=FAST, threads=1, listing_s=5.0, batch_s=5.0),
                           resolver=udp_resolver(dns.addr, wait_s=20.0))
        t0 = time.monotonic()
        [out] = f.fetch_many([FetchRequest(0, f"http://img.stalled.example:{server.port}/img/a.png")])
        took = time.monotonic() - t0
        assert isinstance(out, LookupTimedOut) and "'dns-deadline'" in str(out), out
        assert took < FAST.total_s + 0.5, took
        assert dns.queries == ["img.stalled.example"]
        # the only fetch thread is free again: an address literal is fetched at once
        t0 = time.monotonic()
        assert f.fetch_many([FetchRequest(0, f"{server.base}/img/a.png")]) == [PNG]
        assert time.monotonic() - t0 < 0.5
        t0 = time.monotonic()
        again = f.fetch_many([FetchRequest(0, f"http://img.stalled.example:{server.port}/img/a.png"),
                              FetchRequest(1, f"http://img.stalled.example:{server.port}/img/b.png")])
        assert time.monotonic() - t0 < 0.2
        assert all("remembered failure" in str(o) and "dns-deadline" in str(o) for o in again), again
        assert dns.queries == ["img.stalled.example"]


def test_stalled_lookups_are_bounded_and_shared_per_name(server):
    """Two resolver threads, five stalled names, twelve uris: at most two lookups run, uris of
    one name share its lookup, every fetch ends at its deadline, and address literals need no
    lookup (fetched while every resolver thread is stuck)."""
    with SilentDns() as dns:
        f = ListingFetcher(V4, FetchBudgets(timeouts=FAST, dns_threads=2, listing_s=5.0, batch_s=5.0),
                           resolver=udp_resolver(dns.addr, wait_s=20.0))
        reqs = [FetchRequest(i, f"http://n{i % 5}.stalled.example:{server.port}/img/{i}.png") for i in range(10)]
        reqs += [FetchRequest(20, f"{server.base}/img/a.png"), FetchRequest(21, f"{server.base}/img/a.png?2")]
        t0 = time.monotonic()
        out = f.fetch_many(reqs)
        took = time.monotonic() - t0
        assert took < FAST.total_s + 1.0, took
        assert out[10:] == [PNG, PNG]
        assert all(isinstance(o, FetchFailed) and "dns-deadline" in str(o) for o in out[:10]), out[:10]
        time.sleep(0.2)
        assert len(dns.queries) == 2 and f.dns.lookups <= 5


def test_lookups_that_answer_run_under_the_deadline_too(server):
    """A resolver that answers is used once per hop, through the bounded pool."""
    calls = []
    f = ListingFetcher(V4, FetchBudgets(timeouts=FAST), resolver=lambda h, p: calls.append(h) or ["127.0.0.1"])
    assert f.fetch_many([FetchRequest(0, f"http://cdn.example:{server.port}/redirect?to=/img/a.png")]) == [PNG]
    assert calls == ["cdn.example", "cdn.example"] and f.dns.lookups == 2


# -- slow hosts: one deadline over connect, headers and body -----------------------------------

@pytest.mark.parametrize("path", ["/silent", "/drip-headers", "/drip-body"])
def test_slow_hosts_are_cut_at_the_deadline(path):
    """/drip-headers sends a header byte every 0.2 s, under the 0.5 s read timeout: only a
    deadline over the whole exchange ends it."""
    with HostileServer("127.0.0.1", drip_s=0.2) as s:
        t0 = time.monotonic()
        with pytest.raises(FetchFailed, match="longer than its deadline|timed out"):
            http_get(f"{s.base}{path}", V4, timeouts=FetchTimeouts(connect_s=1.0, read_s=0.5, total_s=1.0))
        assert time.monotonic() - t0 < 1.6


def test_errors_name_the_rule_not_the_content(server, tmp_path):
    (tmp_path / "passwd.png").write_bytes(b"root:*:0:0:secret-hash\n")
    f = fetcher(EgressPolicy().with_local_root(tmp_path))
    [out] = f.fetch_many([FetchRequest(0, "passwd.png")])
    assert isinstance(out, ImageRejected) and "root" not in str(out) and "secret" not in str(out)
    [page] = fetcher().fetch_many([FetchRequest(0, f"{server.base}/img/page")])
    assert "content type 'text/html'" in str(page) and "<html>" not in str(page)


# -- local files -------------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "listings"
    (root / "img").mkdir(parents=True)
    (root / "img" / "a.png").write_bytes(PNG)
    (tmp_path / "outside.png").write_bytes(PNG)
    (root / "img" / "escape.png").symlink_to(tmp_path / "outside.png")
    (root / "img" / "inside.png").symlink_to(root / "img" / "a.png")
    os.mkfifo(root / "img" / "fifo.png")
    return root


LOCAL = [
    ("img/a.png", None, "a relative path inside the folder"),
    ("./img/inside.png", None, "a symlink that stays inside"),
    ("../outside.png", "'..'", "dot-dot"),
    ("img/../../outside.png", "'..'", "dot-dot after a folder"),
    ("img/escape.png", "leaves the listings file's folder", "a symlink out of the folder"),
    ("{outside}", "absolute paths", "an absolute path"),
    ("file://{outside}", "file://", "a file uri"),
    ("file://localhost{outside}", "file://", "a file uri with a host"),
    ("FILE:{outside}", "file://", "an upper-case file scheme"),
    ("img/fifo.png", "not a regular file", "a FIFO (would block a plain open)"),
    ("img", "not a regular file", "a folder"),
    ("img/missing.png", "no such file", "a missing file"),
    ("gopher://127.0.0.1/x", "scheme", "another scheme"),
    ("img/a.png\n", "control characters", "a newline"),
]


@pytest.mark.parametrize("uri,fragment,reason", LOCAL, ids=[r for *_, r in LOCAL])
def test_file_mode_reads_only_inside_the_listings_folder(folder, uri, fragment, reason):
    uri = uri.format(outside=folder.parent / "outside.png")
    f = fetcher(EgressPolicy().with_local_root(folder))
    t0 = time.monotonic()
    [out] = f.fetch_many([FetchRequest(0, uri)])
    assert time.monotonic() - t0 < 1.0
    if fragment is None:
        assert out == PNG
    else:
        assert isinstance(out, ImageRejected) and fragment in str(out)


@pytest.mark.parametrize("uri", ["img/a.png", "{root}/img/a.png", "file://{root}/img/a.png"])
def test_kafka_mode_reads_no_local_file(folder, uri):
    [out] = fetcher(EgressPolicy()).fetch_many([FetchRequest(0, uri.format(root=folder))])
    assert isinstance(out, ImageRejected) and "egress rule" in str(out)


def test_trusted_fetch_refuses_a_fifo_without_blocking(folder):
    t0 = time.monotonic()
    with pytest.raises(ImageRejected, match="not a regular file"):
        fetch("img/fifo.png", folder)
    assert time.monotonic() - t0 < 1.0


# -- a batch: concurrency, budgets, negative cache ----------------------------------------------

def _names(n: int):
    """n distinct host names that all resolve to loopback (allowed), as n sellers' hosts."""
    return lambda host, port: ["127.0.0.1"]


def test_twenty_silent_hosts_cost_one_deadline_not_twenty():
    with HostileServer("127.0.0.1") as s:
        f = ListingFetcher(V4, FetchBudgets(timeouts=FAST, listing_s=5.0, batch_s=5.0), resolver=_names(20))
        reqs = [FetchRequest(i, f"http://seller{i}.example:{s.port}/silent") for i in range(20)]
        t0 = time.monotonic()
        out = f.fetch_many(reqs)
        took = time.monotonic() - t0
        assert all(isinstance(o, FetchFailed) for o in out)
        assert took < 2.5, took          # sequential: 20 s


def test_the_batch_budget_bounds_a_batch_whatever_the_hosts_do():
    """One host, per-host limit 2: 40 silent uris would take 20 deadlines; the batch budget ends it."""
    with HostileServer("127.0.0.1") as s:
        f = fetcher(per_host=2, batch_s=1.5, listing_s=10.0)
        reqs = [FetchRequest(i, f"{s.base}/silent?n={i}") for i in range(40)]
        t0 = time.monotonic()
        out = f.fetch_many(reqs)
        assert time.monotonic() - t0 < 2.0
        assert sum("batch fetch budget" in str(o) for o in out) >= 30
        assert s.seen.connections <= 6


def test_a_listings_images_share_its_budget():
    with HostileServer("127.0.0.1") as s:
        f = ListingFetcher(V4, FetchBudgets(timeouts=FetchTimeouts(1.0, 5.0, 5.0), listing_s=1.0, batch_s=10.0),
                           resolver=_names(20))
        reqs = [FetchRequest(0, f"http://h{i}.example:{s.port}/silent") for i in range(20)]
        t0 = time.monotonic()
        out = f.fetch_many(reqs)
        assert time.monotonic() - t0 < 1.6
        assert all(isinstance(o, FetchFailed) for o in out)


def test_a_failed_uri_is_not_fetched_again_on_a_repost(server):
    f = fetcher()
    uri = f"{server.base}/silent"
    [first] = f.fetch_many([FetchRequest(0, uri)])
    assert isinstance(first, FetchFailed) and server.seen.connections == 1
    t0 = time.monotonic()
    [again] = f.fetch_many([FetchRequest(0, uri)])
    assert time.monotonic() - t0 < 0.1 and "remembered failure" in str(again)
    assert server.seen.connections == 1
    # refusals by the policy are remembered as well; a good uri is fetched once per batch
    out = f.fetch_many([FetchRequest(0, f"{server.base}/img/a.png"), FetchRequest(1, f"{server.base}/img/a.png")])
    assert out == [PNG, PNG] and server.seen.connections == 2


def test_negative_cache_expires_and_is_bounded():
    now = [0.0]
    c = NegativeCache(ttl_s=10.0, entries=3, clock=lambda: now[0])
    for i in range(5):
        c.put(f"u{i}", "timed out")
    assert len(c) == 3 and c.get("u0") is None and c.get("u4") == "timed out"
    now[0] = 11.0
    assert c.get("u4") is None


def test_budgets_from_settings_pairs():
    from zeroscan.settings import _pairs

    b = FetchBudgets.from_config(_pairs("total_s=4;batch_s=9.5;threads=8", "ZEROSCAN_FETCH"))
    assert (b.timeouts.total_s, b.batch_s, b.threads) == (4.0, 9.5, 8)
    with pytest.raises(ValueError, match="unknown fetch budget"):
        FetchBudgets.from_config({"nonsense": 1})
    with pytest.raises(ValueError, match="key=number"):
        _pairs("threads", "ZEROSCAN_FETCH")


# -- the scan operator's path: listing images through the policy, errors on the decision ---------

def test_listing_images_go_through_the_policy_and_errors_reach_the_decision(server):
    from brand_signals.decide import decide
    from brand_signals.images.image_signals import ImageSignals
    from brand_signals.records import Action, BrandReference, ImageRef, Listing, SignalKind

    brand = BrandReference(brand_id="zorbix", version=1, name="Zorbix", trademarks=("Zorbix",),
                           enforcement=Action.TAKEDOWN)
    kafka_mode = fetcher()
    sig = ImageSignals.build([brand], fetch, None, ocr=False, geometry=False, listing_fetch=kafka_mode)
    uris = ["img/a.png", "/etc/passwd", "file:///etc/passwd", "http://10.0.0.1/a.png",
            f"http://u:p@127.0.0.1:{server.port}/img/a.png", f"{server.base}/img/a.png"]
    listing = Listing(listing_id="l1", seller_id="s1", event_time_ms=0, title="Zorbix speaker",
                      images=tuple(ImageRef(u) for u in uris))
    [evidence] = sig.find([listing], base_dir="/")           # a caller's base_dir opens nothing
    errors = {s.detail["image_uri"]: s.detail["reason"] for ev in evidence for s in ev.signals
              if s.kind is SignalKind.IMAGE_ERROR}
    assert set(errors) == set(uris[:5])
    assert "'local-path'" in errors["img/a.png"] and "'local-path'" in errors["/etc/passwd"]
    assert "'scheme'" in errors["file:///etc/passwd"] and "'internal-address'" in errors["http://10.0.0.1/a.png"]
    assert "'credentials'" in errors[uris[4]] and "root" not in str(errors)
    assert sig.stats.fetched == 1 and server.seen.connections == 1
    d = decide(listing, sig.wordmarks.match(listing) + evidence, {"zorbix": brand}, now_ms=1)
    assert d.action is Action.TAKEDOWN
    assert [s.kind for s in d.signals].count(SignalKind.IMAGE_ERROR) == 5


def test_a_host_that_timed_out_goes_last_one_at_a_time(server):
    """After its first timeout, a seller's slow host cannot take the pool from hosts that answer."""
    with HostileServer("127.0.0.1") as slow:
        f = fetcher(threads=1, per_host=2, batch_s=1.5, listing_s=10.0)   # one thread: order matters
        f.fetch_many([FetchRequest(0, f"{slow.base}/silent?first")])
        reqs = [FetchRequest(i, f"{slow.base}/silent?n={i}") for i in range(6)]
        reqs += [FetchRequest(10 + i, f"{server.base}/img/a.png?i={i}") for i in range(6)]
        out = f.fetch_many(reqs)
        assert out[6:] == [PNG] * 6
        assert slow.seen.connections <= 4      # the first, then one at a time: 1.5 s / 0.5 s read timeout


def test_the_batch_byte_budget_stops_fetching(server):
    f = fetcher(threads=1, per_host=1, batch_bytes=len(PNG) * 2)
    out = f.fetch_many([FetchRequest(i, f"{server.base}/img/a.png?i={i}") for i in range(8)])
    assert out[:3] == [PNG] * 3 and all("byte budget" in str(o) for o in out[3:])


def test_a_tls_handshake_that_never_ends_is_cut_at_the_deadline(server):
    t0 = time.monotonic()
    with pytest.raises(FetchFailed, match="deadline|timed out"):
        http_get(f"https://127.0.0.1:{server.port}/img/a.png", V4, timeouts=FAST)
    assert time.monotonic() - t0 < 1.6


def test_https_connects_to_the_checked_address_and_verifies_the_name(tmp_path):
    """TLS goes to the address the policy checked, with the host name as SNI and the
    certificate verified against the name (a self-signed one the client is told to trust)."""
    import socket
    import ssl
    import subprocess
    import threading

    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=images.example", "-addext",
                    "subjectAltName=DNS:images.example"], check=True, capture_output=True, timeout=30)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    names = []
    sctx.sni_callback = lambda sock, name, ctx: names.append(name)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.settimeout(5)
    port = lsock.getsockname()[1]
    hosts = []

    def serve(n):
        for _ in range(n):
            try:
                conn, _ = lsock.accept()
                with sctx.wrap_socket(conn, server_side=True) as tls:
                    req = b""
                    while b"\r\n\r\n" not in req:
                        req += tls.recv(4096)
                    hosts.append(req.split(b"\r\nHost: ", 1)[1].split(b"\r\n", 1)[0].decode())
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(PNG)
                                + PNG)
            except (OSError, ssl.SSLError):
                continue

    t = threading.Thread(target=serve, args=(2,), daemon=True)
    t.start()
    cctx = ssl.create_default_context(cafile=str(cert))
    f = ListingFetcher(V4, FetchBudgets(timeouts=FAST), resolver=lambda h, p: ["127.0.0.1"], tls=cctx)
    assert f.fetch_one(f"https://images.example:{port}/a.png") == PNG
    assert names == ["images.example"] and hosts == [f"images.example:{port}"]
    with pytest.raises(FetchFailed, match="TLS failed"):        # the name is not the certificate's
        f.fetch_one(f"https://other.example:{port}/a.png")
    t.join(5)
    lsock.close()
