"""The image signal source the Scanner calls: for each listing, evidence that its photos show an
enrolled brand's logo (`logo`), its word mark as text (`ocr_text`, through the WordMarkIndex)
or a copy of its official product photos (`image_copy`: by PDQ hash, by backbone embedding, or
verified geometrically by local features, which finds cropped, padded, rotated, flipped and
framed copies).

`ImageSignals.build(brands, fetch, base_dir)` fetches and indexes every logo and product image
once; `find(listings, base_dir)` looks each listing image up by sha256 first (the listing's
own digest when given, so a known image is neither fetched nor embedded again), then decodes
all new images with caps, verifies logos and product photos geometrically (logo_geometry, one
set of local features per image searched in both indexes), runs them through the
backbone in one batched call where the catalogue has official product photos (copies) or the
research logo head is on, reads text, and caches the per-image outcome in rocksdict. A broken
or hostile image becomes an `image_error` signal (score 0, brand_id "") and never an exception.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence

import cv2
import faiss
import numpy as np
import orjson

from brand_signals.decide import combine
from brand_signals.images.image_copy import EMBED_SCORE, PDQ_SCORE, ImageCopyIndex, global_embedding, pdq
from brand_signals.images.image_decode import ImageDecodeError, ImageLimits, decode_rgb, probe
from brand_signals.images.logo_geometry import (LogoGeometryIndex, RefFeatures, PRODUCT_PARAMS,
                                                product_reference_features, reference_features)
from brand_signals.records import BrandReference, Evidence, ImageRef, Listing, Op, Signal, SignalKind
from brand_signals.text.wordmarks import WordMarkIndex
from models.embedder import DEFAULT_MODEL, QUERY_SIDE, FeatureExtractor, letterbox, valid_cells

Fetch = Callable[[str, "str | None", "str | None"], bytes]
# A listing fetch may also take a whole batch at once, concurrently and under time budgets
# (connectors.image_fetch.ListingFetcher.fetch_many): (listing index, uri, sha256) per image,
# bytes or the exception per image back.
FetchMany = Callable[[Sequence[tuple[int, str, "str | None"]]], list]

# --- logo scores (decide.py: >= 0.8 enforce, >= 0.5 review) -----------------------------
# A learned logo head (research, off in the job: benchmarks/research/logos.py says why) may be
# passed in as `head` (a LogoHeadPlugin); its window probabilities become scores through
# `head.score`.
# A geometrically verified logo (RootSIFT matches + RANSAC, logo_geometry.py) flags on its own.
# Measured on the dev logo set, geometric hits alone (best brand per photo), 1,109 photos:
# >= 6 inliers: 178 flagged, precision 0.978, recall 0.215 (none of the 300 no_logo photos;
# 4 logo photos given another enrolled brand); >= 5: precision 0.953; >= 4: 0.913. So 6
# inliers enforce; 4-5 only support other evidence (score under decide.REVIEW_SCORE).
GEO_ENFORCE_INLIERS = 6
GEO_SUPPORT_INLIERS = 4
GEO_ENFORCE_SCORE = 0.85
GEO_SUPPORT_SCORE = 0.3
# A geometrically verified copy of an official product photo (the same RootSIFT + RANSAC
# verification against the whole photo and its mirror image, logo_geometry.PRODUCT_PARAMS).
# Measured on AugLy edits of dev photos standing in as product photos (benchmarks/
# eval_photo_copies.py; 1,005 copies of 67 enrolled photos, 960 of 64 other products' photos),
# geometric hits alone: >= 6 inliers precision 0.994 (6 false), >= 8 recall 0.993 at precision
# 0.998 (2 false), >= 12 recall 0.988 with none false. So 12 inliers enforce and 8-11 ask for
# a human look (COPY_GEO_REVIEW_SCORE is over decide.REVIEW_SCORE, under ENFORCE_SCORE).
COPY_GEO_ENFORCE_INLIERS = 12
COPY_GEO_REVIEW_INLIERS = 8
COPY_GEO_ENFORCE_SCORE = 0.85
COPY_GEO_REVIEW_SCORE = 0.6
# What the product index may hold: it keeps ~1,000 RootSIFT descriptors per photo (plain and
# mirrored views, logo_geometry.PRODUCT_REF_MAX_FEATURES each), ~0.77 MB with the HNSW links,
# so the first photos of each brand (in the brand's order) up to these counts are verified
# geometrically (~1.5 GB at the catalogue cap); the others are still matched by hash and
# embedding (`copy_geometry_left_out` counts them). The per-image cost does not grow with the
# count beyond the HNSW search (logarithmic) and TOP_CANDIDATES RANSAC fits.
COPY_GEOMETRY_MAX_PHOTOS_PER_BRAND = 8
COPY_GEOMETRY_MAX_PHOTOS = 2_000
# Bump when anything that changes per-image results changes (models, scores, matching).
# 2: geometric logo verification. 3: OCR without the angle classifier, tilted reference views.
# 4: no tilted views. 5: geometric verification of product photo copies. 6: OCR recognising
# text lines one at a time (models/ocr.py REC_BATCH, back to 6 in 7). 7: the product photo
# index searched with efSearch 16 (logo_geometry.PRODUCT_HNSW_EF_SEARCH).
RESULT_VERSION = 7
# Per-image outcomes kept in process in front of rocksdict.
MEMO_ENTRIES = 50_000
# Decoded pixels a batch holds before they are analysed (then freed): 32 MP is ~96 MB of RGB,
# eight images at the analysis size (image_decode.ANALYSIS_SIDE 1920^2, the backbone's batch of
# 8), far more of the usual few-hundred-pixel photos.
MAX_HELD_PIXELS = 32_000_000
# How long a (uri, claimed sha256) pair whose bytes this process fetched and hashed saves
# fetching it again: re-posts within minutes cost no fetch; a host that swaps the bytes behind
# a uri is seen within this time (as it would be at the next scan anyway).
VERIFIED_TTL_S = 600.0
_ERROR_BRAND = ""


class LogoHeadPlugin(Protocol):
    """A learned logo-region head (research only: benchmarks/research/logos.py `LearnedHead`)."""

    fingerprint: bytes            # what cached per-image outcomes depend on (the weights)

    def index(self, logos: list[tuple[str, str, np.ndarray]], extractor: FeatureExtractor):
        """An index over (brand_id, logo uri, RGB) whose `match(features, hw)` yields hits with
        brand_id, logo_uri, probability, similarity and box."""
        ...

    def score(self, probability: float) -> float: ...


@dataclass(frozen=True, slots=True)
class ImageOutcome:
    """What one image showed, independent of listing; what the cache stores."""

    logos: tuple[tuple[str, str, float, float, tuple[int, int, int, int]], ...] = ()
    copies: tuple[tuple[str, str, int | None, float], ...] = ()
    text: tuple[str, ...] = ()
    error: str | None = None
    # (brand_id, logo uri, RANSAC inliers, box) per geometrically verified brand
    geo: tuple[tuple[str, str, int, tuple[int, int, int, int]], ...] = ()
    # (brand_id, product image uri, RANSAC inliers, box) per brand whose official photo was
    # verified geometrically (box: the photo's outline in this image, clipped)
    copy_geo: tuple[tuple[str, str, int, tuple[int, int, int, int]], ...] = ()

    def to_bytes(self) -> bytes:
        return orjson.dumps({"l": self.logos, "c": self.copies, "t": self.text, "e": self.error, "g": self.geo,
                             "p": self.copy_geo})

    @classmethod
    def from_bytes(cls, data: bytes) -> "ImageOutcome":
        d = orjson.loads(data)
        return cls(tuple((a, b, p, s, tuple(box)) for a, b, p, s, box in d["l"]),
                   tuple(tuple(c) for c in d["c"]), tuple(d["t"]), d["e"],
                   tuple((a, b, n, tuple(box)) for a, b, n, box in d["g"]),
                   tuple((a, b, n, tuple(box)) for a, b, n, box in d.get("p", ())))


@dataclass
class ImageStats:
    fetched: int = 0
    cache_hits: int = 0
    embedded: int = 0
    ocr_read: int = 0
    failures: int = 0
    decoded: int = 0
    chunks: int = 0               # analyse calls (a batch over MAX_HELD_PIXELS is split)
    sha256_mismatches: int = 0


class ReferenceCache:
    """What the index keeps of each brand image (logo geometry features, product photo hash and
    embedding), by the sha256 of the bytes fetched for it, across catalogue rebuilds: a rebuild
    fetches and hashes every image but decodes only new ones. Holds only the last build's images,
    and the last build's product photo index (`copy_index`): a rebuild whose geometrically
    verified product photos are the same (same brands, uris, bytes) reuses it as it is instead of
    inserting every descriptor again."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], object] = {}
        self.analysed = 0            # images decoded and analysed
        self.reused = 0
        self.copy_index: tuple[bytes, "LogoGeometryIndex"] | None = None   # (what it holds, index)

    def get(self, key: tuple[str, str, str]) -> object | None:
        hit = self._entries.get(key)
        if hit is not None:
            self.reused += 1
        return hit

    def put(self, key: tuple[str, str, str], value: object) -> None:
        self.analysed += 1
        self._entries[key] = value

    def retain(self, keys: set[tuple[str, str, str]]) -> None:
        for k in [k for k in self._entries if k not in keys]:
            del self._entries[k]

    def __len__(self) -> int:
        return len(self._entries)


