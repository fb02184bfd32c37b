"""Image store and fetch: every refusal (format, size, pixel bomb, corrupt, sha) with its message,
valid images kept once by sha256, and fetching from paths, file:// and a local http server."""
from __future__ import annotations

import http.server
import io
import random
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from connectors import image_checks
from connectors.egress import EgressPolicy
from connectors.image_fetch import FetchTimeouts, fetch
from connectors.image_store import (
    MAX_IMAGE_BYTES,
    ImageFormat,
    ImageLimits,
    ImageRejected,
    ImageStore,
    check_image,
    probe,
    sha256_hex,
)

pytestmark = pytest.mark.unit


def encode(fmt: str, mode: str = "RGB", size: tuple[int, int] = (40, 30), seed: int = 1, **kw) -> bytes:
    """A small noisy image (noise keeps the compressed stream long enough to cut)."""
    rnd = random.Random(seed)
    im = Image.frombytes(mode, size, bytes(rnd.randrange(256) for _ in range(size[0] * size[1] * len(mode))))
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with a tiny IDAT: the shape of a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 1024))
            + png_chunk(b"IEND", b""))


def jpeg_header_only(width: int, height: int) -> bytes:
    sof = struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8\xff\xc0" + sof + b"\xff\xd9"


def webp_vp8x_header_only(width: int, height: int) -> bytes:
    body = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


PNG = encode("PNG")
JPEG = encode("JPEG", quality=90)
WEBP_LOSSY = encode("WEBP")
WEBP_LOSSLESS = encode("WEBP", lossless=True)
WEBP_ALPHA = encode("WEBP", mode="RGBA")
GIF = encode("GIF", mode="L")


def flipped(data: bytes, at: float = 0.5) -> bytes:
    b = bytearray(data)
    b[int(len(b) * at)] ^= 0xFF
    return bytes(b)


VALID = [
    # (bytes, format, reason)
    (PNG, ImageFormat.PNG, "PNG"),
    (JPEG, ImageFormat.JPEG, "baseline JPEG"),
    (encode("JPEG", progressive=True), ImageFormat.JPEG, "progressive JPEG (SOF2)"),
    (WEBP_LOSSY, ImageFormat.WEBP, "lossy WebP (VP8 chunk)"),
    (WEBP_LOSSLESS, ImageFormat.WEBP, "lossless WebP (VP8L chunk)"),
    (WEBP_ALPHA, ImageFormat.WEBP, "WebP with alpha (VP8X extended header)"),
    (encode("PNG", mode="RGBA"), ImageFormat.PNG, "PNG with alpha"),
]


@pytest.mark.parametrize("data,fmt,reason", VALID, ids=[r for *_, r in VALID])
def test_valid_images_pass_with_header_size(data, fmt, reason):
    info = check_image(data)
    assert (info.format, info.width, info.height) == (fmt, 40, 30)


