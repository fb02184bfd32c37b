"""Image signals side by side: a new image's cost (fetch, decode, backbone, logo and copy
matching, OCR) on one core in two or more checkouts, alternating in fresh processes so that each
sees the machine at nearly the same time; with the dev catalogue as it is and with official
product photos (two per brand, as `benchmarks/images.py`), the stage breakdown of the latter, and
a digest of the evidence found per catalogue, so a change meant to be exact shows it is.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.ab_images [--rounds 2] [--n 96] NAME=CHECKOUT ...
    make bench-images-ab [BASE=HEAD~1]      # this tree against a worktree of BASE (~10 min)

CHECKOUT is the folder of a checkout (a worktree of the commit to compare, sharing this
virtualenv); this file's measurement runs against that checkout's code (its ImageSignals and
`benchmarks/images.py` stages). Prints one JSON line per checkout and round (ms per new image,
backbone passes per new image) and the ratios to the first NAME; writes nothing else.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import tempfile
import time
from pathlib import Path

BATCH = 32


DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev" / "logos"


def measure(n: int, data: Path) -> dict:
    """Run inside a checkout: the figures of its code."""
    from benchmarks.eval_logos_offline import file_fetch
    from benchmarks.images import PRODUCT_PHOTOS_PER_BRAND, stages
    from brand_signals.contract import parse_brand, parse_listing
    from brand_signals.images.image_signals import ImageSignals
    from brand_signals.records import ImageRef

    brands = [parse_brand(x) for x in (data / "brands.jsonl").read_bytes().splitlines() if x.strip()]
    listings = [parse_listing(x) for x in (data / "listings.jsonl").read_bytes().splitlines() if x.strip()]
    spare = iter(listings[n:])
    with_products = [dataclasses.replace(b, product_images=tuple(
        ImageRef(next(spare).images[0].uri) for _ in range(PRODUCT_PHOTOS_PER_BRAND))) for b in brands]
    chunk, base = listings[:n], str(data)
    out: dict = {}
    for tag, catalogue in (("dev", brands), ("with_product_photos", with_products)):
        with tempfile.TemporaryDirectory() as tmp:
            sig = ImageSignals.build(catalogue, file_fetch, base, ocr=True, cache_path=Path(tmp) / "c", threads=1)
            sig.find(listings[-2:], base)                       # warm-up (sessions, allocations)
            digest = hashlib.sha256()
            t0 = time.perf_counter()
            for i in range(0, len(chunk), BATCH):
                for ev in sig.find(chunk[i:i + BATCH], base):
                    digest.update(repr(sorted((e.brand_id, [(s.kind.value, round(s.score, 4)) for s in e.signals])
                                              for e in ev)).encode())
            out[f"{tag}_new_ms"] = round((time.perf_counter() - t0) / n * 1000, 1)
            out[f"{tag}_evidence_sha256"] = digest.hexdigest()[:16]
            if tag == "with_product_photos":
                st = stages(sig, chunk, base)
                out.update({f"stage_{k}_ms": v for k, v in st.items()})
                out["backbone_passes_dev"] = round(out["dev_new_ms"] / st["backbone"], 2)
                out["backbone_passes_with_product_photos"] = round(out[f"{tag}_new_ms"] / st["backbone"], 2)
            sig.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkouts", nargs="*", metavar="NAME=CHECKOUT")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n", type=int, default=96, help="new images measured per catalogue")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the dev logo set (its brands and photos)")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.n, args.data)), flush=True)
        return 0
    from benchmarks.alternate import alternate, checkouts   # this tree's, not the checkouts'

    pairs = checkouts(ap, args.checkouts)
    results = alternate(__file__, pairs, args.rounds, ["--n", str(args.n), "--data", str(args.data.resolve())],
                        env={"OMP_NUM_THREADS": "1"})
    if results is None:
        return 1
    first = pairs[0][0]
    for name, _ in pairs[1:]:
        for r, (a, b) in enumerate(zip(results[first], results[name])):
            ratios = {k: round(a[k] / b[k], 3) for k in a if k.endswith("_ms") and b.get(k)}
            print(f"round {r + 1}: {first}/{name} time per new image (>1: {name} faster): {json.dumps(ratios)}"
                  + "".join(f"  {k[:-len('_evidence_sha256')]} evidence "
                            + ("the same" if a[k] == b.get(k) else "DIFFERS")
                            for k in a if k.endswith("_evidence_sha256")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
