"""Geometric verification by local features: RootSIFT features of every enrolled logo (and,
in a second index, of every official product photo) are computed once at build time and kept
in a FAISS index; a listing photo's features are computed once (`query`), searched in each
index, matches that pass a ratio test against the nearest *other* brand are grouped by
reference file, and the few best-supported references are verified with RANSAC. A reference
counts as found only when a non-degenerate transform explains enough matches.

Product photos (`product_reference_features`, `PRODUCT_PARAMS`) differ from logos in what a
listing does to them: the whole photo is the reference (no tight crop, one polarity), a
mirrored view is kept beside it (SIFT is not mirror-invariant: a flipped copy), and a copy may
be cropped, so the reference may map to several times the listing photo's area.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import faiss
import numpy as np


# Reference renderings: the tight-cropped logo with its longest side at each of these sizes
# (SIFT's pyramid covers the scales in between), as luminance and inverted luminance (a logo
# printed light-on-dark when only the dark-on-light file is enrolled). A border of the
# background colour keeps keypoints near the glyph's edge. FlickrLogos logos are 20-300 px.
REF_SIDES = (256, 128)
REF_BORDER = 16
# Not done: affine-simulated views (ASIFT: the rendering squeezed 1.6x along x and along y, as
# a logo seen ~50 degrees off-axis). On the dev logo photos, geometric hits alone at >= 6
# inliers, they gave recall 0.214 either way, 8 false positives instead of 5, and +15 ms.
# Strongest keypoints kept per rendering: 246 dev reference files x 4 renderings x 200 =
# ~150 k descriptors (77 MB float32); more adds build time and search cost, not inliers.
REF_MAX_FEATURES = 200
# Listing photos are scaled so their longest side is at most this before SIFT (dev photos
# are <= 640 px already); strongest keypoints kept per photo.
QUERY_MAX_SIDE = 640
QUERY_MAX_FEATURES = 3000
# Neighbours fetched per photo descriptor: enough to reach a second brand past one brand's
# own near-duplicate renderings (2 sides x 2 polarities x 2 files).
KNN = 12
# Reference descriptors live in an approximate index: exact search over ~50 k descriptors cost
# 270 ms per photo on one thread, HNSW (M 32, efSearch 64) ~26 ms; efSearch 32 found the same
# hits on the dev logo photos (recall 0.214, 5 false positives at >= 6 inliers) in 50 ms
# per photo for the whole match instead of 65. Product photos keep that graph (HNSW_M,
# PRODUCT_HNSW_EF_SEARCH below).
HNSW_M = 32
HNSW_EF_SEARCH = 32
# Logo descriptors are searched in an inverted file instead (faiss IndexIVFFlat: the
# descriptors k-means clustered into IVF_LISTS_PER_ROOT x sqrt(n) lists, LOGO_IVF_PROBE nearest
# lists scanned per query, contiguous rows compared in SIMD where the graph hops one random row
# at a time). Over the 96 bench photos' descriptors against the dev catalogue's 45,264 logo
# descriptors, one thread, side by side with the graph (efSearch 32: 29-31 ms per photo, top-12
# recall 0.940, top-1 0.948): 851 lists probing 16 / 20 / 24: 15.9 / 17.7 / 19.8 ms, recall
# 0.920 / 0.940 / 0.953, top-1 0.938 / 0.954 / 0.964. The same search on the 200,248 product
# descriptors was not faster than their graph at its recall (efSearch 16: 41.9 ms, 0.919; 1,789
# lists probing 16: 39.5 ms, 0.882), so products stay on HNSW.
# A list needs IVF_MIN_TRAIN_PER_LIST training rows (faiss's own warning floor); where that
# leaves no more lists than are probed, the search is exact (IndexFlatL2: a small catalogue).
IVF_LISTS_PER_ROOT = 4
IVF_MIN_TRAIN_PER_LIST = 39
LOGO_IVF_PROBE = 24
IVF_SEED = 20261207
# Lowe's ratio, nearest reference of the matched brand vs nearest of any other brand. Dev
# logos (benchmarks/eval_logos_offline.py), geometric hits alone at >= 6 inliers: ratio 0.8,
# 1500 photo keypoints, 5 candidates, >= 6 matches: recall 0.183 at precision 0.980; the
# values here: recall 0.215 at precision 0.978 (+35 ms per photo). Lowe 2004 uses 0.8.
RATIO = 0.9
# References verified per photo (most ratio-test matches first), and the least matches a
# reference needs to be tried at all (a homography needs 4).
TOP_CANDIDATES = 8
MIN_MATCHES = 5
# RANSAC reprojection threshold in photo pixels (photo at <= QUERY_MAX_SIDE).
RANSAC_PX = 6.0
# Degenerate transforms rejected: the reference's area mapped into the photo must be between
# these fractions of the reference's (at REF_SIDES[0]) and the photo's area, the mapping's
# singular values within MAX_ANISOTROPY of each other (strong shear/squash), and the mapped
# outline convex.
MIN_AREA_FRACTION_OF_PHOTO = 0.0005   # ~ 13 x 13 px on a 640 x 480 photo
MAX_AREA_FRACTION_OF_PHOTO = 1.5
MAX_ANISOTROPY = 4.0


def glyph_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels that differ from the rendering's background colour (its corners' median)."""
    corners = np.concatenate([rgb[:2, :2].reshape(-1, 3), rgb[:2, -2:].reshape(-1, 3),
                              rgb[-2:, :2].reshape(-1, 3), rgb[-2:, -2:].reshape(-1, 3)])
    bg = np.median(corners, axis=0)
    return np.abs(rgb.astype(np.int16) - bg.astype(np.int16)).max(axis=2) > 40


