"""Memory limits on images, tried as an attacker would: bombs of each format (huge header sizes in
small files) are refused under one set of limits for brand uploads and listing photos alike; a
7000 x 7000 PNG is decoded with reduction and costs its analysis size, not 150-1,400 MB; a
batch analyses its decoded images in chunks; a claimed sha256 that the bytes do not have is an
image_error and the real bytes are scanned; catalogue rebuilds do not decode unchanged images;
a brand with too many image pixels is refused at registration."""
from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from brand_signals.images.image_decode import (
    ANALYSIS_SIDE,
    ImageDecodeError,
    ImageLimits,
    _parse_png,
    _png_strips,
    decode_rgb,
)
from brand_signals.images.image_signals import ImageSignals, ReferenceCache
from brand_signals.records import BrandReference, ImageRef, SignalKind
from brand_signals.registry import Actor, BrandRegistry, ImageBudget, ImageBudgetError
from connectors.image_store import ImageRejected, check_image
from tests.unit.test_image_signals import (
    BRAND,
    CountingReader,
    Store,
    _jpeg,
    _kinds,
    _listing,
    _logo,
    _pasted,
    _photo,
    _png,
)

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def big_png(w: int, h: int, channels: int = 3) -> bytes:
    """A real w x h PNG (every row present, bands of colour), written row by row so the test
    never holds it decoded."""
    row = np.zeros((w, channels), np.uint8)
    row[:, 0] = np.arange(w) % 256
    row[:, 1] = (np.arange(w) // 256) % 256
    row[:, 2:] = 200
    line = b"\x00" + row.tobytes()
    z = zlib.compressobj(6)
    body = b"".join(z.compress(line) for _ in range(h)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, {3: 2, 4: 6}[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def png_bomb(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 4096))
            + _chunk(b"IEND", b""))


def jpeg_bomb(w: int, h: int) -> bytes:
    """A real small JPEG whose frame header is rewritten to claim w x h."""
    data = bytearray(_jpeg(_photo(1)[:64, :64]))
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def webp_bomb(w: int, h: int) -> bytes:
    """A lossless WebP whose 14-bit size fields claim w x h (no reduced WebP decoder exists)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buf, "WEBP", lossless=True)
    data = bytearray(buf.getvalue())
    bits = (w - 1) | ((h - 1) << 14) | (int.from_bytes(data[21:25], "little") & ~((1 << 28) - 1))
    data[21:25] = bits.to_bytes(4, "little")
    return bytes(data)


BOMBS = [
    # (bytes, message fragment, reason)
    (png_bomb(100_000, 100_000), "pixel limit", "10^10-pixel PNG in a few hundred bytes"),
    (jpeg_bomb(65_000, 65_000), "pixel limit", "largest JPEG frame, from a 2 KB file"),
    (webp_bomb(16_384, 16_384), "pixel limit", "largest WebP canvas"),
    (webp_bomb(5_000, 4_000), "max_full_decode_pixels", "20 MP WebP: under the pixel cap, but only full-size decoding"),
    (png_bomb(7_000, 7_000), "truncated", "49 MP PNG header over a 4 KB stream: inflated row by row, refused"),
]


@pytest.mark.parametrize("data,fragment,reason", BOMBS, ids=[r for *_, r in BOMBS])
def test_bombs_are_refused_the_same_for_uploads_and_listings(data, fragment, reason):
    assert len(data) < 5_000
    with pytest.raises(ImageDecodeError, match=fragment):
        decode_rgb(data)
    with pytest.raises(ImageRejected, match=fragment):
        check_image(data)


def test_one_set_of_limits_for_uploads_and_listings():
    """36 MP from a PNG: today's store refused it (25 MP) where listing decoding took it (50
    MP) and held 110 MB; now both accept it and decode it reduced."""
    data = big_png(6_000, 6_000)
    assert check_image(data).pixels == 36_000_000
    assert decode_rgb(data).shape == (ANALYSIS_SIDE, ANALYSIS_SIDE, 3)


_RSS_CHILD = """
import resource, sys
data = open(sys.argv[1], "rb").read()
from brand_signals.images.image_decode import decode_rgb
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rgb = decode_rgb(data)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(rgb.shape[0], rgb.shape[1], (after - before) // 1024)
"""
# A 7000 x 7000 RGB PNG decoded whole is 147 MB (RGBA flattened as before: ~1.4 GB); reduced
# to 1920 x 1920 it is 11 MB, plus strips of ~2 MB raw rows and their copies.
PEAK_RSS_GROWTH_MIB = 100


def test_a_7000_square_png_costs_its_analysis_size(tmp_path):
    data = big_png(7_000, 7_000)
    assert len(data) < 2 << 20
    path = tmp_path / "big.png"
    path.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(path)], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    h, w, grew_mib = map(int, out.stdout.split())
    assert (h, w) == (ANALYSIS_SIDE, ANALYSIS_SIDE)
    assert grew_mib < PEAK_RSS_GROWTH_MIB, f"decoding raised peak RSS by {grew_mib} MiB"


STRIP_KINDS = [
    # (PIL mode, save options, reason)
    ("RGB", {}, "8-bit RGB (raw rows are the pixels)"),
    ("RGBA", {}, "RGBA"),
    ("L", {}, "grey"),
    ("LA", {}, "grey + alpha"),
    ("P", {}, "palette"),
    ("P", {"transparency": 3}, "palette with a transparent index (tRNS)"),
    ("RGB", {"transparency": (1, 2, 3)}, "RGB with a colour key (tRNS)"),
    ("1", {}, "1-bit"),
]


@pytest.mark.parametrize("mode,opts,reason", STRIP_KINDS, ids=[r for *_, r in STRIP_KINDS])
def test_png_strips_decode_exactly_as_the_whole_image(mode, opts, reason):
    rng = np.random.default_rng(7)
    arr = cv2.GaussianBlur(rng.integers(0, 256, (53, 61, 4), dtype=np.uint8), (7, 7), 3)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, "PNG", **opts)
    data = buf.getvalue()
    whole = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    strips = np.concatenate(list(_png_strips(_parse_png(data), 7)))
    assert strips.dtype == whole.dtype and (strips == whole).all()


def test_16_bit_png_strips_decode_exactly():
    rng = np.random.default_rng(8)
    for shape in ((40, 33), (40, 33, 3), (40, 33, 4)):
        ok, buf = cv2.imencode(".png", rng.integers(0, 65535, shape, dtype=np.uint16))
        whole = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        assert (np.concatenate(list(_png_strips(_parse_png(buf.tobytes()), 5))) == whole).all()


def test_reduced_decoding_of_each_format_and_small_images_unchanged():
    photo = np.ascontiguousarray(np.tile(_photo(3) // 32 * 32, (9, 9, 1)))    # 4320 x 3240, compresses
    ok, png = cv2.imencode(".png", cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    for data in (png.tobytes(), _jpeg(photo)):                              # JPEG: DCT scaling by 1/2
        rgb = decode_rgb(data)
        assert rgb.shape == (1440, 1920, 3)
        whole = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        ref = cv2.resize(whole, (1920, 1440), interpolation=cv2.INTER_AREA)
        assert np.abs(rgb.astype(int) - ref).mean() < 2                  # the same picture, reduced
    small = _photo(4)
    assert (decode_rgb(_png(small)) == small).all()                       # at or under the side: as is
    limits = ImageLimits(analysis_side=100)
    assert decode_rgb(_png(small), limits).shape == (75, 100, 3)


def _signals(extractor, files, **kw):
    store = Store({"logos/emblem.png": _png(_logo()), "products/shot.jpg": _jpeg(_photo(9)), **files})
    sig = ImageSignals.build([BRAND], store, "/base", extractor=extractor, reader=CountingReader(), **kw)
    return sig, store


@pytest.fixture(scope="module")
def extractor():
    from models.embedder import FeatureExtractor
    return FeatureExtractor(threads=1)


def test_a_claimed_sha256_is_a_hint_not_a_fact(extractor):
    """A listing claims the digest of a clean image already cached; its own bytes show the
    emblem. The counterfeit is fetched and scanned, and the lie is an image_error."""
    clean = _jpeg(_photo(2))
    fake = _jpeg(_pasted())
    clean_sha = hashlib.sha256(clean).hexdigest()
    sig, store = _signals(extractor, {"clean.jpg": clean, "fake.jpg": fake})
    (first,) = sig.find([_listing("l1", "clean.jpg", sha={"clean.jpg": clean_sha})])
    assert first == []
    (lied,) = sig.find([_listing("l2", "fake.jpg", sha={"fake.jpg": clean_sha})])
    assert ("emblem", SignalKind.LOGO) in _kinds(lied)
    (err,) = [s for ev in lied for s in ev.signals if s.kind is SignalKind.IMAGE_ERROR]
    assert "sha256 mismatch" in err.detail["reason"] and clean_sha not in err.detail["reason"]
    assert sig.stats.sha256_mismatches == 1
    # a pair verified here before saves the fetch; the same claim on another uri does not
    calls = store.calls
    sig.find([_listing("l3", "clean.jpg", sha={"clean.jpg": clean_sha})])
    assert store.calls == calls
    sig.find([_listing("l4", "fake.jpg", sha={"fake.jpg": clean_sha})])
    assert store.calls == calls + 1


def test_verified_pairs_expire(extractor):
    clean = _jpeg(_photo(2))
    sha = hashlib.sha256(clean).hexdigest()
    now = [0.0]
    sig, store = _signals(extractor, {"c.jpg": clean}, now=lambda: now[0], verified_ttl_s=60.0)
    sig.find([_listing("l1", "c.jpg", sha={"c.jpg": sha})])
    calls = store.calls
    now[0] = 59.0
    sig.find([_listing("l2", "c.jpg", sha={"c.jpg": sha})])
    assert store.calls == calls
    now[0] = 121.0
    sig.find([_listing("l3", "c.jpg", sha={"c.jpg": sha})])
    assert store.calls == calls + 1


def test_a_batch_analyses_in_chunks_under_the_pixel_budget(extractor):
    files = {f"p{i}.jpg": _jpeg(_photo(20 + i)) for i in range(5)}      # 480 x 360 = 172,800 px each
    files["logo.jpg"] = _jpeg(_pasted())
    listings = [_listing(f"l{i}", u) for i, u in enumerate(sorted(files))]
    whole, _ = _signals(extractor, files)
    chunked, _ = _signals(extractor, files, max_held_pixels=2 * 172_800)
    assert chunked.find(listings) == whole.find(listings)
    assert whole.stats.chunks == 1 and chunked.stats.chunks == 2          # 3 + 3 images held at most


def test_catalogue_rebuild_decodes_only_changed_images(extractor):
    refs = ReferenceCache()
    files = {"logos/emblem.png": _png(_logo()), "products/shot.jpg": _jpeg(_photo(9))}
    store = Store(files)
    kw = dict(extractor=extractor, reader=CountingReader(), references=refs)
    first = ImageSignals.build([BRAND], store, "/base", **kw)
    assert refs.analysed == 2 and len(refs) == 2
    calls = extractor.calls
    again = ImageSignals.build([BRAND], store, "/base", **kw)                # nothing changed
    assert refs.analysed == 2 and refs.reused == 2 and extractor.calls == calls
    probe = [_listing("l1", "x.jpg")]
    store.files["x.jpg"] = _jpeg(_pasted())
    assert first.find(probe) == again.find(probe)
    store.files["products/shot.jpg"] = _jpeg(_photo(10))                    # one image changed
    ImageSignals.build([BRAND], store, "/base", **kw)
    assert refs.analysed == 3 and len(refs) == 2                             # the old one dropped


# -- registration ------------------------------------------------------------------------------

def _brand(bid: str, n: int, version: int = 1) -> BrandReference:
    return BrandReference(brand_id=bid, version=version, name=bid, trademarks=(bid.upper(),),
                          product_images=tuple(ImageRef(f"file:///img/{bid}/{i}.jpg", f"{i:064x}") for i in range(n)))


def test_registration_refuses_brands_over_the_image_budget(tmp_path):
    reg = BrandRegistry(tmp_path / "reg", image_budget=ImageBudget(per_brand=100_000_000, per_catalog=150_000_000))
    admin = Actor.admin()
    px = 25_000_000
    with pytest.raises(ImageBudgetError, match="above the per-brand limit of 100000000"):
        reg.put(_brand("a", 6), admin, image_pixels=6 * px)                  # six 25 MP photos
    assert reg.get("a") is None
    with pytest.raises(ImageBudgetError, match="per-brand"):
        reg.check_put(_brand("a", 6), admin, image_pixels=6 * px)
    reg.put(_brand("a", 4), admin, image_pixels=4 * px)
    with pytest.raises(ImageBudgetError, match="above the catalogue limit of 150000000"):
        reg.put(_brand("b", 4), admin, image_pixels=4 * px)
    reg.put(_brand("b", 2), admin, image_pixels=2 * px)
    reg.put(_brand("a", 4, version=2), admin, image_pixels=4 * px)          # an update replaces its own share
    reg.withdraw("a", admin)
    reg.put(_brand("c", 4), admin, image_pixels=4 * px)                      # a withdrawal frees its share
    reg.close()
    reopened = BrandRegistry(tmp_path / "reg", image_budget=ImageBudget(per_brand=100_000_000,
                                                                        per_catalog=150_000_000))
    assert reopened.catalog_image_pixels() == 6 * px
    with pytest.raises(ImageBudgetError, match="catalogue"):
        reopened.put(_brand("d", 1), admin, image_pixels=px)
    reopened.close()
