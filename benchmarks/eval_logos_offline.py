"""Offline evaluation of the image signals on the labelled logo set (default:
shared/eval/dev/logos).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eval_logos_offline.py [--data DIR] [--head NPZ]
        [--no-ocr | --ocr-upscale] [--no-logo] [--out FILE]

Builds ImageSignals over brands.jsonl (logos fetched from files), runs `find` over the
listings in batches, turns the evidence into decisions with brand_signals.decide, writes them
as JSONL and runs the shared scorer (`--by reference_logo`). With a fold head from
`benchmarks/research/train_logo_head.py --folds K` (whose npz names its held-out brands) it also
scores the held-out brands alone: their logo photos plus every no_logo photo.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brand_signals.contract import parse_brand, parse_listing  # noqa: E402
from brand_signals.decide import decide  # noqa: E402
from brand_signals.images.image_signals import ImageSignals  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev" / "logos"
DEFAULT_SCORER = Path(__file__).resolve().parents[2] / "shared" / "eval" / "score.py"
BATCH = 32


def file_fetch(uri: str, base_dir: str | None, sha256: str | None) -> bytes:
    """Local files only (relative to base_dir, absolute, or file://); checks sha256 when given."""
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    if "://" in path:
        raise ValueError(f"file_fetch only reads local files, not {uri}")
    p = Path(path) if os.path.isabs(path) or base_dir is None else Path(base_dir) / path
    data = p.read_bytes()
    if sha256 and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise ValueError(f"{uri}: sha256 mismatch")
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--scorer", type=Path, default=DEFAULT_SCORER)
    ap.add_argument("--head", type=Path, default=None,
                    help="also run the learned logo head (research, off in the job), e.g. "
                         "benchmarks/research/logo_head.npz or a fold head from "
                         "benchmarks/research/train_logo_head.py --folds K")
    ap.add_argument("--no-ocr", action="store_true")
    ap.add_argument("--ocr-upscale", action="store_true", help="also read small photos scaled up (as ZEROSCAN_IMAGE_OCR=upscale)")
    ap.add_argument("--no-logo", action="store_true", help="OCR only (logo index left empty)")
    ap.add_argument("--cache", type=Path, default=None, help="rocksdict path (default: no cache)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/tmp/logo_decisions.jsonl"))
    a = ap.parse_args(argv)

    brands = [parse_brand(x) for x in (a.data / "brands.jsonl").read_bytes().splitlines() if x.strip()]
    listings = [parse_listing(x) for x in (a.data / "listings.jsonl").read_bytes().splitlines() if x.strip()]
    if a.no_logo:
        import dataclasses
        brands = [dataclasses.replace(b, logos=()) for b in brands]
    by_id = {b.brand_id: b for b in brands}
    t0 = time.perf_counter()
    head = None
    if a.head is not None:
        from benchmarks.research.logos import LearnedHead
        head = LearnedHead.load(a.head)
    sig = ImageSignals.build(brands, file_fetch, str(a.data), head=head, ocr=not a.no_ocr,
                             ocr_upscale=a.ocr_upscale, cache_path=a.cache, threads=1)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    decisions = []
    for i in range(0, len(listings), BATCH):
        chunk = listings[i:i + BATCH]
        for listing, ev in zip(chunk, sig.find(chunk, str(a.data))):
            d = decide(listing, ev, by_id, listing.event_time_ms, model_version="zeroscan-image-1")
            if d is not None:
                decisions.append(d)
    t_find = time.perf_counter() - t0
    sig.close()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "wb") as f:
        for d in decisions:
            f.write(orjson.dumps(d.to_json()) + b"\n")
    print(f"built over {len(sig.logos) if sig.logos is not None else 0} head logo renderings in {t_build:.1f} s ({len(sig.build_errors)} errors); "
          f"{len(listings)} listings in {t_find:.1f} s ({t_find / len(listings) * 1000:.0f} ms/listing, 1 thread); "
          f"{len(decisions)} decisions -> {a.out}; stats {sig.stats}")
    labels_path = a.data / "labels.jsonl"
    subprocess.run([sys.executable, str(a.scorer), str(labels_path), str(a.out), "--by", "reference_logo"], check=True)
    held = [b for b in head.head.meta.get("held_out", []) if b] if head is not None else []
    if held:
        rows = [json.loads(x) for x in labels_path.read_text().splitlines() if x.strip()]
        keep = [r for r in rows if r["variant"] == "no_logo" or r.get("brand_id") in held]
        sub = a.out.with_name(a.out.stem + "_heldout_labels.jsonl")
        sub.write_text("".join(json.dumps(r) + "\n" for r in keep))
        print(f"\n== brands held out of this head's training only: {held} ({len(keep)} rows incl. no_logo) ==")
        subprocess.run([sys.executable, str(a.scorer), str(sub), str(a.out), "--by", "reference_logo"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