def tight_crop(rgb: np.ndarray, margin: float = 0.08) -> np.ndarray:
    mask = glyph_mask(rgb)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return rgb
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    m = int(margin * max(x2 - x1, y2 - y1))
    h, w = mask.shape
    return rgb[max(0, y1 - m):min(h, y2 + m), max(0, x1 - m):min(w, x2 + m)]


@dataclass(frozen=True, slots=True)
class GeometryParams:
    """What an index's matching and verification accept (module constants: logos)."""

    ratio: float = RATIO
    top_candidates: int = TOP_CANDIDATES
    min_matches: int = MIN_MATCHES
    ransac_px: float = RANSAC_PX
    min_area_fraction: float = MIN_AREA_FRACTION_OF_PHOTO
    max_area_fraction: float = MAX_AREA_FRACTION_OF_PHOTO
    max_anisotropy: float = MAX_ANISOTROPY
    ef_search: int = HNSW_EF_SEARCH        # the HNSW graph's, where ivf_probe is 0
    ivf_probe: int = 0                     # > 0: an inverted file probing this many lists


LOGO_PARAMS = GeometryParams(ivf_probe=LOGO_IVF_PROBE)
# Official product photos: the whole photo at this longest side, strongest keypoints kept per
# view (plain and mirrored): 2 x 500 descriptors per photo (~0.8 MB in the HNSW index).
PRODUCT_REF_SIDE = 512
PRODUCT_REF_MAX_FEATURES = 500
# A product copy may be cropped to a quarter of the photo's area (the reference then maps to 4x
# the listing photo; 16x allows a crop to a quarter of each side) and framed small in a
# screenshot (1 %: a 64 x 48 px copy on a 640 x 480 screenshot is no evidence anyway).
# Their index is searched with efSearch 16 (logos keep 32): over the product photo copies
# (benchmarks/eval_photo_copies.py, 1,965 listings) recall 0.995 either way, distractors flagged
# 2 -> 3 of 960 (at 24 also 3), and the search of a photo's descriptors among ~200 k of 254 dev
# photos 58 -> 36 ms; on the dev logo index 16 changed 4 of 486 decisions (3 lost), so logos stay at 32.
PRODUCT_HNSW_EF_SEARCH = 16
PRODUCT_PARAMS = GeometryParams(min_area_fraction=0.01, max_area_fraction=16.0, ef_search=PRODUCT_HNSW_EF_SEARCH)


@dataclass(frozen=True, slots=True)
class GeoHit:
    brand_id: str
    logo_uri: str
    inliers: int                       # distinct photo keypoints explained by the transform
    box: tuple[int, int, int, int]     # the reference outline's bounding box in photo pixels


def rootsift(desc: np.ndarray) -> np.ndarray:
    """Hellinger-kernel SIFT (Arandjelovic & Zisserman 2012): L1-normalise, square root."""
    d = desc.astype(np.float32)
    d /= np.maximum(d.sum(1, keepdims=True), 1e-7)
    return np.sqrt(d)


