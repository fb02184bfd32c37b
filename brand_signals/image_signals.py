"""The image signal source the Scanner calls: for each listing, evidence that its photos show an
enrolled brand's logo (`logo`), its word mark as text (`ocr_text`, through the WordMarkIndex)
or a copy of its official product photos (`image_copy`).

`ImageSignals.build(brands, fetch, base_dir)` fetches and indexes every logo and product image
once; `find(listings, base_dir)` looks each listing image up by sha256 first (the listing's
own digest when given, so a known image is neither fetched nor embedded again), then decodes
all new images with caps, verifies logos geometrically (logo_geometry), runs them through the
backbone in one batched call where the catalogue has official product photos (copies) or the
research logo head is on, reads text, and caches the per-image outcome in rocksdict. A broken
or hostile image becomes an `image_error` signal (score 0, brand_id "") and never an exception.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import faiss
import numpy as np
import orjson

from brand_signals.decide import combine
from brand_signals.image_copy import EMBED_SCORE, PDQ_SCORE, ImageCopyIndex, global_embedding, pdq
from brand_signals.image_decode import ImageDecodeError, decode_rgb
from brand_signals.logo_geometry import LogoGeometryIndex
from brand_signals.logos import LogoIndex
from brand_signals.records import BrandReference, Evidence, ImageRef, Listing, Op, Signal, SignalKind
from brand_signals.wordmarks import WordMarkIndex
from models.embedder import DEFAULT_MODEL, FeatureExtractor, letterbox
from models.logo_head import QUERY_SIDE, LogoHead, valid_cells

Fetch = Callable[[str, "str | None", "str | None"], bytes]

# --- logo scores (decide.py: >= 0.8 enforce, >= 0.5 review) -----------------------------
# The learned head (models/logo_head.py) is off unless `head_path` is given: cross-fitted on
# the dev logo photos (two heads, each brand scored by the head that never saw it), at the
# thresholds below it found none of the 809 logo photos; without logos.MIN_SIMILARITY it
# flagged 1,079 of 1,109 photos at precision 0.06 (benchmarks/eval_logo_head_cv.py). It cost
# ~42 ms per new image. It is kept for research
# (benchmarks/eval_logos_offline.py --head). When on, the window probability p (softmax over
# nearest renderings + background) becomes a score through these points, under
# decide.REVIEW_SCORE, so a head hit only adds to other evidence.
LOGO_ENFORCE_PROB = 0.97
LOGO_REVIEW_PROB = 0.9
LOGO_ENFORCE_SCORE = 0.45
LOGO_REVIEW_SCORE = 0.3
# A geometrically verified logo (RootSIFT matches + RANSAC, logo_geometry.py) flags on its own.
# Measured on the dev logo set, geometric hits alone (best brand per photo), 1,109 photos:
# >= 6 inliers: 178 flagged, precision 0.978, recall 0.215 (none of the 300 no_logo photos;
# 4 logo photos given another enrolled brand); >= 5: precision 0.953; >= 4: 0.913. So 6
# inliers enforce; 4-5 only support other evidence (score under decide.REVIEW_SCORE).
GEO_ENFORCE_INLIERS = 6
GEO_SUPPORT_INLIERS = 4
GEO_ENFORCE_SCORE = 0.85
GEO_SUPPORT_SCORE = 0.3
# Bump when anything that changes per-image results changes (models, scores, matching).
# 2: geometric logo verification. 3: OCR without the angle classifier, tilted reference views.
# 4: no tilted views.
RESULT_VERSION = 4
# Per-image outcomes kept in process in front of rocksdict.
MEMO_ENTRIES = 50_000
_ERROR_BRAND = ""


@dataclass(frozen=True, slots=True)
class ImageOutcome:
    """What one image showed, independent of listing; what the cache stores."""

    logos: tuple[tuple[str, str, float, float, tuple[int, int, int, int]], ...] = ()
    copies: tuple[tuple[str, str, int | None, float], ...] = ()
    text: tuple[str, ...] = ()
    error: str | None = None
    # (brand_id, logo uri, RANSAC inliers, box) per geometrically verified brand
    geo: tuple[tuple[str, str, int, tuple[int, int, int, int]], ...] = ()

    def to_bytes(self) -> bytes:
        return orjson.dumps({"l": self.logos, "c": self.copies, "t": self.text, "e": self.error, "g": self.geo})

    @classmethod
    def from_bytes(cls, data: bytes) -> "ImageOutcome":
        d = orjson.loads(data)
        return cls(tuple((a, b, p, s, tuple(box)) for a, b, p, s, box in d["l"]),
                   tuple(tuple(c) for c in d["c"]), tuple(d["t"]), d["e"],
                   tuple((a, b, n, tuple(box)) for a, b, n, box in d["g"]))


@dataclass
class ImageStats:
    fetched: int = 0
    cache_hits: int = 0
    embedded: int = 0
    ocr_read: int = 0
    failures: int = 0


def logo_score(p: float) -> float:
    if p >= LOGO_ENFORCE_PROB:
        return LOGO_ENFORCE_SCORE
    if p >= LOGO_REVIEW_PROB:
        return LOGO_REVIEW_SCORE
    return 0.0


def geo_score(inliers: int) -> float:
    if inliers >= GEO_ENFORCE_INLIERS:
        return GEO_ENFORCE_SCORE
    if inliers >= GEO_SUPPORT_INLIERS:
        return GEO_SUPPORT_SCORE
    return 0.0


class ImageSignals:
    def __init__(self, *, logos: LogoIndex | None, copies: ImageCopyIndex, wordmarks: WordMarkIndex,
                 extractor: FeatureExtractor, reader, fetch: Fetch, fingerprint: bytes,
                 cache_path: str | Path | None = None, build_errors: Sequence[str] = (),
                 geometry: LogoGeometryIndex | None = None):
        self.logos, self.copies, self.wordmarks = logos, copies, wordmarks
        self.geometry = geometry
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
        # When set and true for a claimed digest, that image is fetched and hashed even if its
        # outcome is cached (the feedback loop must not take the claim of a removed image's digest).
        self.verify: Callable[[str], bool] | None = None
        self.stats = ImageStats()

    @classmethod
    def build(cls, brands: Iterable[BrandReference], fetch: Fetch, base_dir: str | None = None, *,
              cache_path: str | Path | None = None, threads: int = 1, batch_size: int = 8,
              model_path: Path = DEFAULT_MODEL, head_path: Path | None = None, ocr: bool = True,
              extractor: FeatureExtractor | None = None, reader=None, geometry: bool = True,
              ocr_upscale: bool = False) -> "ImageSignals":
        """Index every live brand's logos and product images. Logo uris are resolved by
        `fetch` against `base_dir`; an image that cannot be fetched or decoded is skipped and
        listed in `build_errors` (the brand still matches on its other logos and its marks).
        `ocr_upscale`: small photos are also read scaled up (models.ocr.UPSCALE_SIDE)."""
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        cv2.setNumThreads(threads)
        faiss.omp_set_num_threads(threads)
        live = [b for b in brands if not b.deleted]
        extractor = extractor or FeatureExtractor(model_path, threads=threads, batch_size=batch_size)
        if reader is None and ocr:
            from models.ocr import TextReader
            reader = TextReader(threads=threads, upscale=ocr_upscale)
        errors: list[str] = []
        fp = hashlib.blake2b(digest_size=16)
        # what the cached per-image outcomes depend on besides the catalogue
        reading = "none" if reader is None else f"{type(reader).__name__}|{getattr(reader, 'upscale', False)}"
        fp.update(f"{RESULT_VERSION}|{geometry}|{Path(model_path).name}|{reading}".encode())
        if head_path is not None:
            fp.update(hashlib.sha256(Path(head_path).read_bytes()).digest())

        def load(ref: ImageRef, brand_id: str) -> np.ndarray | None:
            try:
                rgb = decode_rgb(fetch(ref.uri, base_dir, ref.sha256))
            except (OSError, ValueError) as e:
                errors.append(f"{brand_id} {ref.uri}: {e}")
                return None
            fp.update(f"{brand_id}|{ref.uri}|{ref.sha256}".encode())
            return rgb

        logo_imgs, prod = [], []
        for b in sorted(live, key=lambda b: b.brand_id):
            fp.update(f"brand|{b.brand_id}|{b.version}".encode())
            for ref in b.logos:
                rgb = load(ref, b.brand_id)
                if rgb is not None:
                    logo_imgs.append((b.brand_id, ref.uri, rgb))
            for ref in b.product_images:
                rgb = load(ref, b.brand_id)
                if rgb is not None:
                    prod.append((b.brand_id, ref.uri, rgb))
        logos = LogoIndex.build(logo_imgs, extractor, LogoHead.load(head_path)) if head_path is not None else None
        hashes, embs = [], []
        if prod:
            canv = [letterbox(rgb, QUERY_SIDE)[0] for _, _, rgb in prod]
            feats = extractor.features(canv)
            for (_, _, rgb), f in zip(prod, feats):
                hashes.append(pdq(rgb)[0])
                embs.append(global_embedding(f, valid_cells(*rgb.shape[:2])))
        copies = ImageCopyIndex([(b, u) for b, u, _ in prod], np.array(hashes, np.uint8).reshape(-1, 32),
                                np.array(embs, np.float32).reshape(len(embs), 1280))
        return cls(logos=logos, copies=copies, wordmarks=WordMarkIndex.build(live), extractor=extractor,
                   reader=reader, fetch=fetch, fingerprint=fp.digest(), cache_path=cache_path,
                   build_errors=errors, geometry=LogoGeometryIndex.build(logo_imgs) if geometry else None)

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
    def find(self, listings: Sequence[Listing], base_dir: str | None = None) -> list[list[Evidence]]:
        """Evidence per listing from its images (one list per listing, in order)."""
        outcome: dict[tuple[int, int], ImageOutcome] = {}
        pending: dict[str, list[tuple[int, int]]] = {}     # sha256 -> image slots to fill
        decoded: dict[str, np.ndarray] = {}
        digests: list[set[str]] = [set() for _ in listings]
        self.last_digests = []
        for li, listing in enumerate(listings):
            if listing.op is Op.DELETE:
                continue
            for ii, ref in enumerate(listing.images):
                if ref.sha256 and not (self.verify is not None and self.verify(ref.sha256.lower())):
                    sha = ref.sha256.lower()
                    hit = self._get(sha)
                    if hit is not None:
                        self.stats.cache_hits += 1
                        outcome[li, ii] = hit
                        continue
                    if sha in pending:
                        pending[sha].append((li, ii))
                        continue
                try:
                    data = self._fetch(ref.uri, base_dir, ref.sha256)
                except (OSError, ValueError) as e:      # transient or not: not cached
                    self.stats.failures += 1
                    outcome[li, ii] = ImageOutcome(error=f"fetch failed: {e}")
                    continue
                self.stats.fetched += 1
                sha = hashlib.sha256(data).hexdigest()
                if ref.sha256 and ref.sha256.lower() != sha:
                    self.stats.failures += 1
                    outcome[li, ii] = ImageOutcome(error=f"sha256 mismatch: listing says {ref.sha256}, got {sha}")
                    continue
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
                    decoded[sha] = decode_rgb(data)
                except ImageDecodeError as e:
                    self.stats.failures += 1
                    bad = ImageOutcome(error=str(e))
                    self._put(sha, bad)               # the same bytes will fail the same way
                    for slot in pending.pop(sha):
                        outcome[slot] = bad
        for sha, out in self._analyse(decoded).items():
            self._put(sha, out)
            for slot in pending[sha]:
                outcome[slot] = out
        self.last_digests = [frozenset(d) for d in digests]
        return [self._evidence(listing, [outcome.get((li, ii)) for ii in range(len(listing.images))])
                for li, listing in enumerate(listings)]

    def _analyse(self, decoded: dict[str, np.ndarray]) -> dict[str, ImageOutcome]:
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
                          if logo_score(h.probability) > 0)
            copies: tuple = ()
            if len(self.copies):
                packed, quality = pdq(rgb)
                copies = tuple((c.brand_id, c.image_uri, c.distance, round(c.similarity, 4))
                               for c in self.copies.match(packed, quality, global_embedding(f, valid_cells(*hw))))
            geo: tuple = ()
            if self.geometry is not None:
                geo = tuple((g.brand_id, g.logo_uri, g.inliers, g.box) for g in self.geometry.match(rgb)
                            if geo_score(g.inliers) > 0)
            out[sha] = ImageOutcome(logos, copies, tuple(line.text for line in lines), geo=geo)
        return out

    def _evidence(self, listing: Listing, outcomes: Sequence[ImageOutcome | None]) -> list[Evidence]:
        # best signal per (brand, kind): the same logo on five photos is one piece of evidence
        best: dict[tuple[str, SignalKind], Signal] = {}
        errors: list[Signal] = []

        def keep(brand_id: str, sig: Signal) -> None:
            cur = best.get((brand_id, sig.kind))
            if cur is None or sig.score > cur.score:
                best[brand_id, sig.kind] = sig

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
                                         "similarity": sim, "box": list(box), "score_head": logo_score(p)}
            for brand_id, logo_uri, n, box in out.geo:
                d = logo_detail.setdefault(brand_id, {"image_uri": ref.uri, "logo_uri": logo_uri, "box": list(box)})
                d.update(inliers=n, geo_logo_uri=logo_uri, geo_box=list(box), score_geo=geo_score(n))
            for brand_id, d in logo_detail.items():
                keep(brand_id, Signal(SignalKind.LOGO, combine([d.get("score_head", 0.0), d.get("score_geo", 0.0)]), d))
            for brand_id, uri, dist, sim in out.copies:
                score = PDQ_SCORE if dist is not None else EMBED_SCORE
                keep(brand_id, Signal(SignalKind.IMAGE_COPY, score, {
                    "image_uri": ref.uri, "product_image_uri": uri, "pdq_distance": dist, "similarity": sim}))
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
