"""The hostile corpus, run for real: at least 10,000 records a counterfeiter could write (broken
JSON, wrong types, oversize and deeply nested fields, invalid UTF-8, zero-width and combining
floods, image bombs of each format, truncated and polyglot images, silent, dripping and
redirecting hosts on loopback, internal addresses, local files and FIFOs, sha256 lies) mixed
into the benchmark's ordinary traffic, through the real job on a real broker.

Checks that every record ends as a decision, a pass or a dead letter with its reason (dead
letters are matched to the records the contract refuses, by sha256), that the job never
restarts, that checkpoints keep completing, and that memory stays under a stated bound.
Writes benchmarks/results/hostile.json. `make bench-hostile`; `--hostile 500` is the version
`make test` runs (tests/integration/test_hostile.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import socket
import struct
import sys
import time
import urllib.request
import uuid
import zlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.hostile_servers import HostileServer  # noqa: E402
from benchmarks.kafka_measures import _tree, plaintext_env, rss_mib, stop_job  # noqa: E402
from benchmarks.traffic import Mix, Traffic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "hostile.json"
SEED = 20261201
# The bound stated for one Python worker (the scan operator's process): the 2 GiB TaskManager
# (flink-conf/config.yaml) sits beside it; measured idle with models loaded at ~0.6 GiB.
WORKER_RSS_BOUND_MIB = 1536
# Budgets of the full run are the defaults (connectors/image_fetch.py). The small run in
# `make test` shortens them so its silent hosts cost seconds, not the default 20 s per batch.
SHORT_FETCH = "total_s=2;connect_s=1;read_s=1;listing_s=3;batch_s=4"
BRANDS = [
    {"brand_id": "veltrix", "name": "Veltrix", "trademarks": ["Veltrix"], "enforcement": "takedown", "version": 1},
    {"brand_id": "lumora", "name": "Lumora", "trademarks": ["Lumora"], "enforcement": "review", "version": 1},
    {"brand_id": "kestrel", "name": "Kestrel", "trademarks": ["Kestrel Outdoor"], "enforcement": "notify",
     "version": 1},
]
INTERNAL = ["http://10.0.0.1/a.png", "http://172.16.5.4/a.png", "http://192.168.0.1/a.png",
            "http://169.254.169.254/latest/meta-data/", "http://100.64.1.1/a.png", "http://[::1]/a.png",
            "http://[fd00::1]/a.png", "http://[::ffff:10.0.0.1]/a.png", "http://0.0.0.0/a.png",
            "http://2130706434/a.png", "http://127.0.0.2/a.png", "http://0x7f.2/a.png", "http://[fe80::1]/a.png",
            "http://224.0.0.1/a.png", "http://metadata.google.internal/computeMetadata/v1/"]
LOCAL = ["file:///etc/passwd", "/etc/passwd", "../../../../etc/passwd", "img/logo.png", "FILE:///etc/shadow",
         "file://localhost/proc/self/environ", "~/.netrc", "/dev/zero", "/proc/self/mem"]


# --- images ---------------------------------------------------------------------------------

def _chunk(t: bytes, d: bytes) -> bytes:
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))


def png_bomb(w: int, h: int, seed: int) -> bytes:
    """A PNG header claiming w x h over a tiny deflate stream of zeros (a few hundred bytes)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    row = b"\0" * (1 + 3 * min(w, 4096))
    idat = zlib.compress(row * 64 + seed.to_bytes(4, "big"), 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def jpeg_bomb(w: int, h: int, real: bytes) -> bytes:
    """A real small JPEG whose SOF frame size is rewritten to w x h."""
    i = 2
    while i < len(real):
        marker = real[i + 1]
        seg = struct.unpack(">H", real[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return real[:i + 5] + struct.pack(">HH", h, w) + real[i + 9:]
        i += 2 + seg
    raise ValueError("no SOF")


def webp_bomb(w: int, h: int, seed: int) -> bytes:
    """A VP8X WebP header with a w x h canvas and a tiny lossless payload."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (w - 1).to_bytes(3, "little") + \
        (h - 1).to_bytes(3, "little")
    body = b"VP8L" + struct.pack("<I", 6) + b"\x2f" + struct.pack("<I", ((h - 1) << 14 | (w - 1)) & 0xFFFFFFFF)[:4] + \
        seed.to_bytes(1, "big")
    payload = b"WEBP" + vp8x + body
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def photo(seed: int, text: str | None = None, size=(320, 240)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([120 + 60 * np.sin(x / 50 + seed), 110 + 50 * np.cos(y / 40), 100 + 40 * np.sin((x + y) / 70)], -1)
    for _ in range(4):
        cv2.circle(img, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(10, 50)),
                   tuple(float(c) for c in rng.integers(40, 220, 3)), -1)
    img = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
    if text:
        cv2.rectangle(img, (20, 90), (300, 150), (255, 255, 255), -1)
        cv2.putText(img, text, (30, 138), cv2.FONT_HERSHEY_DUPLEX, 1.6, (10, 10, 10), 3, cv2.LINE_AA)
    return img


def enc(img: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


# --- the corpus -----------------------------------------------------------------------------

@dataclasses.dataclass
class Hosts:
    good: HostileServer          # serves real images, bombs, polyglots (allowed: 127.0.0.1)
    slow: list[HostileServer]    # silent and dripping hosts, one port each ("hosts")
    redirect: HostileServer
    fifo: Path


class Corpus:
    """Seeded generator of hostile records; `classes` counts what was made."""

    def __init__(self, hosts: Hosts, seed: int = SEED, under_limit_bombs: int = 4):
        self.h, self.rng = hosts, random.Random(seed)
        self.n = 0
        self.classes: Counter[str] = Counter()
        self.flag_ids: dict[str, bytes] = {}      # listing_id -> record, for titles that present a brand
        g = hosts.good
        self.pool = []
        for i in range(40):                       # ordinary traffic's photos, a few with a word mark
            name = f"pool-{i}.jpg"
            g.images[name] = enc(photo(i, "VELTRIX" if i % 10 == 0 else None), ".jpg")
            g.types[name] = "image/jpeg"
            self.pool.append(name)
        real = enc(photo(999), ".jpg")
        self.clean = g.images["pool-1.jpg"]
        g.images["counterfeit.jpg"] = enc(photo(998, "VELTRIX"), ".jpg")
        g.types["counterfeit.jpg"] = "image/jpeg"
        self.images: dict[str, list[str]] = {k: [] for k in ("bomb", "under_limit_bomb", "truncated", "polyglot")}
        for i in range(60):                       # far above any limit: refused from the header
            for fmt, data, ct in (("png", png_bomb(100_000 + i, 100_000, i), "image/png"),
                                  ("jpg", jpeg_bomb(65_000 - i, 65_000, real), "image/jpeg"),
                                  ("webp", webp_bomb(16_000 + i, 16_000, i), "image/webp")):
                self._serve(f"bomb-{i}.{fmt}", data, ct, "bomb")
        for i in range(under_limit_bombs):        # just under the 50 MP listing cap (7000 x 7000)
            self._serve(f"ubomb-{i}.png", png_bomb(7000, 7000 - i, 1000 + i), "image/png", "under_limit_bomb")
            self._serve(f"ubomb-{i}.jpg", jpeg_bomb(7000, 7000 - i, real), "image/jpeg", "under_limit_bomb")
        for i in range(30):
            j = enc(photo(500 + i), ".jpg")
            p = enc(photo(600 + i), ".png")
            self._serve(f"trunc-{i}.jpg", j[: len(j) // 2], "image/jpeg", "truncated")
            self._serve(f"trunc-{i}.png", p[: len(p) // 3], "image/png", "truncated")
            self._serve(f"poly-{i}.png", p + b"PK\x03\x04" + os.urandom(64) + b"<html><script>x</script></html>",
                        "image/png", "polyglot")
            self._serve(f"poly-{i}.jpg", b"\xff\xd8\xff\xe0<html><body>" + os.urandom(32), "image/jpeg", "polyglot")
            self._serve(f"html-{i}.png", b"<!doctype html><html>shop</html>", "image/png", "polyglot")
        g.images["page"] = b"<html>not an image</html>"
        g.types["page"] = "text/html"

    def _serve(self, name: str, data: bytes, ctype: str, kind: str) -> None:
        self.h.good.images[name] = data
        self.h.good.types[name] = ctype
        self.images[kind].append(name)

    def _id(self) -> str:
        self.n += 1
        return f"h{self.n}"

    def _rec(self, title: str | None = None, images=None, **kw) -> dict:
        rng = self.rng
        lid = self._id()
        if title is None:
            title = rng.choice(["Veltrix wireless speaker", "Bluetooth speaker 20W", "Lumora lamp", "USB cable",
                                "Kestrel Outdoor tent", "Phone case"])
        rec = {"listing_id": lid, "seller_id": f"evil-{rng.randrange(500)}", "event_time": 1_767_225_600_000 + self.n,
               "title": title, **kw}
        if images is not None:
            rec["images"] = images
        return rec

    def _img(self, uri: str, sha: str | None = None) -> dict:
        return {"uri": uri} if sha is None else {"uri": uri, "sha256": sha}

    def make(self, n: int) -> list[tuple[bytes, str]]:
        gens = [getattr(self, m) for m in sorted(dir(self)) if m.startswith("k_")]
        out = []
        for i in range(n):
            gen = gens[i % len(gens)]
            cls = gen.__name__[2:]
            raw = gen()
            self.classes[cls] += 1
            out.append((raw, cls))
        return out

    def _dump(self, rec: dict) -> bytes:
        raw = orjson.dumps(rec)
        if any(m in rec.get("title", "") for m in ("Veltrix", "Lumora", "Kestrel Outdoor")):
            self.flag_ids[rec["listing_id"]] = raw
        return raw

    # each k_* makes one hostile record of its class --------------------------------------------
    def k_malformed_json(self) -> bytes:
        good = orjson.dumps(self._rec())
        r = self.rng.randrange(4)
        if r == 0:
            return good[: self.rng.randrange(1, len(good) - 1)]
        if r == 1:
            return good.replace(b'":', b'"', 1)
        if r == 2:
            return b"{" * self.rng.randrange(1, 50) + b"listing_id"
        return bytes(self.rng.randrange(1, 256) for _ in range(self.rng.randrange(1, 300))).replace(b"\n", b"x") + b"!"

    def k_wrong_types(self) -> bytes:
        rec = self._rec()
        field, value = self.rng.choice([
            ("listing_id", 123), ("title", ["Veltrix"]), ("price", "9.99"), ("images", {"uri": "x"}),
            ("event_time", "yesterday"), ("seller_id", None), ("images", [{"uri": 5}]), ("images", ["http://x/a.png"]),
            ("price", {"amount": -1, "currency": "USD"}), ("price", {"amount": 1e309, "currency": "usd"}),
            ("bullet_points", "not a list"), ("op", "drop table")])
        if field == "price" and isinstance(value, dict) and value["amount"] == 1e309:  # inf: written by hand
            rec[field] = {"amount": "INF", "currency": "usd"}
            return orjson.dumps(rec).replace(b'"INF"', b"1e309")
        rec[field] = value
        return orjson.dumps(rec)

    def k_oversize(self) -> bytes:
        r = self.rng.randrange(5)
        rec = self._rec()
        if r == 0:
            rec["title"] = "Veltrix " * 400
        elif r == 1:
            rec["description"] = "x" * 20_001
        elif r == 2:
            rec["bullet_points"] = ["a"] * 21
        elif r == 3:
            rec["images"] = [self._img(f"{self.h.good.base}/img/pool-1.jpg")] * 21
        else:
            rec["description"] = "y" * 600_000           # a big record, under the broker's message cap
        return orjson.dumps(rec)

    def k_deep_nesting(self) -> bytes:
        depth = self.rng.choice([50, 2_000, 20_000])
        rec = orjson.dumps(self._rec())
        return rec[:-1] + b',"extra":' + b"[" * depth + b"]" * depth + b"}"

    def k_invalid_utf8(self) -> bytes:
        rec = orjson.dumps(self._rec("Veltrix PLACEHOLDER"))
        return rec.replace(b"PLACEHOLDER", self.rng.choice([b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80"]))

    def k_lone_surrogate(self) -> bytes:
        return orjson.dumps(self._rec("Veltrix X")).replace(b"Veltrix X", b"Veltrix \\ud800 speaker")

    def k_zero_width_flood(self) -> bytes:
        zw = "\u200b\u200c\u200d\u2060\ufeff"
        title = "".join(c + "".join(self.rng.choice(zw) for _ in range(40)) for c in "Veltrix")[:1990]
        return self._dump(self._rec(title))

    def k_combining_flood(self) -> bytes:
        marks = [chr(c) for c in range(0x300, 0x36F)]
        title = "".join(c + "".join(self.rng.choice(marks) for _ in range(60)) for c in "Lumora")[:1990]
        return self._dump(self._rec(title, description="".join(self.rng.choice(marks) for _ in range(19_000))))

    def k_bidi_and_controls(self) -> bytes:
        return self._dump(self._rec("\u202eartlev\u202c Veltrix \u0000\u0007 speaker\u2066"))

    def k_image_bomb(self) -> bytes:
        name = self.rng.choice(self.images["bomb"])
        return self._dump(self._rec("Veltrix speaker", [self._img(f"{self.h.good.base}/img/{name}")]))

    def k_image_bomb_under_limit(self) -> bytes:
        name = self.rng.choice(self.images["under_limit_bomb"])
        return self._dump(self._rec(None, [self._img(f"{self.h.good.base}/img/{name}")]))

    def k_truncated_image(self) -> bytes:
        name = self.rng.choice(self.images["truncated"])
        return self._dump(self._rec(None, [self._img(f"{self.h.good.base}/img/{name}")]))

    def k_polyglot_image(self) -> bytes:
        name = self.rng.choice(self.images["polyglot"] + ["page"])
        return self._dump(self._rec(None, [self._img(f"{self.h.good.base}/img/{name}")]))

    def k_silent_host(self) -> bytes:
        s = self.rng.choice(self.h.slow)
        return self._dump(self._rec("Veltrix speaker", [self._img(f"{s.base}/silent?u={self.n}")]))

    def k_dripping_host(self) -> bytes:
        s = self.rng.choice(self.h.slow)
        path = self.rng.choice(["drip-headers", "drip-body"])
        return self._dump(self._rec(None, [self._img(f"{s.base}/{path}?u={self.n}")]))

    def k_many_slow_images(self) -> bytes:
        imgs = [self._img(f"{s.base}/silent?u={self.n}-{i}") for i, s in
                zip(range(20), self.h.slow * 20)]
        return self._dump(self._rec("Lumora lamp", imgs))

    def k_redirect(self) -> bytes:
        to = self.rng.choice(INTERNAL + ["file:///etc/passwd", f"{self.h.redirect.base}/redirect?to=/redirect",
                                         "/redirect?to=/redirect?to=/redirect?to=/redirect"])
        uri = f"{self.h.redirect.base}/redirect?to={urllib.request.quote(to, safe='')}"
        return self._dump(self._rec("Veltrix speaker", [self._img(uri)]))

    def k_internal_address(self) -> bytes:
        return self._dump(self._rec("Veltrix speaker", [self._img(self.rng.choice(INTERNAL))]))

    def k_local_file(self) -> bytes:
        return self._dump(self._rec("Veltrix speaker", [self._img(self.rng.choice(LOCAL))]))

    def k_fifo(self) -> bytes:
        p = self.h.fifo
        return self._dump(self._rec("Veltrix speaker", [self._img(self.rng.choice([str(p), p.as_uri()]))]))

    def k_credentials(self) -> bytes:
        uri = f"http://admin:hunter2@127.0.0.1:{self.h.good.port}/img/pool-2.jpg"
        return self._dump(self._rec("Veltrix speaker", [self._img(uri)]))

    def k_bad_status_and_types(self) -> bytes:
        g = self.h.good.base
        uri = self.rng.choice([f"{g}/status?code=500", f"{g}/status?code=403", f"{g}/img/page", f"{g}/nothing",
                               f"gopher://127.0.0.1:{self.h.good.port}/", "javascript:alert(1)", "data:image/png;base64,AA"])
        return self._dump(self._rec(None, [self._img(uri)]))

    def k_sha256_lie(self) -> bytes:
        """Counterfeit bytes claiming the digest of a clean photo the scanner has seen."""
        sha = hashlib.sha256(self.clean).hexdigest()
        return self._dump(self._rec("Bluetooth speaker 20W",
                                    [self._img(f"{self.h.good.base}/img/counterfeit.jpg", sha)]))

    def k_sha256_malformed(self) -> bytes:
        return orjson.dumps(self._rec(None, [self._img(f"{self.h.good.base}/img/pool-3.jpg", "Z" * 64)]))


def ordinary(n: int, hosts: Hosts, corpus: Corpus) -> list[bytes]:
    """The benchmark's traffic (benchmarks/traffic.py), images pointed at the loopback pool."""
    t = Traffic(BRANDS, Mix(infringing=0.05, max_images=2, image_pool=len(corpus.pool)), seed=SEED)
    t.marks = ["Veltrix", "Lumora", "Kestrel Outdoor"]
    out = []
    for rec in (t.next() for _ in range(n)):
        rec = dict(rec)
        rec["images"] = [{"uri": f"{hosts.good.base}/img/pool-{int(im['uri'].rsplit('/', 1)[1].split('.')[0]) % 40}.jpg"}
                         for im in rec.get("images", [])]
        out.append(orjson.dumps(rec))
    return out


# --- running it -----------------------------------------------------------------------------

def _expected_dead(raw: bytes) -> bool:
    from brand_signals.contract import parse_listing

    try:
        parse_listing(raw)
    except ValueError:
        return True
    return False


def _reason_class(reason: str) -> str:
    r = re.sub(r"\d+", "N", reason.split(" [", 1)[0])
    return r if len(r) <= 70 else r[:70] + "..."


def _listening_ports(root_pid: int) -> set[int]:
    """TCP ports the job's own processes listen on (its REST endpoint, its metric reporters)."""
    inodes = set()
    for p in _tree(root_pid):
        try:
            for fd in os.listdir(f"/proc/{p}/fd"):
                link = os.readlink(f"/proc/{p}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if f[3] == "0A" and f[9] in inodes:
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
        return r.read()


class JobProbe:
    """The embedded job's Flink REST API (`rest_port`, set through ZEROSCAN_FLINK_OPTS: checkpoint
    counts and durations, restarts) and its Prometheus reporters (the job's own ports in
    9249-9260: the operator's slowest batch; also the checkpoint metrics, should REST not answer)."""

    def __init__(self, pid: int, rest_port: int):
        self.pid, self.rest = pid, rest_port
        self.prom: set[int] = set()
        self.seen: dict[str, float] = {}
        self.rest_ok = False
        self.failed_started: dict[int, str] = {}   # checkpoint id -> failure message
        self.batch_metric = ""

    def failed_checkpoints(self, from_log: "CheckpointLog | None" = None) -> tuple[int, int]:
        """(real failures, triggers refused at start-up). Flink counts a trigger refused while
        some task is not yet RUNNING (the Python operator loads its models in `open`) as a failed
        checkpoint, though no checkpoint started. With the JobManager's log (`from_log`), every
        failure it logged is classed by its reason: a refused trigger says its task "is not
        being executed at the moment"; every other one is real, and so is every checkpoint whose
        history entry says FAILED. Without the log: the failures counted after all tasks were
        seen RUNNING (REST's statistics are cached for a few seconds, so that count can miss a
        trigger refused just before: the log is the measure). A periodic checkpoint still running
        when the corpus's own stop suspends the coordinator is aborted by that stop, not failed."""
        failed = int(self.seen.get("failed", 0))
        started = [m for m in self.failed_started.values() if CheckpointLog.STOPPED not in m]
        if from_log is not None:
            real = max(len(from_log.real), len(started))
            return real, max(failed - real - len(from_log.ended_by_stop), len(from_log.refused_at_start))
        after = failed - int(self.seen.get("failed_when_running", 0))   # never all running: all count
        real = max(after, len(started))
        return real, failed - real

    def poll(self) -> dict[str, float]:
        s = self.seen
        if not self.prom:
            self.prom = {p for p in _listening_ports(self.pid) if 9249 <= p <= 9260}
        try:
            jobs = json.loads(_get(self.rest, "/jobs/overview"))["jobs"]
            for job in jobs:
                jid = job["jid"]
                # the tasks' states first, then the checkpoint counts: a count read once every
                # task runs includes every trigger refused before (see `failed_checkpoints`)
                vertices = json.loads(_get(self.rest, f"/jobs/{jid}"))["vertices"]
                all_running = bool(vertices) and all(v.get("status") == "RUNNING" for v in vertices)
                ck = json.loads(_get(self.rest, f"/jobs/{jid}/checkpoints"))
                counts = ck.get("counts", {})
                s["completed"] = max(s.get("completed", 0), counts.get("completed", 0))
                s["failed"] = max(s.get("failed", 0), counts.get("failed", 0))
                if all_running and "failed_when_running" not in s:
                    s["failed_when_running"] = counts.get("failed", 0)
                for h in ck.get("history") or []:      # checkpoints that started (kept: the last 10)
                    if h.get("status") == "FAILED":
                        self.failed_started[h["id"]] = (h.get("failure_message") or "")[:200]
                e2e = (ck.get("summary") or {}).get("end_to_end_duration") or {}
                s["checkpoint_ms"] = max(s.get("checkpoint_ms", 0), e2e.get("max") or 0)
                for item in json.loads(_get(self.rest, f"/jobs/{jid}/metrics?get=numRestarts")):
                    s["restarts"] = max(s.get("restarts", 0), float(item["value"]))
                for v in vertices:                     # the scan operator's gauge
                    base = f"/jobs/{jid}/vertices/{v['id']}/metrics"
                    names = [m["id"] for m in json.loads(_get(self.rest, base)) if m["id"].endswith("batch_ms_max")]
                    if names:
                        self.batch_metric = names[0]
                        for item in json.loads(_get(self.rest, f"{base}?get={','.join(names)}")):
                            s["batch_ms_max"] = max(s.get("batch_ms_max", 0), float(item["value"]))
            self.rest_ok = True
        except (OSError, ValueError, KeyError, http.client.HTTPException):
            pass
        names = {"zeroscan_batch_ms_max": "batch_ms_max", "numRestarts": "restarts",
                 "lastCheckpointDuration": "checkpoint_ms", "numberOfCompletedCheckpoints": "completed",
                 "numberOfFailedCheckpoints": "failed"}
        for port in self.prom:
            try:
                text = _get(port, "/metrics").decode()
            except (OSError, ValueError, http.client.HTTPException):
                continue
            for line in text.splitlines():
                name = line.split("{", 1)[0]
                for key, what in names.items():
                    if not line.startswith("#") and name.endswith(key):
                        try:
                            s[what] = max(s.get(what, 0), float(line.rsplit(" ", 1)[1]))
                        except ValueError:
                            pass
        return s


def _worker_rss(job_pid: int) -> float:
    """The largest Python process under the job (the scan operator's worker), MiB."""
    best = 0.0
    for p in _tree(job_pid):
        if p == job_pid:
            continue
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes()
            if b"python" not in cmd:
                continue
            pages = int(Path(f"/proc/{p}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        best = max(best, pages * os.sysconf("SC_PAGE_SIZE") / 2**20)
    return best


def run_corpus(settings, work: Path, n_hostile: int, n_ordinary: int, fetch: str | None = None,
               timeout_s: float = 3600, under_limit_bombs: int = 4) -> dict:
    """Everything but the broker: servers, records, the job, the accounting."""
    import subprocess

    from connectors.kafka_admin import committed_offsets, end_offsets
    from connectors.kafka_io import consume, produce_lines

    work.mkdir(parents=True, exist_ok=True)
    fifo = work / "images.fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    servers = [HostileServer("127.0.0.1", drip_s=1.0, hold_s=40.0) for _ in range(6)]
    hosts = Hosts(HostileServer("127.0.0.1"), servers[:5], servers[5], fifo)
    try:
        corpus = Corpus(hosts, under_limit_bombs=under_limit_bombs)
        hostile = corpus.make(n_hostile)
        plain = ordinary(n_ordinary, hosts, corpus)
        rng = random.Random(SEED)
        records = [r for r, _ in hostile] + plain
        rng.shuffle(records)
        # one clean photo seen first, so the sha256 lies claim a digest that is in the cache
        first = orjson.dumps({"listing_id": "seed-clean", "seller_id": "s-0", "event_time": 1_767_225_600_000,
                              "title": "Bluetooth speaker", "images": [{"uri": f"{hosts.good.base}/img/pool-1.jpg"}]})
        records.insert(0, first)
        expected_dead = Counter(hashlib.sha256(r).hexdigest() for r in records if _expected_dead(r))
        produce_lines(settings.kafka, settings.topics.brands, (orjson.dumps(b) for b in BRANDS), "brand_id")
        produced = produce_lines(settings.kafka, settings.topics.listings, records, "listing_id")
        assert produced == len(records), (produced, len(records))
        env = {**plaintext_env(), "ZEROSCAN_BOOTSTRAP": settings.bootstrap, "ZEROSCAN_STATE_DIR": str(settings.state_dir),
               "ZEROSCAN_GROUP": settings.consumer_group, "ZEROSCAN_TXN_PREFIX": settings.transactional_id_prefix,
               "ZEROSCAN_TOPIC_PREFIX": settings.topics.listings[: -len("listings")], "ZEROSCAN_IMAGES": "on",
               "ZEROSCAN_EGRESS_ALLOW": "127.0.0.1/32"}     # the loopback hosts: allowed explicitly
        if fetch:
            env["ZEROSCAN_FETCH"] = fetch
        rest_port = _free_port()
        flink_logs = settings.state_dir / "hostile-flink-logs"   # this job's JobManager log only
        shutil.rmtree(flink_logs, ignore_errors=True)
        env["FLINK_LOG_DIR"] = str(flink_logs)
        env["ZEROSCAN_FLINK_OPTS"] = ";".join(x for x in (os.environ.get("ZEROSCAN_FLINK_OPTS"),
                                                           f"rest.port={rest_port}", f"rest.bind-port={rest_port}") if x)
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        log_path = settings.state_dir / "hostile-job.log"
        root = Path(__file__).resolve().parent.parent
        t0 = time.monotonic()
        with open(log_path, "wb") as log:
            job = subprocess.Popen([sys.executable, "-m", "zeroscan", "job", "run"], cwd=root, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        peak = worker_peak = 0.0
        probe = JobProbe(job.pid, rest_port)
        seen = probe.seen
        target = end_offsets(settings.kafka, settings.topics.listings)
        done_at = None
        try:
            while True:
                if job.poll() is not None:
                    raise RuntimeError(f"job exited ({job.returncode}); see {log_path}")
                if time.monotonic() - t0 > timeout_s:
                    raise RuntimeError(f"not done within {timeout_s}s; see {log_path}")
                peak = max(peak, rss_mib(job.pid))
                worker_peak = max(worker_peak, _worker_rss(job.pid))
                probe.poll()
                committed = committed_offsets(settings.kafka, settings.consumer_group, settings.topics.listings)
                if done_at is None and all(committed.get(p, 0) >= o for p, o in target.items()):
                    done_at = time.monotonic()
                    completed_then = seen.get("completed", 0)
                if done_at is not None and (seen.get("completed", 0) >= completed_then + 2
                                            or time.monotonic() - done_at > 20):
                    break                      # two more checkpoints completed after the last record
                time.sleep(0.5)
        finally:
            stop_job(job)
        wall = (done_at or time.monotonic()) - t0
        # The job has exited: the topics hold all they will (read to their end, no idle wait).
        dead = [json.loads(v) for _k, v, _p, _o in consume(settings.kafka, settings.topics.dead_letter,
                                                             stop_at_end=True)]
        decisions = [json.loads(v) for _k, v, _p, _o in consume(settings.kafka, settings.topics.decisions,
                                                                  stop_at_end=True)]
        got_dead = Counter(d.get("record_sha256") or hashlib.sha256(
            d["record"].encode()).hexdigest() for d in dead)
        restarts_in_log = log_path.read_text(errors="replace").count("to RESTARTING")
        ck_log = CheckpointLog.read(flink_logs)
        failed_real, refused_at_start = probe.failed_checkpoints(ck_log)
        image_errors: Counter[str] = Counter()
        for d in decisions:
            for s in d.get("signals", []):
                if s["kind"] == "image_error":
                    reason = s["detail"]["reason"]
                    m = re.search(r"egress rule '([a-z-]+)'", reason)
                    image_errors[m.group(1) if m else _reason_class(reason.removeprefix("fetch failed: "))[:50]] += 1
        decided = {d["listing_id"] for d in decisions}
        missing_flags = sorted(lid for lid, raw in corpus.flag_ids.items()
                               if lid not in decided and not _expected_dead(raw))
        res = {
            "missing_examples": missing_flags[:5],
            "records": len(records), "hostile": n_hostile, "ordinary": n_ordinary + 1,
            "hostile_by_class": dict(sorted(corpus.classes.items())),
            "dead_letters": dict(Counter(_reason_class(d["reason"]) for d in dead).most_common()),
            "dead_letters_total": len(dead), "expected_dead_letters": sum(expected_dead.values()),
            "dead_letters_match_refused_records": got_dead == expected_dead,
            "decisions": len(decisions), "image_errors_on_decisions": dict(image_errors.most_common()),
            "flagged_hostile_listings_without_decision": len(missing_flags),
            "job_restarts": int(max(seen.get("restarts", 0), restarts_in_log)),
            "checkpoints_completed": int(seen.get("completed", 0)),
            "checkpoints_failed": failed_real,
            "checkpoint_triggers_refused_at_start": refused_at_start,
            "checkpoints_failed_counting": (
                "the checkpoint failures the JobManager logged, less the triggers refused because a task "
                "was not yet running (no checkpoint started) and a checkpoint aborted by the final stop" if ck_log is not None else
                "failed checkpoints in Flink's statistics, less those counted before every task was "
                "seen RUNNING (no JobManager log found)"),
            "checkpoint_failure_messages": sorted(set(m for m in probe.failed_started.values() if CheckpointLog.STOPPED not in m)
                                                  | set(ck_log.real if ck_log is not None else ())),
            "max_checkpoint_s": round(seen.get("checkpoint_ms", 0) / 1000, 2),
            "job_probe": {"rest_api_answered": probe.rest_ok, "metric_ports": len(probe.prom),
                          "batch_metric": probe.batch_metric},
            "max_batch_s": round(seen.get("batch_ms_max", 0) / 1000, 2),
            "peak_rss_mib": round(worker_peak), "job_tree_peak_rss_mib": round(peak),
            "worker_rss_bound_mib": WORKER_RSS_BOUND_MIB, "wall_s": round(wall, 1),
            "fetch_budgets": fetch or "defaults (connectors/image_fetch.py)",
            "under_limit_bombs": under_limit_bombs,
            "connections_to_slow_hosts": sum(s.seen.connections for s in servers[:5]),
        }
        res["ok"] = bool(res["dead_letters_match_refused_records"] and res["job_restarts"] == 0
                         and res["checkpoints_failed"] == 0 and res["checkpoints_completed"] > 0
                         and res["max_batch_s"] > 0
                         and res["peak_rss_mib"] <= WORKER_RSS_BOUND_MIB
                         and res["flagged_hostile_listings_without_decision"] == 0)
        return res
    finally:
        hosts.good.close()
        for s in servers:
            s.close()


@dataclasses.dataclass(frozen=True)
class CheckpointLog:
    """The checkpoint failures the embedded job's JobManager logged (CheckpointFailureManager,
    one line per failure, at INFO): `refused_at_start`, triggers refused because a task was not
    yet running; `ended_by_stop`, a checkpoint in flight when the job's stop with a savepoint
    suspended the coordinator; `real`, every other failure, with its reason."""

    refused_at_start: tuple[str, ...]
    real: tuple[str, ...]
    ended_by_stop: tuple[str, ...] = ()

    REFUSED = "is not being executed at the moment"
    STOPPED = "Checkpoint Coordinator is suspending"

    @classmethod
    def read(cls, log_dir: Path) -> "CheckpointLog | None":
        logs = sorted(log_dir.glob("flink-*.log"))
        if not logs:
            return None
        refused: list[str] = []
        real: list[str] = []
        stopped: list[str] = []
        for path in logs:
            lines = path.read_text(errors="replace").splitlines()
            for i, line in enumerate(lines):
                if "CheckpointFailureManager" not in line:
                    continue
                if " - Failed to trigger checkpoint for job " in line:
                    reason = line.split(" since ", 1)[-1]
                elif " - Failed to trigger or complete checkpoint " in line:
                    # the exception follows on the next line: "...CheckpointException: <reason>"
                    reason = lines[i + 1].split(": ", 1)[-1] if i + 1 < len(lines) else line
                else:
                    continue
                (refused if cls.REFUSED in reason else stopped if cls.STOPPED in reason else real).append(reason[:200])
        return cls(tuple(refused), tuple(real), tuple(stopped))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    from connectors.kafka_admin import contract_topics, ensure_topics
    from connectors.kafka_broker import KafkaBroker
    from zeroscan.settings import Settings, Topics

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hostile", type=int, default=10_000)
    ap.add_argument("--ordinary", type=int, default=5_000)
    ap.add_argument("--fetch", default=None, help="ZEROSCAN_FETCH overrides (default: the shipped budgets)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    base = Settings.from_env()
    work = base.state_dir / "hostile"
    shutil.rmtree(work, ignore_errors=True)
    broker = KafkaBroker(work / "kafka", base.jar_dir / "kafka-broker", port=_free_port())
    broker.up()
    tag = uuid.uuid4().hex[:6]
    settings = dataclasses.replace(base, bootstrap=broker.bootstrap, kafka_properties=(), state_dir=work / "state",
                                   consumer_group=f"hostile-{tag}", transactional_id_prefix=f"hostile-{tag}",
                                   topics=Topics.prefixed(f"h{tag}-"))
    try:
        ensure_topics(settings.kafka, contract_topics(settings.topics, partitions=2))
        res = run_corpus(settings, work, args.hostile, args.ordinary, args.fetch)
    finally:
        broker.down()
    res["command"] = "make bench-hostile" if argv is None and len(sys.argv) == 1 else \
        "python benchmarks/hostile.py " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
