"""Image signals on small images made here: a logo pasted into a photo is found, a plain photo
is not, the cache skips fetch and model, hostile bytes become image_error signals."""
from __future__ import annotations

import dataclasses
import hashlib
import struct
import zlib

import cv2
import numpy as np
import pytest

from brand_signals.images.image_decode import ImageDecodeError, decode_rgb, probe
from brand_signals.images.image_signals import ImageSignals
from brand_signals.records import Action, BrandReference, ImageRef, Listing, SignalKind
from models.embedder import FeatureExtractor
from models.ocr import TextLine

pytestmark = pytest.mark.unit


def _logo() -> np.ndarray:
    """A bold two-colour emblem on white (a stand-in for a brand's logo file)."""
    img = np.full((256, 256, 3), 255, np.uint8)
    cv2.circle(img, (128, 128), 110, (200, 20, 30), -1)
    pts = np.int32([[128, 40], [150, 105], [218, 105], [163, 145], [183, 212], [128, 172],
                    [73, 212], [93, 145], [38, 105], [106, 105]])
    cv2.fillPoly(img, [pts], (255, 220, 0))
    cv2.rectangle(img, (100, 118), (156, 138), (20, 20, 120), -1)
    return img


def _photo(seed: int) -> np.ndarray:
    """A photo-like background: smooth gradients, blobs and noise."""
    rng = np.random.default_rng(seed)
    h, w = 360, 480
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([120 + 60 * np.sin(x / 70 + seed), 110 + 50 * np.cos(y / 55), 100 + 40 * np.sin((x + y) / 90)], -1)
    for _ in range(6):
        cv2.circle(img, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(20, 70)),
                   tuple(float(c) for c in rng.integers(40, 220, 3)), -1)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg(rgb: np.ndarray, q: int = 88) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return buf.tobytes()


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def _png_bomb(w: int = 100_000, h: int = 100_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


def _pasted() -> np.ndarray:
    photo = _photo(1)
    logo = cv2.resize(_logo(), (128, 128), interpolation=cv2.INTER_AREA)
    photo[100:228, 200:328] = logo
    return photo


class Store:
    """fetch() over an in-memory dict, counting calls."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.calls = 0

    def __call__(self, uri: str, base_dir: str | None, sha256: str | None) -> bytes:
        self.calls += 1
        if uri not in self.files:
            raise OSError(f"no such image: {uri}")
        return self.files[uri]


class CountingReader:
    def __init__(self, text: dict[int, str] | None = None):
        self.calls = 0
        self.text = text or {}

    def read(self, images):
        self.calls += len(images)
        return [[TextLine(self.text[im.shape[0]], 0.99, (0, 0, 10, 10))] if im.shape[0] in self.text else []
                for im in images]


BRAND = BrandReference(brand_id="emblem", version=1, name="Emblem", trademarks=("Zorbix",),
                       logos=(ImageRef("logos/emblem.png"),), product_images=(ImageRef("products/shot.jpg"),),
                       enforcement=Action.TAKEDOWN)


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(threads=1)


def _signals(extractor, files, reader=None, tmp_path=None, brand=BRAND, head=False):
    from benchmarks.research.logos import LearnedHead
    from benchmarks.research.logo_head import DEFAULT_HEAD
    store = Store({"logos/emblem.png": _png(_logo()), "products/shot.jpg": _jpeg(_photo(9)), **files})
    sig = ImageSignals.build([brand], store, "/base", extractor=extractor, reader=reader or CountingReader(),
                             cache_path=None if tmp_path is None else tmp_path / "cache",
                             head=LearnedHead.load(DEFAULT_HEAD) if head else None)
    return sig, store


def _listing(lid: str, *uris: str, sha: dict[str, str] | None = None) -> Listing:
    sha = sha or {}
    return Listing(listing_id=lid, seller_id="s-1", event_time_ms=0, title="Item",
                   images=tuple(ImageRef(u, sha.get(u)) for u in uris))


def _kinds(evidence):
    return {(ev.brand_id, s.kind) for ev in evidence for s in ev.signals}


def test_logo_pasted_into_photo_is_found_and_plain_photo_is_not(extractor):
    """The learned head (off by default, see image_signals), when asked for."""
    sig, _ = _signals(extractor, {"a.jpg": _jpeg(_pasted()), "b.jpg": _jpeg(_photo(2))}, head=True)
    found, plain = sig.find([_listing("l1", "a.jpg"), _listing("l2", "b.jpg")])
    logo = [s for ev in found if ev.brand_id == "emblem" for s in ev.signals if s.kind is SignalKind.LOGO]
    assert logo and logo[0].score > 0        # supporting evidence (see logos.LOGO_*)
    x1, y1, x2, y2 = logo[0].detail["box"]
    assert x1 < 328 and x2 > 200 and y1 < 228 and y2 > 100      # the region overlaps the paste
    assert plain == []


def test_cache_hits_skip_fetch_and_model(extractor, tmp_path):
    reader = CountingReader()
    import hashlib
    data = _jpeg(_pasted())
    digest = hashlib.sha256(data).hexdigest()
    sig, store = _signals(extractor, {"a.jpg": data}, reader, tmp_path)
    calls0, fetch0 = extractor.calls, store.calls
    first = sig.find([_listing("l1", "a.jpg", sha={"a.jpg": digest})])
    assert extractor.calls == calls0 + 1 and reader.calls == 1 and store.calls == fetch0 + 1
    # same image, other listings (given sha256 and none): no fetch with the digest, no model call
    again = sig.find([_listing("l2", "a.jpg", sha={"a.jpg": digest}), _listing("l3", "a.jpg")])
    assert extractor.calls == calls0 + 1 and reader.calls == 1
    assert store.calls == fetch0 + 2                      # only l3, which carries no digest
    assert again[0] == first[0] and again[1] == first[0]
    sig.close()
    # a new instance on the same rocksdict path: still no model call; the image is fetched
    # once, since this process never hashed its bytes (a claimed sha256 is only a hint)
    sig2, store2 = _signals(extractor, {"a.jpg": data}, reader, tmp_path)
    calls1 = extractor.calls
    assert sig2.find([_listing("l4", "a.jpg", sha={"a.jpg": digest})])[0] == first[0]
    assert extractor.calls == calls1 and store2.calls == 2 + 1   # logo and product at build, a.jpg once
    sig2.close()


def test_backbone_runs_only_for_its_consumers(extractor):
    """Without official product photos (copies) and without the research head nothing needs
    the backbone: a new image is verified geometrically and read, not embedded."""
    reader = CountingReader()
    sig, _ = _signals(extractor, {"a.jpg": _jpeg(_warped_into_photo(11, 20.0, 0.6, (250, 170)))}, reader,
                      brand=dataclasses.replace(BRAND, product_images=()))
    calls0 = extractor.calls
    (found,) = sig.find([_listing("l1", "a.jpg")])
    assert extractor.calls == calls0 and sig.stats.embedded == 0 and reader.calls == 1
    assert any(s.kind is SignalKind.LOGO for ev in found for s in ev.signals)


def test_cached_outcomes_are_keyed_by_how_images_are_read(extractor, tmp_path):
    """Outcomes cached with one reading (no OCR, OCR, upscaled OCR) are not served to another:
    switching OCR on must read images that were cached without it."""
    class UpscalingReader(CountingReader):
        upscale = True

    fingerprints = set()
    for reader in (None, CountingReader(), UpscalingReader()):
        store = Store({"logos/emblem.png": _png(_logo())})
        sig = ImageSignals.build([dataclasses.replace(BRAND, product_images=())], store, "/base",
                                 extractor=extractor, reader=reader, ocr=False)
        fingerprints.add(sig._fingerprint)
    assert len(fingerprints) == 3


def test_duplicate_images_in_one_batch_are_embedded_once(extractor):
    reader = CountingReader()
    sig, _ = _signals(extractor, {"a.jpg": _jpeg(_photo(3)), "b.jpg": _jpeg(_photo(3))}, reader)
    calls0 = extractor.calls
    sig.find([_listing("l1", "a.jpg"), _listing("l2", "b.jpg"), _listing("l3", "a.jpg", "b.jpg")])
    assert extractor.calls == calls0 + 1 and reader.calls == 1


def test_ocr_text_goes_through_word_marks(extractor):
    photo = _photo(4)[:300]
    reader = CountingReader({300: "ZORBlX original"})
    sig, _ = _signals(extractor, {"a.jpg": _jpeg(photo)}, reader)
    (ev,) = sig.find([_listing("l1", "a.jpg")])
    assert ("emblem", SignalKind.OCR_TEXT) in _kinds(ev)


HOSTILE = [
    ("truncated.jpg", _jpeg(_photo(5))[:2000], "truncated"),          # cut mid-scan
    ("bomb.png", _png_bomb(), "exceeds the cap"),                      # 10^10 pixels declared
    ("page.jpg", b"<!doctype html><html><body>404</body></html>", "not a PNG"),  # error page
    ("empty.jpg", b"", "not an image"),                                # 0 bytes
    ("missing.jpg", None, "fetch failed"),                             # fetch raises
]


@pytest.mark.parametrize("name,data,reason", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_images_give_image_error_and_no_crash(extractor, name, data, reason):
    files = {} if data is None else {name: data}
    sig, _ = _signals(extractor, {**files, "ok.jpg": _jpeg(_pasted())})
    bad, mixed = sig.find([_listing("l1", name), _listing("l2", name, "ok.jpg")])
    (err,) = [s for ev in bad for s in ev.signals]
    assert err.kind is SignalKind.IMAGE_ERROR and err.score == 0.0 and reason in err.detail["reason"]
    assert ("emblem", SignalKind.LOGO) in _kinds(mixed)     # the good image still counts
    assert sig.stats.failures >= 1           # identical bad bytes fail once, then from cache


def test_decode_checks_header_before_decoding():
    assert probe(_png(_photo(6)))[1:] == (480, 360)
    with pytest.raises(ImageDecodeError, match="exceeds the cap"):
        decode_rgb(_png_bomb(20_000, 20_000))
    with pytest.raises(ImageDecodeError, match="too small"):
        decode_rgb(_png(np.zeros((4, 4, 3), np.uint8)))
    rgba = np.zeros((20, 20, 4), np.uint8)
    ok, buf = cv2.imencode(".png", rgba)
    assert (decode_rgb(buf.tobytes()) == 255).all()         # transparent -> white background


def test_image_copy_by_hash_and_by_embedding(extractor):
    product = _photo(7)
    brand = BrandReference(brand_id="maker", version=1, name="Maker", trademarks=("Maker",),
                           product_images=(ImageRef("p.jpg"),))
    store = Store({"p.jpg": _jpeg(product), "resized.jpg": _jpeg(cv2.resize(product, (320, 240)), 70),
                   "other.jpg": _jpeg(_photo(8))})
    sig = ImageSignals.build([brand], store, None, extractor=extractor, reader=None, ocr=False)
    resized, other = sig.find([_listing("l1", "resized.jpg"), _listing("l2", "other.jpg")])
    (copy,) = [s for ev in resized for s in ev.signals if s.kind is SignalKind.IMAGE_COPY]
    assert copy.detail["pdq_distance"] is not None and copy.detail["pdq_distance"] <= 31
    assert not [s for ev in other for s in ev.signals if s.kind is SignalKind.IMAGE_COPY]


def _warped_into_photo(seed: int, angle: float, scale: float, centre: tuple[int, int]) -> np.ndarray:
    """The emblem rotated and scaled, pasted (only its own pixels) into a photo."""
    photo = _photo(seed)
    logo = _logo()
    m = cv2.getRotationMatrix2D((128, 128), angle, scale)
    m[:, 2] += np.array(centre) - 128
    h, w = photo.shape[:2]
    warped = cv2.warpAffine(logo, m, (w, h), flags=cv2.INTER_AREA)
    inside = cv2.warpAffine(np.full((256, 256), 255, np.uint8), m, (w, h)) > 128
    photo[inside] = warped[inside]
    return photo


GEO_CASES = [
    # (photo seed, angle, scale, centre, confirmed)
    (11, 20.0, 0.6, (250, 170), True),     # rotated, shrunk
    (12, -35.0, 0.9, (220, 180), True),    # rotated the other way, near full size
    (13, 0.0, 0.35, (120, 100), True),     # small, upright
]


@pytest.mark.parametrize("seed,angle,scale,centre,confirmed", GEO_CASES)
def test_geometric_verification_confirms_a_warped_logo(seed, angle, scale, centre, confirmed):
    from brand_signals.images.image_signals import GEO_ENFORCE_INLIERS
    from brand_signals.images.logo_geometry import LogoGeometryIndex
    index = LogoGeometryIndex.build([("emblem", "logos/emblem.png", _logo())])
    photo = _warped_into_photo(seed, angle, scale, centre)
    photo = cv2.cvtColor(cv2.imdecode(np.frombuffer(_jpeg(photo), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    hits = index.match(photo)
    assert [h.brand_id for h in hits] == ["emblem"]
    assert hits[0].inliers >= GEO_ENFORCE_INLIERS
    x1, y1, x2, y2 = hits[0].box
    assert abs((x1 + x2) / 2 - centre[0]) < 20 and abs((y1 + y2) / 2 - centre[1]) < 20
    for plain_seed in (2, 14, 15):
        assert index.match(_photo(plain_seed)) == []        # a plain photo is not confirmed


def test_reference_views_map_back_to_the_logo_frame():
    """Every rendering (two sizes, both polarities) carries the affine map from the cropped
    logo's pixels, and the index maps keypoints back through its inverse: the logo's corners
    land on the rendering's glyph area and come back where they started."""
    from brand_signals.images.logo_geometry import REF_BORDER, REF_SIDES, reference_views
    from brand_signals.images.logo_geometry import tight_crop
    logo = _logo()
    h, w = tight_crop(logo).shape[:2]
    views = reference_views(logo)
    assert len(views) == 2 * len(REF_SIDES)
    for img, A in views:
        corners = np.float32([[0, 0], [w, h]])
        mapped = corners @ A[:, :2].T + A[:, 2]
        np.testing.assert_allclose(mapped[0], [REF_BORDER, REF_BORDER])
        np.testing.assert_allclose(mapped[1], [img.shape[1] - REF_BORDER, img.shape[0] - REF_BORDER], atol=1e-3)
        back = cv2.invertAffineTransform(A)
        np.testing.assert_allclose(mapped @ back[:, :2].T + back[:, 2], corners, atol=1e-3)
    assert (views[1][0] == 255 - views[0][0]).all()            # the inverted polarity


def test_geometric_logo_flags_on_its_own(extractor):
    from brand_signals.decide import ENFORCE_SCORE
    sig, _ = _signals(extractor, {"a.jpg": _jpeg(_warped_into_photo(11, 20.0, 0.6, (250, 170))),
                                  "b.jpg": _jpeg(_photo(2))})
    found, plain = sig.find([_listing("l1", "a.jpg"), _listing("l2", "b.jpg")])
    (logo,) = [s for ev in found if ev.brand_id == "emblem" for s in ev.signals if s.kind is SignalKind.LOGO]
    assert logo.score >= ENFORCE_SCORE and logo.detail["inliers"] >= 1
    assert plain == []


@pytest.mark.parametrize("params", ["logos", "products"])
def test_geometry_index_neighbours_agree_with_an_exact_search(params):
    """The approximate descriptor index of a LogoGeometryIndex built with each index's
    parameters (logos: an inverted file probing LOGO_IVF_PROBE lists; products: HNSW at their
    efSearch) against faiss IndexFlatL2 on seeded descriptors: the nearest neighbour the ratio
    test relies on is found for nearly every query, and most of the twelve it reads."""
    import faiss
    import numpy as np

    from brand_signals.images.logo_geometry import KNN, LOGO_PARAMS, PRODUCT_PARAMS, LogoGeometryIndex

    prm = LOGO_PARAMS if params == "logos" else PRODUCT_PARAMS
    rng = np.random.default_rng(20261128)
    # clustered like descriptors (a flat uniform cube has no structure for any index to use)
    centres = rng.random((400, 128), dtype=np.float32)
    base = centres[rng.integers(0, len(centres), 40_000)] + rng.normal(0, 0.08, (40_000, 128)).astype(np.float32)
    queries = base[rng.choice(len(base), 500, replace=False)] + rng.normal(0, 0.02, (500, 128)).astype(np.float32)
    index = LogoGeometryIndex([("b", "b.png", (64, 64))], np.zeros(len(base), np.int32),
                              np.zeros((len(base), 2), np.float32), base, prm)
    if params == "logos":
        ivf = faiss.extract_index_ivf(index._index)
        assert ivf.nprobe == prm.ivf_probe and ivf.nlist == 800      # 4 x sqrt(40,000)
    else:
        assert index._index.hnsw.efSearch == prm.ef_search
    exact = faiss.IndexFlatL2(128)
    exact.add(base)
    _, approx_ids = index._index.search(queries, KNN)
    _, exact_ids = exact.search(queries, KNN)
    assert float((approx_ids[:, 0] == exact_ids[:, 0]).mean()) >= 0.95
    assert np.mean([len(set(a) & set(e)) / KNN for a, e in zip(approx_ids, exact_ids)]) >= 0.8


def test_a_small_logo_catalogue_is_searched_exactly():
    """Too few logo descriptors for more lists than are probed: the search is exact (the same
    neighbours as IndexFlatL2); just over that size it is an inverted file."""
    import faiss
    import numpy as np

    from brand_signals.images.logo_geometry import (IVF_LISTS_PER_ROOT, IVF_MIN_TRAIN_PER_LIST, LOGO_PARAMS,
                                                    LogoGeometryIndex)

    rng = np.random.default_rng(7)

    def build(n):
        base = rng.random((n, 128), dtype=np.float32)
        return base, LogoGeometryIndex([("b", "b.png", (64, 64))], np.zeros(n, np.int32),
                                       np.zeros((n, 2), np.float32), base, LOGO_PARAMS)

    small = IVF_MIN_TRAIN_PER_LIST * (LOGO_PARAMS.ivf_probe + 1) - 1      # at most ivf_probe lists
    base, index = build(small)
    assert isinstance(index._index, faiss.IndexFlatL2)
    exact = faiss.IndexFlatL2(128)
    exact.add(base)
    q = base[:50] + 0.01
    assert (index._index.search(q, 12)[1] == exact.search(q, 12)[1]).all()
    assert min(int(IVF_LISTS_PER_ROOT * (small + 1) ** 0.5), (small + 1) // IVF_MIN_TRAIN_PER_LIST) > LOGO_PARAMS.ivf_probe
    assert faiss.extract_index_ivf(build(small + 1)[1]._index).nlist == LOGO_PARAMS.ivf_probe + 1
    assert len(build(0)[1]) == 0


def test_digests_are_only_those_computed_here(extractor):
    """The feedback loop learns images by the digest of the bytes fetched here: a claimed digest
    counts only once this process hashed that uri's bytes to it (a cache hit on a pair verified
    here), never when the bytes say otherwise; a removed listing's image (`verify`) is always
    fetched and hashed again."""
    data, other = _jpeg(_photo(3)), _jpeg(_photo(4))
    digest, other_digest = hashlib.sha256(data).hexdigest(), hashlib.sha256(other).hexdigest()
    sig, store = _signals(extractor, {"a.jpg": data, "b.jpg": other})
    sig.find([_listing("l1", "a.jpg")])
    assert sig.last_digests == [frozenset({digest})]
    fetched = store.calls
    sig.find([_listing("l2", "a.jpg", sha={"a.jpg": digest})])             # the claim is checked by fetching
    assert store.calls == fetched + 1 and sig.last_digests == [frozenset({digest})]
    fetched = store.calls
    sig.find([_listing("l2", "a.jpg", sha={"a.jpg": digest})])             # a pair verified here: cached
    assert store.calls == fetched and sig.last_digests == [frozenset({digest})]
    sig.verify = lambda sha: sha == digest
    sig.find([_listing("l3", "a.jpg", sha={"a.jpg": digest}), _listing("l4", "b.jpg", sha={"b.jpg": digest})])
    assert store.calls == fetched + 2                                       # verified claims are fetched again
    assert sig.last_digests == [frozenset({digest}), frozenset({other_digest})]  # b's lie is not learned
    sig.close()


def test_cached_outcomes_survive_a_brand_update_that_keeps_its_images(extractor):
    """The per-image results depend on the catalogue's images, not on brand versions: an owner
    editing marks or policy keeps every cached result; a new logo does not."""
    def fp(brand):
        store = Store({"logos/emblem.png": _png(_logo()), "logos/other.png": _png(255 - _logo())})
        return ImageSignals.build([brand], store, "/base", extractor=extractor, reader=None, ocr=False)._fingerprint

    base = dataclasses.replace(BRAND, product_images=())
    edited = dataclasses.replace(base, version=base.version + 1, trademarks=base.trademarks + ("Zorblat",))
    relogo = dataclasses.replace(edited, version=edited.version + 1,
                                 logos=base.logos + (ImageRef("logos/other.png"),))
    assert fp(base) == fp(edited) != fp(relogo)