def descriptor_index(desc: np.ndarray, params: GeometryParams) -> faiss.Index:
    """The searchable index of reference descriptors (float32, n x 128) that `params` asks for:
    an HNSW graph (ivf_probe 0), else an inverted file trained on the descriptors themselves
    (seeded: the same catalogue gives the same lists), exact where the catalogue is too small
    for more lists than are probed."""
    n = len(desc)
    if not params.ivf_probe:
        index = faiss.IndexHNSWFlat(128, HNSW_M)
        index.hnsw.efSearch = params.ef_search
    else:
        lists = min(int(IVF_LISTS_PER_ROOT * n ** 0.5), n // IVF_MIN_TRAIN_PER_LIST)
        if lists <= params.ivf_probe:
            index = faiss.IndexFlatL2(128)
        else:
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(128), 128, lists)   # keeps its quantizer
            index.cp.seed = IVF_SEED
            index.train(desc)
            index.nprobe = params.ivf_probe
    if n:
        index.add(desc)
    return index


def _sift(nfeatures: int) -> cv2.SIFT:
    return cv2.SIFT_create(nfeatures=nfeatures)


def _features(grey: np.ndarray, sift: cv2.SIFT) -> tuple[np.ndarray, np.ndarray]:
    kps, desc = sift.detectAndCompute(grey, None)
    if desc is None or not kps:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
    return np.float32([k.pt for k in kps]), rootsift(desc)


