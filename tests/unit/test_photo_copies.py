"""Edited copies of official product photos, verified geometrically (RootSIFT + RANSAC against
the whole photo and its mirror image): crops, pads, rotations, flips, copies framed small in a
screenshot and overlays are found for the photo's brand; other photos, copies too small to be
evidence and transforms that fold the photo are not. Images are made here."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from brand_signals.images.image_signals import (
    COPY_GEO_ENFORCE_INLIERS,
    COPY_GEO_ENFORCE_SCORE,
    COPY_GEO_REVIEW_INLIERS,
    COPY_GEO_REVIEW_SCORE,
    ImageOutcome,
    ImageSignals,
    copy_geo_score,
)
from brand_signals.images.logo_geometry import (
    PRODUCT_PARAMS,
    PRODUCT_REF_SIDE,
    LogoGeometryIndex,
    _plausible,
    product_reference_features,
)
from brand_signals.records import BrandReference, ImageRef, Listing, SignalKind
from models.embedder import FeatureExtractor

pytestmark = pytest.mark.unit


def product(seed: int, h: int = 360, w: int = 480) -> np.ndarray:
    """A packshot-like photo: a textured box with printed shapes and lettering on a plain
    background (sharp corners, as product packaging has)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 235, np.uint8)
    x1, y1 = int(rng.integers(10, w // 5)), int(rng.integers(10, h // 5))
    x2, y2 = w - int(rng.integers(10, w // 5)), h - int(rng.integers(10, h // 5))
    cv2.rectangle(img, (x1, y1), (x2, y2), tuple(int(c) for c in rng.integers(60, 200, 3)), -1)
    for _ in range(14):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        px, py = int(rng.integers(x1, x2)), int(rng.integers(y1, y2))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, (px, py), (px + int(rng.integers(10, 60)), py + int(rng.integers(10, 60))), c, -1)
        elif kind == 1:
            cv2.circle(img, (px, py), int(rng.integers(6, 30)), c, -1)
        else:
            pts = rng.integers(-35, 35, (5, 2)) + [px, py]
            cv2.fillPoly(img, [pts.astype(np.int32)], c)
    for i in range(4):
        word = "".join(chr(int(v)) for v in rng.integers(65, 91, 6))
        cv2.putText(img, word, (x1 + int(rng.integers(0, 60)), y1 + 30 + int(rng.integers(0, y2 - y1 - 30))),
                    cv2.FONT_HERSHEY_DUPLEX, float(rng.uniform(0.6, 1.2)),
                    tuple(int(v) for v in rng.integers(0, 255, 3)), 2, cv2.LINE_AA)
    return img


def jpeg(rgb: np.ndarray, q: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return buf.tobytes()


def reencoded(rgb: np.ndarray, q: int = 85) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg(rgb, q), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def crop(rgb):
    h, w = rgb.shape[:2]
    return rgb[int(h * 0.2):int(h * 0.85), int(w * 0.1):int(w * 0.7)].copy()


def pad(rgb):
    return cv2.copyMakeBorder(rgb, 120, 90, 160, 60, cv2.BORDER_CONSTANT, value=(20, 160, 90))


def rotate(rgb, angle=30.0):
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 0.8)
    return cv2.warpAffine(rgb, m, (w, h), borderValue=(255, 255, 255))


def hflip(rgb):
    return rgb[:, ::-1].copy()


def screenshot(rgb, side=0.45):
    """The photo shown small inside a page: a grey frame with bars and text around it."""
    page = np.full((900, 700, 3), 245, np.uint8)
    cv2.rectangle(page, (0, 0), (700, 70), (60, 90, 200), -1)
    cv2.putText(page, "marketplace", (20, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
    for i in range(6):
        cv2.putText(page, "lorem ipsum dolor", (30, 640 + 40 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (40, 40, 40), 1)
    w = int(700 * side)
    small = cv2.resize(rgb, (w, int(w * rgb.shape[0] / rgb.shape[1])), interpolation=cv2.INTER_AREA)
    page[150:150 + small.shape[0], 100:100 + w] = small
    return page


def meme(rgb):
    h, w = rgb.shape[:2]
    out = np.full((h + 120, w, 3), 255, np.uint8)
    cv2.putText(out, "WHEN YOU SEE IT", (20, 80), cv2.FONT_HERSHEY_DUPLEX, 1.3, (0, 0, 0), 3)
    out[120:] = rgb
    return out


def overlays(rgb):
    out = rgb.copy()
    h, w = out.shape[:2]
    cv2.circle(out, (w // 3, h // 2), h // 6, (255, 210, 0), -1)             # an emoji-sized disc
    cv2.putText(out, "SALE 50%", (w // 10, int(h * 0.8)), cv2.FONT_HERSHEY_DUPLEX, 1.4, (230, 20, 20), 3)
    return out


EDITS = {"crop": crop, "pad": pad, "rotate": rotate, "hflip": hflip, "screenshot": screenshot,
         "meme": meme, "overlays": overlays, "crop_flip": lambda r: hflip(crop(r))}


@pytest.fixture(scope="module")
def index():
    return LogoGeometryIndex.build_products([("maker", "p/a.jpg", product(1)), ("maker", "p/b.jpg", product(2)),
                                             ("rival", "p/c.jpg", product(3))])


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_copy_is_verified_for_its_brand(index, edit):
    hits = index.match(reencoded(EDITS[edit](product(1))))
    assert hits and hits[0].brand_id == "maker" and hits[0].logo_uri == "p/a.jpg", hits
    assert hits[0].inliers >= COPY_GEO_ENFORCE_INLIERS
    assert all(h.brand_id == "maker" or h.inliers < COPY_GEO_REVIEW_INLIERS for h in hits)


@pytest.mark.parametrize("edit", ["identity", "crop", "hflip", "screenshot"])
def test_other_products_are_not_verified(index, edit):
    """Photos of products that are not enrolled (same generator, other seeds), edited alike."""
    for seed in (11, 12, 13):
        photo = product(seed)
        photo = photo if edit == "identity" else EDITS[edit](photo)
        assert [h for h in index.match(reencoded(photo)) if h.inliers >= COPY_GEO_REVIEW_INLIERS] == []


def test_another_brands_photo_is_given_to_that_brand():
    index = LogoGeometryIndex.build_products([("maker", "p/a.jpg", product(1)), ("rival", "p/c.jpg", product(3))])
    hits = index.match(reencoded(crop(product(3))))
    assert [h.brand_id for h in hits if h.inliers >= COPY_GEO_REVIEW_INLIERS] == ["rival"]


def test_mirrored_view_maps_back_to_the_photo_frame():
    """Both views' keypoints are in the photo's own pixels: a keypoint of the mirrored view at
    x lies where the plain view sees the mirrored point w - 1 - x (same y), up to SIFT's
    sub-pixel noise; and the views are kept as two references of one photo."""
    photo = product(5)
    h, w = photo.shape[:2]
    (wh1, plain), (wh2, mirrored) = product_reference_features(photo)
    assert wh1 == wh2 == (w, h)
    (p, d), = plain
    (pm, dm), = mirrored
    assert len(p) and len(pm) and d.shape[1] == dm.shape[1] == 128
    assert (p[:, 0] >= -1).all() and (p[:, 0] <= w).all() and (pm[:, 0] >= -1).all() and (pm[:, 0] <= w).all()
    # the mirrored view of the mirrored photo is the plain view of the photo, mirrored back
    (_, flipped_plain), _ = product_reference_features(photo[:, ::-1].copy())
    (pf, _), = flipped_plain
    ref = {(round(float(x)), round(float(y))) for x, y in pm}
    back = {(round(w - 1 - float(x)), round(float(y))) for x, y in pf}
    near = sum(1 for x, y in back if any((x + dx, y + dy) in ref for dx in (-1, 0, 1) for dy in (-1, 0, 1)))
    assert near >= 0.8 * len(back)
    assert PRODUCT_REF_SIDE == max(round(w * PRODUCT_REF_SIDE / max(w, h)), round(h * PRODUCT_REF_SIDE / max(w, h)))


def test_product_transforms_accept_crops_and_reject_tiny_or_folded_copies():
    rw, rh, qhw = 480, 360, (360, 480)
    scale = lambda k: np.float32([[k, 0, 0], [0, k, 0], [0, 0, 1]])  # noqa: E731
    assert _plausible(scale(2.0), rw, rh, qhw, PRODUCT_PARAMS)          # a crop: 4x the photo's area
    assert not _plausible(scale(2.0), rw, rh, qhw)                     # logos: at most 1.5x
    assert not _plausible(scale(5.0), rw, rh, qhw, PRODUCT_PARAMS)      # 25x: beyond any crop kept
    assert _plausible(scale(0.2), rw, rh, qhw, PRODUCT_PARAMS)          # framed small: 4 % of the photo
    assert not _plausible(scale(0.05), rw, rh, qhw, PRODUCT_PARAMS)     # 0.25 %: no evidence
    mirror = np.float32([[-1, 0, rw], [0, 1, 0], [0, 0, 1]])
    assert _plausible(mirror, rw, rh, qhw, PRODUCT_PARAMS)              # a flipped copy
    squash = np.float32([[1, 0, 0], [0, 0.1, 0], [0, 0, 1]])
    assert not _plausible(squash, rw, rh, qhw, PRODUCT_PARAMS)          # anisotropy 10
    fold = np.float32([[1, 0, 0], [0, 1, 0], [-0.003, 0, 1]])          # the right edge folds over
    assert not _plausible(fold, rw, rh, qhw, PRODUCT_PARAMS)


def test_copy_geo_score_thresholds():
    assert copy_geo_score(COPY_GEO_ENFORCE_INLIERS) == COPY_GEO_ENFORCE_SCORE
    assert copy_geo_score(COPY_GEO_ENFORCE_INLIERS - 1) == COPY_GEO_REVIEW_SCORE
    assert copy_geo_score(COPY_GEO_REVIEW_INLIERS) == COPY_GEO_REVIEW_SCORE
    assert copy_geo_score(COPY_GEO_REVIEW_INLIERS - 1) == 0.0
    assert copy_geo_score(0) == 0.0


def test_shared_query_gives_the_same_hits(index):
    photo = reencoded(rotate(product(2), -20))
    logos = LogoGeometryIndex.build([])
    assert index.match(photo, logos.query(photo)) == index.match(photo)


def test_outcome_round_trip_and_older_records():
    out = ImageOutcome(copy_geo=(("maker", "p/a.jpg", 40, (1, 2, 3, 4)),))
    assert ImageOutcome.from_bytes(out.to_bytes()) == out
    old = b'{"l":[],"c":[],"t":[],"e":null,"g":[]}'                      # written before copy_geo
    assert ImageOutcome.from_bytes(old) == ImageOutcome()


# -- through ImageSignals --------------------------------------------------------------------

class Store:
    def __init__(self, files):
        self.files = files

    def __call__(self, uri, base_dir, sha256):
        if uri not in self.files:
            raise OSError(uri)
        return self.files[uri]


BRANDS = [BrandReference(brand_id="maker", version=1, name="Maker", trademarks=("Maker",),
                         product_images=(ImageRef("p/a.jpg"),)),
          BrandReference(brand_id="rival", version=1, name="Rival", trademarks=("Rival",),
                         product_images=(ImageRef("p/c.jpg"),))]


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(threads=1)


def _listing(lid, uri):
    return Listing(listing_id=lid, seller_id="s-1", event_time_ms=0, title="Item", images=(ImageRef(uri),))


def _copies(evidence):
    return {ev.brand_id: s for ev in evidence for s in ev.signals if s.kind is SignalKind.IMAGE_COPY}


def test_signals_flag_a_flipped_crop_and_not_another_photo(extractor):
    from brand_signals.decide import ENFORCE_SCORE
    store = Store({"p/a.jpg": jpeg(product(1)), "p/c.jpg": jpeg(product(3)),
                   "x.jpg": jpeg(hflip(crop(product(1)))), "y.jpg": jpeg(screenshot(product(3))),
                   "z.jpg": jpeg(product(12))})
    sig = ImageSignals.build(BRANDS, store, None, extractor=extractor, reader=None, ocr=False)
    x, y, z = sig.find([_listing("l1", "x.jpg"), _listing("l2", "y.jpg"), _listing("l3", "z.jpg")])
    (brand, s), = _copies(x).items()
    assert brand == "maker" and s.score >= ENFORCE_SCORE
    assert s.detail["inliers"] >= COPY_GEO_ENFORCE_INLIERS and s.detail["geo_product_image_uri"] == "p/a.jpg"
    assert s.detail["product_image_uri"] == "p/a.jpg" and len(s.detail["geo_box"]) == 4
    assert set(_copies(y)) == {"rival"}
    assert _copies(z) == {}


def test_copy_geometry_off_and_catalogues_without_product_photos(extractor):
    store = Store({"p/a.jpg": jpeg(product(1)), "p/c.jpg": jpeg(product(3)), "x.jpg": jpeg(hflip(crop(product(1))))})
    off = ImageSignals.build(BRANDS, store, None, extractor=extractor, reader=None, ocr=False, copy_geometry=False)
    assert off.copy_geometry is None
    assert all("inliers" not in s.detail for s in _copies(off.find([_listing("l1", "x.jpg")])[0]).values())
    none = ImageSignals.build([BrandReference(brand_id="plain", version=1, name="Plain", trademarks=("Plain",))],
                              store, None, extractor=extractor, reader=None, ocr=False)
    assert none.copy_geometry is None


def test_product_index_caps_photos_per_brand(extractor, monkeypatch):
    """Over the per-brand cap, a brand's later photos are left out of the geometric index (still
    hashed and embedded); within it, every photo is verified."""
    from brand_signals.images import image_signals
    brand = BrandReference(brand_id="maker", version=1, name="Maker", trademarks=("Maker",),
                           product_images=(ImageRef("p/a.jpg"), ImageRef("p/b.jpg")))
    store = Store({"p/a.jpg": jpeg(product(1)), "p/b.jpg": jpeg(product(2)),
                   "x.jpg": jpeg(hflip(crop(product(1)))), "y.jpg": jpeg(hflip(crop(product(2))))})
    listings = [_listing("l1", "x.jpg"), _listing("l2", "y.jpg")]
    full = ImageSignals.build([brand], store, None, extractor=extractor, reader=None, ocr=False)
    assert full.copy_geometry_left_out == 0
    assert all("inliers" in _copies(ev)["maker"].detail for ev in full.find(listings))
    monkeypatch.setattr(image_signals, "COPY_GEOMETRY_MAX_PHOTOS_PER_BRAND", 1)
    capped = ImageSignals.build([brand], store, None, extractor=extractor, reader=None, ocr=False)
    assert capped.copy_geometry_left_out == 1
    x, y = capped.find(listings)
    assert _copies(x)["maker"].detail["geo_product_image_uri"] == "p/a.jpg"
    assert "inliers" not in _copies(y).get("maker", type("S", (), {"detail": {}})).detail


def test_rebuild_reuses_the_product_index_only_while_its_photos_are_unchanged(extractor):
    from brand_signals.images.image_signals import ReferenceCache
    refs = ReferenceCache()
    store = Store({"p/a.jpg": jpeg(product(1)), "p/c.jpg": jpeg(product(3))})
    kw = dict(extractor=extractor, reader=None, ocr=False, references=refs)
    first = ImageSignals.build(BRANDS, store, None, **kw)
    again = ImageSignals.build(BRANDS, store, None, **kw)
    assert again.copy_geometry is first.copy_geometry                 # nothing changed: not rebuilt
    store.files["p/c.jpg"] = jpeg(product(4))                          # one photo's bytes changed
    changed = ImageSignals.build(BRANDS, store, None, **kw)
    assert changed.copy_geometry is not first.copy_geometry
    store.files["x.jpg"] = jpeg(crop(product(4)))
    assert set(_copies(changed.find([_listing("l1", "x.jpg")])[0])) == {"rival"}
    ImageSignals.build(BRANDS, store, None, copy_geometry=False, **kw)
    assert refs.copy_index is None                                     # not held when not used


def _counting_fits(monkeypatch):
    calls = []
    real = LogoGeometryIndex._verify

    def verify(self, r, pairs, *a):
        calls.append(len(pairs))
        return real(self, r, pairs, *a)

    monkeypatch.setattr(LogoGeometryIndex, "_verify", verify)
    return calls


@pytest.mark.parametrize("edit", ["crop", "hflip", "screenshot"])
def test_min_inliers_keeps_every_wanted_hit(index, edit):
    """Cascade rule, positive case: with min_inliers the hits at or over it are exactly those
    found fitting every candidate (a copy is still verified)."""
    photo = reencoded(EDITS[edit](product(1)))
    wanted = [h for h in index.match(photo) if h.inliers >= COPY_GEO_REVIEW_INLIERS]
    assert wanted and index.match(photo, min_inliers=COPY_GEO_REVIEW_INLIERS) == wanted


def test_min_inliers_skips_fits_that_cannot_reach_it(index, monkeypatch):
    """Cascade rule, negative case: candidates whose matches hold fewer distinct locations than
    min_inliers are not fitted, and give no hit."""
    calls = _counting_fits(monkeypatch)
    photo = reencoded(crop(product(1)))
    assert index.match(photo) and calls                        # fitted without a floor
    calls.clear()
    assert index.match(photo, min_inliers=10_000) == [] and calls == []
    # matches repeating one photo location bound the inliers by 1 whatever their count
    pts = np.float32([[5, 5], [5.2, 4.9], [4.8, 5.1], [5, 5], [5.1, 5]])
    assert index.inlier_bound({i: i for i in range(5)}, pts) == 1
