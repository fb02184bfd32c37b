"""Throughput of the image signals on one core: new images (fetch, decode, backbone, logo and
copy matching, OCR) and cached ones (sha256 known, answered from the cache).

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.eval_logos_offline import DEFAULT_DATA, file_fetch  # noqa: E402
from brand_signals.contract import parse_brand, parse_listing  # noqa: E402
from brand_signals.image_signals import ImageSignals  # noqa: E402

BATCH = 32


def run(sig: ImageSignals, listings, base: str) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(listings), BATCH):
        sig.find(listings[i:i + BATCH], base)
    return time.perf_counter() - t0


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
    res: dict = {"threads": 1, "images": a.n}
    for ocr in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            sig = ImageSignals.build(brands, file_fetch, base, ocr=ocr, cache_path=Path(tmp) / "c", threads=1)
            sig.find(listings[-2:], base)                       # warm-up (sessions, allocations)
            chunk = listings[:a.n]
            t_new = run(sig, chunk, base)
            reps = max(1, 20_000 // a.n)
            t_cached = run(sig, chunk * reps, base)
            sig.close()
        tag = "" if ocr else "_without_ocr"
        res[f"new_images_per_s_per_core{tag}"] = round(a.n / t_new, 2)
        res[f"new_ms_per_image{tag}"] = round(t_new / a.n * 1000, 1)
        res[f"cached_images_per_s_per_core{tag}"] = round(a.n * reps / t_cached, 0)
        print(f"ocr={ocr}: new {a.n / t_new:.1f} img/s ({t_new / a.n * 1000:.0f} ms/img), "
              f"cached {a.n * reps / t_cached:,.0f} img/s")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