def geo_score(inliers: int) -> float:
    if inliers >= GEO_ENFORCE_INLIERS:
        return GEO_ENFORCE_SCORE
    if inliers >= GEO_SUPPORT_INLIERS:
        return GEO_SUPPORT_SCORE
    return 0.0


def copy_geo_score(inliers: int) -> float:
    if inliers >= COPY_GEO_ENFORCE_INLIERS:
        return COPY_GEO_ENFORCE_SCORE
    if inliers >= COPY_GEO_REVIEW_INLIERS:
        return COPY_GEO_REVIEW_SCORE
    return 0.0


def _scaled(box: tuple[int, int, int, int], k: float) -> tuple[int, int, int, int]:
    return tuple(int(round(v * k)) for v in box)  # type: ignore[return-value]


class ImageSignals:
    def __init__(self, *, logos: object | None, copies: ImageCopyIndex, wordmarks: WordMarkIndex,
                 extractor: FeatureExtractor, reader, fetch: Fetch, fingerprint: bytes,
                 cache_path: str | Path | None = None, build_errors: Sequence[str] = (),
                 geometry: LogoGeometryIndex | None = None, limits: ImageLimits = ImageLimits(),
                 copy_geometry: LogoGeometryIndex | None = None,
                 max_held_pixels: int = MAX_HELD_PIXELS, verified_ttl_s: float = VERIFIED_TTL_S,
                 now: Callable[[], float] = time.monotonic, head: LogoHeadPlugin | None = None):
        self.logos, self.copies, self.wordmarks = logos, copies, wordmarks
        self.head = head
        self.geometry = geometry
        self.copy_geometry = copy_geometry if copy_geometry is not None and len(copy_geometry) else None
        self.copy_geometry_left_out = 0      # product photos over the caps (hash and embedding only)
        self.extractor, self.reader, self._fetch = extractor, reader, fetch
        self._fingerprint = fingerprint
        self._memo: OrderedDict[bytes, ImageOutcome] = OrderedDict()
        self._db = None
        if cache_path is not None:
            from rocksdict import Rdict
            self._db = Rdict(str(cache_path))
        self.build_errors = tuple(build_errors)
        # sha256 of the bytes fetched per listing of the last `find` batch: digests computed
        # here, which the feedback loop may trust (a listing's own sha256 is only a claim).
        self.last_digests: list[frozenset[str]] = []
        # text read from each listing's images in the last `find` batch (per listing, per image):
        # what a memo entry is re-checked against when word marks change
        self.last_texts: list[tuple[str, ...]] = []
        # When set and true for a claimed digest, that image is fetched and hashed even if its
        # outcome is cached (the feedback loop must not take the claim of a removed image's digest).
        self.verify: Callable[[str], bool] | None = None
        self.stats = ImageStats()
        self.limits, self.max_held_pixels = limits, max_held_pixels
        self.verified_ttl_s, self._now = verified_ttl_s, now
        self._verified: OrderedDict[tuple[str, str], float] = OrderedDict()

    @classmethod
    def build(cls, brands: Iterable[BrandReference], fetch: Fetch, base_dir: str | None = None, *,
              cache_path: str | Path | None = None, threads: int = 1, batch_size: int = 8,
              model_path: Path = DEFAULT_MODEL, head: LogoHeadPlugin | None = None, ocr: bool = True,
              extractor: FeatureExtractor | None = None, reader=None, geometry: bool = True,
              ocr_upscale: bool = False, limits: ImageLimits = ImageLimits(),
              references: ReferenceCache | None = None, listing_fetch: Fetch | None = None,
              copy_geometry: bool = True, wordmarks: WordMarkIndex | None = None, device: str = "cpu",
              **kw) -> "ImageSignals":
        """Index every live brand's logos and product images. Logo uris are resolved by
        `fetch` against `base_dir`; an image that cannot be fetched or decoded is skipped and
        listed in `build_errors` (the brand still matches on its other logos and its marks).
        `ocr_upscale`: small photos are also read scaled up (models.ocr.UPSCALE_SIDE).
        `references`: kept by the caller across rebuilds, so an unchanged image (same bytes)
        is not decoded again. `listing_fetch` reads listing images (seller input: the job passes
        its egress-policed fetcher; `fetch` when None). `copy_geometry` (with `geometry`):
        official product photos are also verified geometrically. `wordmarks`: the catalogue's
        index, which text read from images is matched against (built here from `brands` when
        None; the scanner passes the catalogue's, so it is built once per catalogue). `device`:
        where the backbone and OCR run, "cpu" or "cuda" (models/device.py; ZEROSCAN_IMAGE_DEVICE
        in the job). Other
        keywords go to the constructor."""
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        cv2.setNumThreads(threads)
        faiss.omp_set_num_threads(threads)
        live = [b for b in brands if not b.deleted]
        extractor = extractor or FeatureExtractor(model_path, threads=threads, batch_size=batch_size, device=device)
        if reader is None and ocr:
            from models.ocr import TextReader
            reader = TextReader(threads=threads, upscale=ocr_upscale, device=device)
        references = references if references is not None else ReferenceCache()
        errors: list[str] = []
        fp = hashlib.blake2b(digest_size=16)
        # what the cached per-image outcomes depend on besides the catalogue
        reading = "none" if reader is None else f"{type(reader).__name__}|{getattr(reader, 'upscale', False)}"
        copy_geometry = geometry and copy_geometry
        fp.update(f"{RESULT_VERSION}|{geometry}|{copy_geometry}|{Path(model_path).name}|{reading}|"
                  f"{limits.analysis_side}".encode())
        if device != "cpu":      # model outputs agree across devices within float tolerance only
            fp.update(f"|{device}".encode())
        if head is not None:
            fp.update(head.fingerprint)
        # what the kept reference analysis depends on besides the image's bytes
        setting = f"{limits.analysis_side}|{Path(model_path).name}"
        used: set[tuple[str, str, str]] = set()

        def load(ref: ImageRef, brand_id: str) -> tuple[str, bytes] | None:
            try:
                data = fetch(ref.uri, base_dir, ref.sha256)
            except (OSError, ValueError) as e:
                errors.append(f"{brand_id} {ref.uri}: {e}")
                return None
            sha = hashlib.sha256(data).hexdigest()
            if ref.sha256 is not None and ref.sha256.lower() != sha:
                errors.append(f"{brand_id} {ref.uri}: sha256 mismatch (the content's is {sha})")
                return None
            fp.update(f"{brand_id}|{ref.uri}|{sha}".encode())
            return sha, data

        def decoded(brand_id: str, ref: ImageRef, data: bytes) -> np.ndarray | None:
            try:
                return decode_rgb(data, limits)
            except ValueError as e:
                errors.append(f"{brand_id} {ref.uri}: {e}")
                return None

        logo_feats: list[tuple[str, str, RefFeatures]] = []
        head_imgs: list[tuple[str, str, np.ndarray]] = []
        # kept per product photo: (PDQ hash, embedding, local features of its views or None)
        prod: list[tuple[str, str, tuple[np.ndarray, np.ndarray, tuple[RefFeatures, ...] | None]]] = []
        new_prod: list[tuple[int, tuple[str, str, str], np.ndarray, bool]] = []   # (slot in prod, key, rgb, geo)
        geo_total = 0
        left_out = 0
        geo_ids = hashlib.blake2b(digest_size=16)     # the geometrically verified photos, in order

        def analyse_products() -> None:
            """Hash, embed and (within the copy geometry caps) describe the decoded new product
            photos (held pixels stay under MAX_HELD_PIXELS)."""
            feats = extractor.features([letterbox(rgb, QUERY_SIDE)[0] for _, _, rgb, _ in new_prod])
            for (slot, key, rgb, geo), f in zip(new_prod, feats):
                kept = (pdq(rgb)[0], global_embedding(f, valid_cells(*rgb.shape[:2])),
                        product_reference_features(rgb) if geo else None)
                references.put(key, kept)
                b_id, uri, _ = prod[slot]
                prod[slot] = (b_id, uri, kept)
            new_prod.clear()

        # The per-image results depend on the images of the catalogue (hashed by `load`), not on
        # brand versions: an update that keeps a brand's images keeps every cached result.
        for b in sorted(live, key=lambda b: b.brand_id):
            for ref in b.logos:
                got = load(ref, b.brand_id)
                if got is None:
                    continue
                sha, data = got
                key = ("logo", sha, setting)
                feats = references.get(key) if geometry else None
                rgb = None
                if (geometry and feats is None) or head is not None:
                    rgb = decoded(b.brand_id, ref, data)
                    if rgb is None:
                        continue
                if geometry:
                    if feats is None:
                        feats = reference_features(rgb)
                        references.put(key, feats)
                    used.add(key)
                    logo_feats.append((b.brand_id, ref.uri, feats))
                if head is not None:
                    head_imgs.append((b.brand_id, ref.uri, rgb))
            geo_brand = 0
            for ref in b.product_images:
                got = load(ref, b.brand_id)
                if got is None:
                    continue
                sha, data = got
                geo = (copy_geometry and geo_brand < COPY_GEOMETRY_MAX_PHOTOS_PER_BRAND
                       and geo_total < COPY_GEOMETRY_MAX_PHOTOS)
                key = ("product", sha, f"{setting}|{geo}")
                kept = references.get(key)
                if kept is None:
                    rgb = decoded(b.brand_id, ref, data)
                    if rgb is None:
                        continue
                    new_prod.append((len(prod), key, rgb, geo))
                used.add(key)
                prod.append((b.brand_id, ref.uri, kept))
                if geo:
                    geo_ids.update(f"{b.brand_id}|{ref.uri}|{sha}|{setting}\n".encode())
                geo_brand += geo
                geo_total += geo
                left_out += copy_geometry and not geo
                if sum(rgb.shape[0] * rgb.shape[1] for _, _, rgb, _ in new_prod) > MAX_HELD_PIXELS:
                    analyse_products()
        if new_prod:
            analyse_products()
        references.retain(used)
        logos = head.index(head_imgs, extractor) if head is not None else None
        copies = ImageCopyIndex([(b, u) for b, u, _ in prod],
                                np.array([k[0] for _, _, k in prod], np.uint8).reshape(-1, 32),
                                np.array([k[1] for _, _, k in prod], np.float32).reshape(len(prod), 1280))
        copy_index = None
        if copy_geometry and geo_total:
            held = geo_ids.digest()
            if references.copy_index is not None and references.copy_index[0] == held:
                copy_index = references.copy_index[1]            # immutable: shared as it is
            else:
                copy_index = LogoGeometryIndex.from_features(
                    [(b, u, v) for b, u, k in prod if k[2] is not None for v in k[2]], PRODUCT_PARAMS)
                references.copy_index = (held, copy_index)
        else:
            references.copy_index = None
        sig = cls(logos=logos, copies=copies, wordmarks=wordmarks if wordmarks is not None else WordMarkIndex.build(live),
                  extractor=extractor,
                  reader=reader, fetch=fetch if listing_fetch is None else listing_fetch,
                  fingerprint=fp.digest(), cache_path=cache_path,
                  build_errors=errors, geometry=LogoGeometryIndex.from_features(logo_feats) if geometry else None,
                  copy_geometry=copy_index,
                  limits=limits, head=head, **kw)
        sig.copy_geometry_left_out = left_out
        return sig

    # --- cache -------------------------------------------------------------------------
    def _key(self, sha256: str) -> bytes:
        return b"img:" + self._fingerprint + sha256.encode()

    def _get(self, sha256: str) -> ImageOutcome | None:
        key = self._key(sha256)
        hit = self._memo.get(key)
        if hit is not None:
            self._memo.move_to_end(key)
            return hit
        if self._db is not None:
            raw = self._db.get(key)
            if raw is not None:
                out = ImageOutcome.from_bytes(raw)
                self._remember(key, out)
                return out
        return None

    def _remember(self, key: bytes, out: ImageOutcome) -> None:
        self._memo[key] = out
        while len(self._memo) > MEMO_ENTRIES:
            self._memo.popitem(last=False)

    def _put(self, sha256: str, out: ImageOutcome) -> None:
        key = self._key(sha256)
        self._remember(key, out)
        if self._db is not None:
            self._db[key] = out.to_bytes()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- matching ----------------------------------------------------------------------
    def _verified_before(self, uri: str, claimed: str) -> bool:
        """True when this process fetched `uri` within VERIFIED_TTL_S and its bytes had the
        digest `claimed` (a listing's sha256 is only a hint: it saves a fetch only here)."""
        key = (uri, claimed)
        until = self._verified.get(key)
        if until is None:
            return False
        if until < self._now():
            del self._verified[key]
            return False
        return True

    def _remember_verified(self, uri: str, sha: str) -> None:
        self._verified[uri, sha] = self._now() + self.verified_ttl_s
        self._verified.move_to_end((uri, sha))
        while len(self._verified) > MEMO_ENTRIES:
            self._verified.popitem(last=False)

    def find(self, listings: Sequence[Listing], base_dir: str | None = None) -> list[list[Evidence]]:
        """Evidence per listing from its images (one list per listing, in order).

        A cached result is used only for bytes whose digest was computed here: an image is
        fetched unless this process fetched the same uri with the same claimed sha256 within
        VERIFIED_TTL_S; a claimed digest that the bytes do not have is an `image_error` and the
        real bytes are scanned. Decoded images are analysed in chunks of at most
        `max_held_pixels` pixels (plus one image)."""
        outcome: dict[tuple[int, int], ImageOutcome] = {}
        notes: dict[tuple[int, int], str] = {}            # image errors beside a scanned result
        pending: dict[str, list[tuple[int, int]]] = {}     # sha256 -> image slots to fill
        decoded: dict[str, np.ndarray] = {}
        scales: dict[str, float] = {}                      # source pixels per analysed pixel, when reduced
        held = 0

        def flush() -> None:
            for sha, out in self._analyse(decoded, scales).items():
                self._put(sha, out)
                for slot in pending.pop(sha):
                    outcome[slot] = out
            decoded.clear()
            scales.clear()

        fetched = self._fetch_batch(listings)
        digests: list[set[str]] = [set() for _ in listings]    # computed here, for the feedback loop
        self.last_digests = []
        for li, listing in enumerate(listings):
            if listing.op is Op.DELETE:
                continue
            for ii, ref in enumerate(listing.images):
                claimed = ref.sha256.lower() if ref.sha256 else None
                if (claimed is not None and self._verified_before(ref.uri, claimed)
                        and not (self.verify is not None and self.verify(claimed))):
                    digests[li].add(claimed)           # verified from this uri's bytes before
                    if claimed in pending:
                        pending[claimed].append((li, ii))
                        continue
                    hit = self._get(claimed)
                    if hit is not None:
                        self.stats.cache_hits += 1
                        outcome[li, ii] = hit
                        continue
                try:
                    data = (fetched[li, ii] if (li, ii) in fetched         # the claim is checked here, below
                            else self._fetch(ref.uri, base_dir, None))
                    if isinstance(data, Exception):
                        raise data
                except (OSError, ValueError) as e:      # transient or not: not cached
                    self.stats.failures += 1
                    outcome[li, ii] = ImageOutcome(error=f"fetch failed: {e}")
                    continue
                self.stats.fetched += 1
                sha = hashlib.sha256(data).hexdigest()
                if claimed is not None:
                    if claimed == sha:
                        self._remember_verified(ref.uri, sha)
                    else:
                        self.stats.sha256_mismatches += 1
                        notes[li, ii] = (f"sha256 mismatch: the listing's sha256 is not the digest of the fetched "
                                         f"bytes (sha256 {sha}); the fetched bytes were scanned")
                digests[li].add(sha)
                if sha in pending:
                    pending[sha].append((li, ii))
                    continue
                hit = self._get(sha)
                if hit is not None:
                    self.stats.cache_hits += 1
                    outcome[li, ii] = hit
                    continue
                pending[sha] = [(li, ii)]
                try:
                    rgb = decode_rgb(data, self.limits)
                except ImageDecodeError as e:
                    self.stats.failures += 1
                    bad = ImageOutcome(error=str(e))
                    self._put(sha, bad)               # the same bytes will fail the same way
                    for slot in pending.pop(sha):
                        outcome[slot] = bad
                    continue
                _, width, _ = probe(data)
                if width != rgb.shape[1]:
                    scales[sha] = width / rgb.shape[1]
                del data
                self.stats.decoded += 1
                decoded[sha] = rgb
                held += rgb.shape[0] * rgb.shape[1]
                if held > self.max_held_pixels:
                    self.stats.chunks += 1
                    flush()
                    held = 0
        if decoded:
            self.stats.chunks += 1
            flush()
        self.last_digests = [frozenset(d) for d in digests]
        self.last_texts = [tuple(" \n ".join(o.text) for ii in range(len(listing.images))
                                 if (o := outcome.get((li, ii))) is not None and o.text)
                           for li, listing in enumerate(listings)]
        return [self._evidence(listing, [outcome.get((li, ii)) for ii in range(len(listing.images))],
                               [notes.get((li, ii)) for ii in range(len(listing.images))])
                for li, listing in enumerate(listings)]

    def _fetch_batch(self, listings: Sequence[Listing]) -> dict[tuple[int, int], "bytes | Exception"]:
        """The batch's images fetched at once when the fetch can (concurrently, within its
        budgets); those find() answers from the cache (a digest verified here) are not fetched."""
        many: FetchMany | None = getattr(self._fetch, "fetch_many", None)
        if many is None:
            return {}
        slots, requests = [], []
        for li, listing in enumerate(listings):
            if listing.op is Op.DELETE:
                continue
            for ii, ref in enumerate(listing.images):
                claimed = ref.sha256.lower() if ref.sha256 else None
                if claimed is not None and self._verified_before(ref.uri, claimed) and self._get(claimed) is not None:
                    continue
                slots.append((li, ii))
                requests.append((li, ref.uri, ref.sha256))
        return dict(zip(slots, many(requests))) if requests else {}

    def _analyse(self, decoded: dict[str, np.ndarray], scales: dict[str, float] | None = None
                 ) -> dict[str, ImageOutcome]:
        """Outcomes per sha256; boxes in the source image's pixels (`scales` for reduced ones)."""
        if not decoded:
            return {}
        shas = list(decoded)
        feats: Sequence[np.ndarray | None] = [None] * len(shas)
        if self.logos is not None or len(self.copies):   # the backbone's only consumers
            canvases = [letterbox(decoded[s], QUERY_SIDE)[0] for s in shas]
            feats = self.extractor.features(canvases)    # one batched model call for the batch
            self.stats.embedded += len(shas)
        texts = self.reader.read([decoded[s] for s in shas]) if self.reader is not None else [[] for _ in shas]
        self.stats.ocr_read += len(shas) if self.reader is not None else 0
        out = {}
        for sha, f, lines in zip(shas, feats, texts):
            rgb = decoded[sha]
            hw = rgb.shape[:2]
            logos = tuple((h.brand_id, h.logo_uri, round(h.probability, 4), round(h.similarity, 4), h.box)
                          for h in (self.logos.match(f, hw) if self.logos is not None else ())
                          if self.head.score(h.probability) > 0)
            copies: tuple = ()
            if len(self.copies):
                packed, quality = pdq(rgb)
                copies = tuple((c.brand_id, c.image_uri, c.distance, round(c.similarity, 4))
                               for c in self.copies.match(packed, quality, global_embedding(f, valid_cells(*hw))))
            geo: tuple = ()
            copy_geo: tuple = ()
            if self.geometry is not None or self.copy_geometry is not None:
                # one set of local features per photo, searched in the logo and product indexes
                q = (self.geometry if self.geometry is not None else self.copy_geometry).query(rgb)
                if self.geometry is not None:
                    geo = tuple((g.brand_id, g.logo_uri, g.inliers, g.box)
                                for g in self.geometry.match(rgb, q, min_inliers=GEO_SUPPORT_INLIERS)
                                if geo_score(g.inliers) > 0)
                if self.copy_geometry is not None:
                    copy_geo = tuple((g.brand_id, g.logo_uri, g.inliers, g.box)
                                     for g in self.copy_geometry.match(rgb, q, min_inliers=COPY_GEO_REVIEW_INLIERS)
                                     if copy_geo_score(g.inliers) > 0)
            k = (scales or {}).get(sha)
            if k is not None:
                logos = tuple((a, b, p, sim, _scaled(box, k)) for a, b, p, sim, box in logos)
                geo = tuple((a, b, n, _scaled(box, k)) for a, b, n, box in geo)
                copy_geo = tuple((a, b, n, _scaled(box, k)) for a, b, n, box in copy_geo)
            out[sha] = ImageOutcome(logos, copies, tuple(line.text for line in lines), geo=geo, copy_geo=copy_geo)
        return out

    def _evidence(self, listing: Listing, outcomes: Sequence[ImageOutcome | None],
                  notes: Sequence[str | None] = ()) -> list[Evidence]:
        # best signal per (brand, kind): the same logo on five photos is one piece of evidence
        best: dict[tuple[str, SignalKind], Signal] = {}
        errors: list[Signal] = []

        def keep(brand_id: str, sig: Signal) -> None:
            cur = best.get((brand_id, sig.kind))
            if cur is None or sig.score > cur.score:
                best[brand_id, sig.kind] = sig

        for ref, note in zip(listing.images, notes):
            if note is not None:
                errors.append(Signal(SignalKind.IMAGE_ERROR, 0.0, {"image_uri": ref.uri, "reason": note}))
        for ref, out in zip(listing.images, outcomes):
            if out is None:
                continue
            if out.error is not None:
                errors.append(Signal(SignalKind.IMAGE_ERROR, 0.0, {"image_uri": ref.uri, "reason": out.error}))
                continue
            # one logo signal per brand and image: head and geometric evidence combined
            logo_detail: dict[str, dict] = {}
            for brand_id, logo_uri, p, sim, box in out.logos:
                logo_detail[brand_id] = {"image_uri": ref.uri, "logo_uri": logo_uri, "probability": p,
                                         "similarity": sim, "box": list(box),
                                         "score_head": self.head.score(p) if self.head is not None else 0.0}
            for brand_id, logo_uri, n, box in out.geo:
                d = logo_detail.setdefault(brand_id, {"image_uri": ref.uri, "logo_uri": logo_uri, "box": list(box)})
                d.update(inliers=n, geo_logo_uri=logo_uri, geo_box=list(box), score_geo=geo_score(n))
            for brand_id, d in logo_detail.items():
                keep(brand_id, Signal(SignalKind.LOGO, combine([d.get("score_head", 0.0), d.get("score_geo", 0.0)]), d))
            # one copy signal per brand and image: hash or embedding and geometric evidence combined
            copy_detail: dict[str, dict] = {}
            for brand_id, uri, dist, sim in out.copies:
                score = PDQ_SCORE if dist is not None else EMBED_SCORE
                cur = copy_detail.get(brand_id)
                if cur is None or score > cur["score_copy"]:
                    copy_detail[brand_id] = {"image_uri": ref.uri, "product_image_uri": uri, "pdq_distance": dist,
                                             "similarity": sim, "score_copy": score}
            for brand_id, uri, n, box in out.copy_geo:
                d = copy_detail.setdefault(brand_id, {"image_uri": ref.uri, "product_image_uri": uri,
                                                      "pdq_distance": None, "similarity": None})
                d.update(inliers=n, geo_product_image_uri=uri, geo_box=list(box), score_geo=copy_geo_score(n))
            for brand_id, d in copy_detail.items():
                keep(brand_id, Signal(SignalKind.IMAGE_COPY,
                                      combine([d.get("score_copy", 0.0), d.get("score_geo", 0.0)]), d))
            if out.text:
                for ev in self.wordmarks.match_text(" \n ".join(out.text), field="ocr_text"):
                    for sig in ev.signals:
                        keep(ev.brand_id, Signal(SignalKind.OCR_TEXT, sig.score,
                                                 {**sig.detail, "image_uri": ref.uri}))
        by_brand: dict[str, list[Signal]] = {}
        for (brand_id, _), sig in best.items():
            by_brand.setdefault(brand_id, []).append(sig)
        evidence = [Evidence(b, tuple(sorted(s, key=lambda x: -x.score))) for b, s in by_brand.items()]
        if errors:
            evidence.append(Evidence(_ERROR_BRAND, tuple(errors)))
        return evidence
