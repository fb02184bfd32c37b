"""Throughput of the image signals on one core: new images (fetch, decode, backbone, logo and
copy matching, OCR) and cached ones (sha256 known, answered from the cache), with OCR as
shipped, with the optional upscaled second reading, and without OCR; with official product
photos in the catalogue (PRODUCT_PHOTOS_PER_BRAND per brand, other dev photos than those
measured), without and with their geometric verification; then where a new image's time goes,
stage by stage.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/images.py [--data DIR] [--n 96]

Writes benchmarks/results/images.json. Uses the dev logo set's brands and photos (the
catalogue of 127 brands, 246 logo files); run it with one thread, on an otherwise idle core.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.eval_logos_offline import DEFAULT_DATA, file_fetch  # noqa: E402
from brand_signals.contract import parse_brand, parse_listing  # noqa: E402
from brand_signals.images.image_copy import pdq  # noqa: E402
from brand_signals.images.image_decode import decode_rgb  # noqa: E402
from brand_signals.images.image_signals import COPY_GEO_REVIEW_INLIERS, GEO_SUPPORT_INLIERS, ImageSignals  # noqa: E402
from models.embedder import letterbox  # noqa: E402
from models.embedder import QUERY_SIDE  # noqa: E402

BATCH = 32
PRODUCT_PHOTOS_PER_BRAND = 2


def run(sig: ImageSignals, listings, base: str) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(listings), BATCH):
        sig.find(listings[i:i + BATCH], base)
    return time.perf_counter() - t0


def stages(sig: ImageSignals, listings, base: str) -> dict[str, float]:
    """Mean ms per new image of each stage, run one by one over the same photos."""
    t: dict[str, float] = {}

    def timed(name, fn, items):
        t0 = time.perf_counter()
        out = [fn(x) for x in items]
        t[name] = round((time.perf_counter() - t0) / len(items) * 1000, 2)
        return out

    data = timed("fetch", lambda x: file_fetch(x.images[0].uri, base, None), listings)
    rgbs = timed("decode", decode_rgb, data)
    canv = timed("letterbox", lambda r: letterbox(r, QUERY_SIDE)[0], rgbs)
    t0 = time.perf_counter()
    sig.extractor.features(canv)     # used when the catalogue has official product photos
    t["backbone"] = round((time.perf_counter() - t0) / len(canv) * 1000, 2)
    queries = timed("local_features", sig.geometry.query, rgbs)
    # with the floors ImageSignals uses (candidates that cannot reach them are not fitted)
    timed("logo_geometry", lambda x: sig.geometry.match(x[0], x[1], min_inliers=GEO_SUPPORT_INLIERS),
          list(zip(rgbs, queries)))
    if sig.copy_geometry is not None:
        timed("copy_geometry", lambda x: sig.copy_geometry.match(x[0], x[1], min_inliers=COPY_GEO_REVIEW_INLIERS),
              list(zip(rgbs, queries)))
    timed("pdq", pdq, rgbs)
    # the text detector alone (RapidOCR's first stage; recognition runs on its boxes only)
    timed("ocr_detect", lambda r: sig.reader._ocr.text_det(np.ascontiguousarray(r[:, :, ::-1])), rgbs)
    timed("ocr", lambda r: sig.reader.read([r]), rgbs)
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "images.json")
    a = ap.parse_args(argv)
    import tempfile

    brands = [parse_brand(x) for x in (a.data / "brands.jsonl").read_bytes().splitlines() if x.strip()]
    listings = [parse_listing(x) for x in (a.data / "listings.jsonl").read_bytes().splitlines() if x.strip()]
    base = str(a.data)
    import dataclasses

    from brand_signals.records import ImageRef
    spare = iter(listings[a.n:])
    with_products = [dataclasses.replace(b, product_images=tuple(
        ImageRef(next(spare).images[0].uri) for _ in range(PRODUCT_PHOTOS_PER_BRAND))) for b in brands]
    res: dict = {"threads": 1, "images": a.n, "product_photos": PRODUCT_PHOTOS_PER_BRAND * len(brands)}
    for tag, ocr, upscale, catalogue, copy_geo in (
            ("", True, False, brands, True), ("_ocr_upscale", True, True, brands, True),
            ("_without_ocr", False, False, brands, True),
            ("_with_product_photos_hash_embedding_only", True, False, with_products, False),
            ("_with_product_photos", True, False, with_products, True)):
        with tempfile.TemporaryDirectory() as tmp:
            sig = ImageSignals.build(catalogue, file_fetch, base, ocr=ocr, ocr_upscale=upscale,
                                     cache_path=Path(tmp) / "c", threads=1, copy_geometry=copy_geo)
            sig.find(listings[-2:], base)                       # warm-up (sessions, allocations)
            chunk = listings[:a.n]
            t_new = run(sig, chunk, base)
            reps = max(1, 20_000 // a.n)
            t_cached = run(sig, chunk * reps, base)
            if tag == "_with_product_photos":
                res["stage_ms_per_image"] = stages(sig, chunk, base)
            sig.close()
        res[f"new_images_per_s_per_core{tag}"] = round(a.n / t_new, 2)
        res[f"new_ms_per_image{tag}"] = round(t_new / a.n * 1000, 1)
        res[f"cached_images_per_s_per_core{tag}"] = round(a.n * reps / t_cached, 0)
        print(f"{tag or 'ocr'}: new {a.n / t_new:.1f} img/s ({t_new / a.n * 1000:.0f} ms/img), "
              f"cached {a.n * reps / t_cached:,.0f} img/s")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