def reference_views(rgb: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(grey rendering, 2 x 3 affine map from the tight crop's pixels to the rendering's)."""
    logo = tight_crop(rgb)
    grey = cv2.cvtColor(logo, cv2.COLOR_RGB2GRAY)
    corners = np.concatenate([grey[:2, :2].ravel(), grey[-2:, -2:].ravel()])
    bg = int(np.median(corners))
    h, w = grey.shape
    out = []
    for side in REF_SIDES:
        s = side / max(h, w)
        img = cv2.resize(grey, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        img = cv2.copyMakeBorder(img, REF_BORDER, REF_BORDER, REF_BORDER, REF_BORDER, cv2.BORDER_CONSTANT, value=bg)
        # exact per-axis scale after rounding, then the border's offset
        A = np.float32([[(img.shape[1] - 2 * REF_BORDER) / w, 0, REF_BORDER],
                        [0, (img.shape[0] - 2 * REF_BORDER) / h, REF_BORDER]])
        out.append((img, A))
        out.append((255 - img, A))
    return out


# (w, h) of the logo's tight crop, then per rendering (points in the crop's frame, descriptors)
RefFeatures = tuple[tuple[int, int], tuple[tuple[np.ndarray, np.ndarray], ...]]


def reference_features(rgb: np.ndarray) -> RefFeatures:
    """What the index keeps of one logo image: RootSIFT keypoints of every rendering, mapped
    back to the tight crop's pixels."""
    sift = _sift(REF_MAX_FEATURES)
    crop = tight_crop(rgb)
    views = []
    for img, A in reference_views(rgb):
        p, d = _features(img, sift)
        if not len(d):
            continue
        back = cv2.invertAffineTransform(A)    # to the crop's own pixel frame
        views.append((p @ back[:, :2].T + back[:, 2], d))
    return (crop.shape[1], crop.shape[0]), tuple(views)


def product_reference_features(rgb: np.ndarray) -> tuple[RefFeatures, RefFeatures]:
    """What the product index keeps of one official photo: RootSIFT keypoints of the whole photo
    at PRODUCT_REF_SIDE, as it is and mirrored left to right, both in the photo's own pixel frame
    (the mirrored view's transform to a flipped copy then includes the reflection). Two entries,
    so a flipped copy's matches are verified apart from the plain ones."""
    sift = _sift(PRODUCT_REF_MAX_FEATURES)
    h, w = rgb.shape[:2]
    s = PRODUCT_REF_SIDE / max(h, w)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    img = cv2.resize(grey, (max(1, round(w * s)), max(1, round(h * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    sx, sy = img.shape[1] / w, img.shape[0] / h
    out = []
    for mirrored in (False, True):
        p, d = _features(cv2.flip(img, 1) if mirrored else img, sift)
        if mirrored and len(p):
            p = np.float32(np.c_[img.shape[1] - 1 - p[:, 0], p[:, 1]])
        back = (p / np.float32([sx, sy])) if len(p) else p
        out.append(((w, h), ((back, d),) if len(d) else ()))
    return out[0], out[1]


@dataclass(frozen=True, slots=True)
class Query:
    """A listing photo's local features, computed once and searched in every index."""

    points: np.ndarray                 # keypoints in the analysed (reduced) photo's pixels
    descriptors: np.ndarray            # RootSIFT
    hw: tuple[int, int]                # the analysed photo's height, width
    scale: float                       # analysed pixels per source pixel (<= 1)


class LogoGeometryIndex:
    """Immutable once built; `match` is pure given a photo. `params` says what it accepts
    (LOGO_PARAMS for logos, PRODUCT_PARAMS for official product photos)."""

    def __init__(self, refs: Sequence[tuple[str, str, tuple[int, int]]], ref_of: np.ndarray,
                 points: np.ndarray, descriptors: np.ndarray, params: GeometryParams = LOGO_PARAMS):
        self.params = params
        if not (len(ref_of) == len(points) == len(descriptors)):
            raise ValueError(f"{len(ref_of)} ref ids, {len(points)} points, {len(descriptors)} descriptors")
        self._refs = tuple(refs)                       # (brand_id, uri, (w, h) of the crop frame)
        self._ref_of = np.asarray(ref_of, np.int32)
        brands = sorted({b for b, _, _ in self._refs})
        bid = {b: i for i, b in enumerate(brands)}
        self._brand_of = np.int32([bid[self._refs[r][0]] for r in self._ref_of]) if len(ref_of) else np.zeros(0, np.int32)
        self._points = np.asarray(points, np.float32)
        self._index = descriptor_index(np.ascontiguousarray(descriptors, np.float32), params)
        self._sift = _sift(QUERY_MAX_FEATURES)

    @classmethod
    def build(cls, logos: Sequence[tuple[str, str, np.ndarray]]) -> "LogoGeometryIndex":
        """`logos`: (brand_id, logo uri, RGB image) for every enrolled logo file."""
        return cls.from_features([(brand_id, uri, reference_features(rgb)) for brand_id, uri, rgb in logos])

    @classmethod
    def build_products(cls, photos: Sequence[tuple[str, str, np.ndarray]]) -> "LogoGeometryIndex":
        """`photos`: (brand_id, product image uri, RGB image) for every official product photo."""
        return cls.from_features([(b, uri, f) for b, uri, rgb in photos for f in product_reference_features(rgb)],
                                 PRODUCT_PARAMS)

    @classmethod
    def from_features(cls, logos: Sequence[tuple[str, str, "RefFeatures"]],
                      params: GeometryParams = LOGO_PARAMS) -> "LogoGeometryIndex":
        """`logos`: (brand_id, logo uri, reference_features of its image), e.g. kept from an
        earlier build (they depend on the image alone)."""
        refs, ref_of, pts, descs = [], [], [], []
        for brand_id, uri, (crop_wh, views) in logos:
            r = len(refs)
            refs.append((brand_id, uri, crop_wh))
            for p, d in views:
                pts.append(p)
                descs.append(d)
                ref_of.append(np.full(len(d), r, np.int32))
        if not descs:
            return cls(refs, np.zeros(0, np.int32), np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32),
                       params)
        return cls(refs, np.concatenate(ref_of), np.concatenate(pts), np.concatenate(descs), params)

    def __len__(self) -> int:
        return self._index.ntotal

    def query(self, rgb: np.ndarray) -> Query:
        """The photo's local features as every index searches them (same for any index)."""
        h, w = rgb.shape[:2]
        scale = min(1.0, QUERY_MAX_SIDE / max(h, w))
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        qpts, qdesc = _features(grey, self._sift)
        return Query(qpts, qdesc, (grey.shape[0], grey.shape[1]), scale)

    def match(self, rgb: np.ndarray, query: Query | None = None, min_inliers: int = 0) -> list[GeoHit]:
        """Geometrically verified references in one photo, best reference per brand, most
        inliers first. `query`: the photo's features when already computed. `min_inliers`: only
        hits with at least that many inliers are returned, and a candidate whose matches cannot
        give that many (fewer distinct photo or reference locations, `inlier_bound`) is not
        fitted: the hits at or over it are those found with 0, for fewer RANSAC fits."""
        if not self._index.ntotal:
            return []
        prm = self.params
        q = query if query is not None else self.query(rgb)
        qpts, qdesc = q.points, q.descriptors
        if len(qdesc) < prm.min_matches:
            return []
        k = min(KNN, self._index.ntotal)
        dist, rows = self._index.search(qdesc, k)
        dist = np.sqrt(np.maximum(dist, 0))
        brand = self._brand_of[rows]
        other = brand != brand[:, :1]
        # distance to the nearest neighbour of another brand (k-th when all k are one brand)
        first_other = np.where(other.any(1), other.argmax(1), k - 1)
        d2 = dist[np.arange(len(dist)), first_other]
        good = dist[:, 0] < prm.ratio * d2
        groups: dict[int, dict[int, int]] = {}        # ref -> photo kp -> reference row
        for qi in np.nonzero(good)[0]:
            for j in range(k):
                if brand[qi, j] != brand[qi, 0] or dist[qi, j] >= prm.ratio * d2[qi]:
                    continue
                g = groups.setdefault(int(self._ref_of[rows[qi, j]]), {})
                g.setdefault(int(qi), int(rows[qi, j]))   # nearest row of that reference
        cands = sorted((r for r, g in groups.items() if len(g) >= prm.min_matches), key=lambda r: -len(groups[r]))
        best: dict[str, GeoHit] = {}
        for r in cands[:prm.top_candidates]:
            if min_inliers and self.inlier_bound(groups[r], qpts) < min_inliers:
                continue
            hit = self._verify(r, groups[r], qpts, q.hw, q.scale)
            if hit is not None and (hit.brand_id not in best or hit.inliers > best[hit.brand_id].inliers):
                best[hit.brand_id] = hit
        return sorted((h for h in best.values() if h.inliers >= min_inliers), key=lambda x: -x.inliers)

    def inlier_bound(self, pairs: dict[int, int], qpts: np.ndarray) -> int:
        """The most inliers `_verify` can count for these matches (photo kp -> reference row):
        it counts distinct rounded locations on both sides, so their numbers here bound it."""
        if len(pairs) < 2:
            return len(pairs)
        q = np.rint(qpts[np.fromiter(pairs.keys(), np.int64)])
        r = np.rint(self._points[np.fromiter(pairs.values(), np.int64)])
        return min(len(np.unique(q, axis=0)), len(np.unique(r, axis=0)))

    def _verify(self, r: int, pairs: dict[int, int], qpts: np.ndarray, qhw: tuple[int, int],
                scale: float) -> GeoHit | None:
        q_idx = np.fromiter(pairs.keys(), np.int64)
        src = self._points[np.fromiter(pairs.values(), np.int64)]
        dst = qpts[q_idx]
        H, mask = cv2.findHomography(src, dst, cv2.RANSAC, self.params.ransac_px, maxIters=500, confidence=0.995)
        if H is None or mask is None:
            return None
        brand_id, uri, (rw, rh) = self._refs[r]
        if not _plausible(H, rw, rh, qhw, self.params):
            return None
        inl = mask.ravel().astype(bool)
        # distinct photo locations (SIFT repeats a keypoint per dominant orientation)
        q_loc = {(round(float(x)), round(float(y))) for x, y in dst[inl]}
        r_loc = {(round(float(x)), round(float(y))) for x, y in src[inl]}
        n = min(len(q_loc), len(r_loc))
        corners = cv2.perspectiveTransform(np.float32([[[0, 0]], [[rw, 0]], [[rw, rh]], [[0, rh]]]), H)[:, 0] / scale
        x1, y1 = corners.min(0)
        x2, y2 = corners.max(0)
        H0, W0 = qhw[0] / scale, qhw[1] / scale
        box = (max(0, int(x1)), max(0, int(y1)), min(int(W0), int(x2)), min(int(H0), int(y2)))
        return GeoHit(brand_id, uri, n, box)


def _plausible(H: np.ndarray, rw: int, rh: int, qhw: tuple[int, int], prm: GeometryParams = LOGO_PARAMS) -> bool:
    """False for transforms that collapse, blow up, shear strongly or fold the reference."""
    if not np.isfinite(H).all() or abs(H[2, 2]) < 1e-9:
        return False
    corners = cv2.perspectiveTransform(np.float32([[[0, 0]], [[rw, 0]], [[rw, rh]], [[0, rh]]]), H)[:, 0]
    if not np.isfinite(corners).all():
        return False
    if not cv2.isContourConvex(corners.reshape(-1, 1, 2).astype(np.float32)):
        return False
    area = abs(cv2.contourArea(corners))
    photo = qhw[0] * qhw[1]
    if not (prm.min_area_fraction * photo <= area <= prm.max_area_fraction * photo):
        return False
    A = H[:2, :2] / H[2, 2]
    sv = np.linalg.svd(A, compute_uv=False)
    if sv[1] <= 1e-9 or sv[0] / sv[1] > prm.max_anisotropy:
        return False
    return True
