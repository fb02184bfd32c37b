""""Would this listing match my marks, and why?": a pasted title (and brand field, description)
or an uploaded photo, run in the API process through the job's own scanner (`Scanner` over a
`Catalog` of the owner's brands, `decide`), without Flink. Only the owner's own brands are in
the catalogue, as last submitted (pending ones included: the answer says what the job would
do once they are approved)."""
from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from brand_signals.catalog import Catalog
from brand_signals.decide import decide
from brand_signals.records import BrandReference, ImageRef, Listing
from brand_signals.scanner import MODEL_VERSION, Scanner
from connectors.image_store import check_image, sha256_hex

if TYPE_CHECKING:
    from pipelines.scan_config import ImageScan

_versions = itertools.count(1)
# A check's listing: no seller of any brand's authorized list can be named by the portal.
CHECK_SELLER = "portal-check"
# Owners whose scanners (and their image indexes) are kept warm.
MAX_SCANNERS = 32


class ListingCheck:
    """`images`: None for text only, else the job's image configuration
    (pipelines.scan_config.ImageScan); uploaded photos are written under `work_dir` (the only
    folder the listing fetcher may read) for the time of one check."""

    def __init__(self, work_dir: Path | None = None,
                 images: "ImageScan | Callable[[], ImageScan | None] | None" = None) -> None:
        """`images` may be a function that returns the configuration, called at the first photo
        check (not at every API start)."""
        if images is not None and work_dir is None:
            raise ValueError("image checks need a work folder")
        self.work_dir = Path(work_dir) if work_dir is not None else Path(".")
        self._images_cfg = images
        self._scanners: dict[str, tuple[tuple, Catalog, Scanner]] = {}
        self._lock = threading.Lock()
        self._fetcher = None
        self._references = None

    @property
    def images(self) -> "ImageScan | None":
        cfg = self._images_cfg
        if callable(cfg):
            cfg = self._images_cfg = cfg()
        return cfg

    @property
    def images_enabled(self) -> bool:
        return self._images_cfg is not None

    def _image_factory(self):
        cfg = self.images
        if cfg is None:
            return None
        from brand_signals.images.image_signals import ImageSignals, ReferenceCache
        from connectors.image_fetch import ListingFetcher, fetch

        if self._fetcher is None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self._fetcher = ListingFetcher(cfg.egress.with_local_root(self.work_dir), cfg.fetch)
            self._references = ReferenceCache()

        def build(catalog: Catalog):
            return ImageSignals.build(catalog.brands.values(), fetch, None, threads=1, ocr=cfg.ocr,
                                      ocr_upscale=cfg.ocr_upscale, references=self._references,
                                      listing_fetch=self._fetcher, wordmarks=catalog.wordmarks, device=cfg.device)
        return build

    def _scanner(self, owner: str, brands: Sequence[BrandReference]) -> tuple[Catalog, Scanner]:
        key = tuple(sorted((b.brand_id, b.version) for b in brands))
        held = self._scanners.get(owner)
        if held is not None and held[0] == key:
            return held[1], held[2]
        if held is not None:
            held[2].close()
        catalog = Catalog.build(brands, version=next(_versions))
        # the image source is built only for a listing with a photo (text checks load no model)
        images = (lambda c: self._image_factory()(c)) if self.images_enabled else None
        scanner = Scanner(MODEL_VERSION, memo_entries=256, images=images, image_base_dir=str(self.work_dir))
        if len(self._scanners) >= MAX_SCANNERS:
            _k, (_key, _c, old) = next(iter(self._scanners.items()))
            old.close()
            del self._scanners[_k]
        self._scanners[owner] = (key, catalog, scanner)
        return catalog, scanner

    def check(self, owner: str, brands: Sequence[BrandReference], *, title: str = "", brand: str = "",
              description: str = "", image: bytes | None = None) -> list[dict[str, Any]]:
        """Per brand of the owner's that the listing presents: the signals found and the action
        the job would take (None: below the brand's enforcement threshold)."""
        live = [b for b in brands if not b.deleted]
        if not live:
            return []
        refs: tuple[ImageRef, ...] = ()
        path = None
        if image is not None:
            if self.images is None:
                raise ValueError("image checks are off on this server (ZEROSCAN_IMAGES=off)")
            check_image(image)                      # the same checks as an uploaded logo
            sha = sha256_hex(image)
            self.work_dir.mkdir(parents=True, exist_ok=True)
            path = self.work_dir / f"check-{sha}"
            path.write_bytes(image)
            refs = (ImageRef(path.name, sha),)
        listing = Listing(listing_id="portal-check", seller_id=CHECK_SELLER, event_time_ms=int(time.time() * 1000),
                          title=title, brand=brand, description=description, images=refs)
        try:
            with self._lock:
                catalog, scanner = self._scanner(owner, live)
                [evidence] = scanner.evidence(catalog, [listing])
                decision = decide(listing, evidence, catalog.brands, int(time.time() * 1000), MODEL_VERSION)
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
        by_brand: dict[str, list] = {}
        for ev in evidence:
            by_brand.setdefault(ev.brand_id, []).extend(s.to_json() for s in ev.signals)
        out = []
        for bid, sigs in by_brand.items():
            if bid not in catalog.brands:
                continue
            action = decision.action.value if decision is not None and decision.brand_id == bid else None
            out.append({"brand_id": bid, "name": catalog.brands[bid].name, "signals": sigs, "action": action,
                        "score": decision.score if action else max((s["score"] for s in sigs), default=0.0)})
        unscanned = [s.to_json() for ev in evidence if not ev.brand_id for s in ev.signals]
        if unscanned:
            out.append({"brand_id": "", "name": "", "signals": unscanned, "action": None, "score": 0.0})
        return out

    def close(self) -> None:
        with self._lock:
            for _k, _c, s in self._scanners.values():
                s.close()
            self._scanners.clear()
            if self._fetcher is not None and hasattr(self._fetcher, "close"):
                self._fetcher.close()