REFUSED = [
    # (bytes, limits, expected sha, message fragment, reason)
    (b"", None, None, "empty", "empty file"),
    (b"<!DOCTYPE html><html><body>not found</body></html>", None, None, "HTML", "HTML page renamed .png"),
    (GIF, None, None, "GIF", "GIF is not an allowed format"),
    (b"just some text, saved as logo.png\n", None, None, "not a PNG, JPEG or WebP", "text file"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None, None, "SVG", "SVG (scriptable) refused"),
    (PNG[:20], None, None, "header is truncated", "PNG cut inside IHDR"),
    (PNG[: len(PNG) // 2], None, None, "truncated", "PNG cut in its image data"),
    (PNG[:-6], None, None, "no IEND", "PNG missing its end chunk"),
    (flipped(PNG), None, None, "corrupt", "PNG with a damaged data stream"),
    (JPEG[: len(JPEG) // 2], None, None, "truncated", "JPEG cut in half"),
    (WEBP_LOSSY[: len(WEBP_LOSSY) // 2], None, None, "truncated", "WebP cut in half"),
    (PNG, ImageLimits(max_bytes=len(PNG) - 1), None, "byte limit", "one byte over the byte cap"),
    (PNG, None, "0" * 64, "sha256 mismatch", "declared sha256 differs"),
    (PNG, None, "ABC", "64 lower-case hex", "malformed sha256"),
    (png_header_only(30_000, 30_000), None, None, "900000000 pixels", "30,000 x 30,000 PNG bomb"),
    (jpeg_header_only(65_000, 65_000), None, None, "pixel limit", "65,000 x 65,000 JPEG bomb"),
    (webp_vp8x_header_only(16_384, 16_384), None, None, "pixel limit", "largest WebP canvas"),
    (png_header_only(7_072, 7_071), None, None, "pixel limit", "just above the 50 MP cap (listing photos' too)"),
    (webp_vp8x_header_only(4_100, 4_000), None, None, "max_full_decode_pixels",
     "WebP above 16 MP: no reduced decoding, so the full-size cap"),
    (encode("JPEG", size=(40, 30), progressive=True), ImageLimits(max_full_decode_pixels=1_000), None,
     "max_full_decode_pixels", "progressive JPEG keeps all coefficients: the full-size cap"),
    (png_header_only(0, 10), None, None, "empty size", "zero width"),
    (b"\xff\xd8\xff\xda\x00\x02", None, None, "no frame header", "JPEG with scan before frame"),
]


@pytest.mark.parametrize("data,limits,sha,fragment,reason", REFUSED, ids=[r for *_, r in REFUSED])
def test_refused_with_clear_message(data, limits, sha, fragment, reason):
    with pytest.raises(ImageRejected, match=fragment):
        check_image(data, limits or ImageLimits(), sha)


def test_bomb_is_refused_from_the_header_without_decoding(monkeypatch):
    def no_decode(*_a):
        raise AssertionError("the decoder must not run on a bomb")

    monkeypatch.setattr(image_checks, "_decode", no_decode)
    bomb = png_header_only(30_000, 30_000)
    assert len(bomb) < 200
    assert probe(bomb).pixels == 900_000_000
    with pytest.raises(ImageRejected, match="refused before decoding"):
        check_image(bomb)


def test_oversize_is_refused_before_anything_else():
    data = PNG + b"\0" * MAX_IMAGE_BYTES
    with pytest.raises(ImageRejected, match=f"above the {MAX_IMAGE_BYTES}-byte limit"):
        check_image(data)


def test_store_keeps_each_image_once_by_sha(tmp_path):
    store = ImageStore(tmp_path / "images")
    a = store.put(PNG)
    b = store.put(PNG, sha256_hex(PNG))
    c = store.put(JPEG)
    assert a == b and a.sha256 == sha256_hex(PNG)
    assert a.path.read_bytes() == PNG and a.uri == a.path.as_uri() and a.uri.startswith("file:///")
    assert a.ref().sha256 == a.sha256
    assert sorted(p.name for p in (tmp_path / "images").rglob("*") if p.is_file()) == sorted([a.sha256, c.sha256])
    assert store.has(c.sha256) and store.get(c.sha256).info.format is ImageFormat.JPEG


def test_store_refuses_and_keeps_nothing(tmp_path):
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ImageRejected, match="sha256 mismatch"):
        store.put(PNG, sha256_hex(JPEG))
    with pytest.raises(ImageRejected, match="not a PNG, JPEG or WebP"):
        store.put(b"<html></html>")
    assert not any((tmp_path / "images").rglob("*")) if (tmp_path / "images").exists() else True


# -- fetch -----------------------------------------------------------------------------------

def test_fetch_relative_absolute_and_file_uri(tmp_path):
    (tmp_path / "logos").mkdir()
    (tmp_path / "logos" / "acme.png").write_bytes(PNG)
    assert fetch("logos/acme.png", tmp_path) == PNG
    assert fetch(str(tmp_path / "logos" / "acme.png"), None) == PNG
    assert fetch((tmp_path / "logos" / "acme.png").as_uri(), None, sha256_hex(PNG)) == PNG


FETCH_FILE_REFUSED = [
    # (file name, content, uri template, message, reason)
    ("fake.png", b"<!doctype html><p>hi</p>", "{name}", "HTML", "HTML renamed .png"),
    ("anim.png", GIF, "{name}", "GIF", "GIF renamed .png"),
    ("logo.png", PNG, "missing.png", "no such file", "missing file"),
    ("logo.png", PNG, "ftp://example.invalid/logo.png", "unsupported scheme", "ftp is not fetched"),
    ("logo.png", PNG, "file://otherhost/logo.png", "another host", "remote file:// host"),
]


@pytest.mark.parametrize("name,content,uri,fragment,reason", FETCH_FILE_REFUSED,
                         ids=[r for *_, r in FETCH_FILE_REFUSED])
def test_fetch_file_refused(tmp_path, name, content, uri, fragment, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageRejected, match=fragment):
        fetch(uri.format(name=name), tmp_path)


def test_fetch_file_over_the_byte_cap(tmp_path):
    (tmp_path / "big.png").write_bytes(PNG)
    with pytest.raises(ImageRejected, match="byte limit"):
        fetch("big.png", tmp_path, limits=ImageLimits(max_bytes=100))


def test_fetch_file_sha_mismatch(tmp_path):
    (tmp_path / "logo.png").write_bytes(PNG)
    with pytest.raises(ImageRejected, match="sha256 mismatch"):
        fetch("logo.png", tmp_path, "1" * 64)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stop: threading.Event

    def log_message(self, *_args) -> None:
        pass

    def _send(self, status: int, ctype: str, body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self) -> None:
        p = self.path
        if p == "/logo.png":
            self._send(200, "image/png", PNG)
        elif p == "/logo.jpg":
            self._send(200, "image/jpeg; charset=binary", JPEG)
        elif p == "/page.html":
            self._send(200, "text/html; charset=utf-8", b"<html><body>shop</body></html>")
        elif p == "/fake.png":
            self._send(200, "image/png", b"<html><body>not an image</body></html>")
        elif p == "/missing.png":
            self._send(404, "text/plain", b"not found")
        elif p == "/slow.png":
            self.stop.wait(3.0)
            self._send(200, "image/png", PNG)
        elif p == "/drip.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(PNG[:8])
            for _ in range(30):
                if self.stop.wait(0.05):
                    break
                self.wfile.write(b"\0")
                self.wfile.flush()
            self.close_connection = True
        elif p == "/declared-huge.png":
            self._send(200, "image/png", b"", length=50 << 20)
            self.close_connection = True
        elif p == "/stream-huge.png":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(PNG[:8])
            for _ in range(64):
                self.wfile.write(b"\0" * 16384)
            self.close_connection = True
        elif p == "/redirect.png":
            self.send_response(302)
            self.send_header("Location", "/logo.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, "text/plain", b"?")


@pytest.fixture(scope="module")
def http_base():
    stop = threading.Event()
    handler = type("Handler", (_Handler,), {"stop": stop})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.block_on_close = False  # keep-alive handler threads end with their clients
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-http", daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    stop.set()
    server.shutdown()
    server.server_close()
    t.join(5)


FAST = FetchTimeouts(connect_s=1.0, read_s=0.3, total_s=0.6)
LOOPBACK = EgressPolicy.from_lists(allow="127.0.0.1/32")  # the test server: allowed explicitly


def test_fetch_http_ok(http_base):
    assert fetch(f"{http_base}/logo.png", None, sha256_hex(PNG), timeouts=FAST, policy=LOOPBACK) == PNG
    assert fetch(f"{http_base}/logo.jpg", None, timeouts=FAST, policy=LOOPBACK) == JPEG
    assert fetch(f"{http_base}/redirect.png", None, timeouts=FAST, policy=LOOPBACK) == PNG


def test_fetch_http_refuses_loopback_unless_allowed(http_base):
    with pytest.raises(ImageRejected, match="internal-address"):
        fetch(f"{http_base}/logo.png", None, timeouts=FAST)


HTTP_REFUSED = [
    # (path, limits, message, reason)
    ("/slow.png", None, "timed out", "no answer within the read timeout"),
    ("/drip.png", None, "longer than", "a byte at a time past the total deadline"),
    ("/page.html", None, "content type 'text/html'", "HTML page served as text/html"),
    ("/fake.png", None, "HTML", "HTML served with an image/png content type"),
    ("/missing.png", None, "HTTP 404", "not found"),
    ("/declared-huge.png", None, "Content-Length", "declared length above the cap"),
    ("/stream-huge.png", ImageLimits(max_bytes=100_000), "more than 100000 bytes", "undeclared stream above the cap"),
]


@pytest.mark.parametrize("path,limits,fragment,reason", HTTP_REFUSED, ids=[r for *_, r in HTTP_REFUSED])
def test_fetch_http_refused(http_base, path, limits, fragment, reason):
    t0 = time.monotonic()
    with pytest.raises(ImageRejected, match=fragment):
        fetch(f"{http_base}{path}", None, limits=limits or ImageLimits(), timeouts=FAST, policy=LOOPBACK)
    assert time.monotonic() - t0 < 2.0


def test_ingest_rewrites_to_store_uri(tmp_path):
    from brand_signals.records import ImageRef

    (tmp_path / "acme.png").write_bytes(PNG)
    store = ImageStore(tmp_path / "images")
    ref = store.ingest(ImageRef("acme.png"), tmp_path)
    assert ref.sha256 == sha256_hex(PNG)
    assert Path(ref.uri.removeprefix("file://")).read_bytes() == PNG
    (tmp_path / "acme.png").unlink()
    assert store.ingest(ImageRef("acme.png", ref.sha256), tmp_path) == ref  # known sha: no fetch needed
