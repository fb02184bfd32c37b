"""Recall per transformation and precision on edited copies of official product photos
(the set of benchmarks/make_photo_copies.py), before (copies found by PDQ hash or backbone
embedding only, as the job did) and after (plus geometric verification against the product
photos and their mirror images).

    .venv/bin/python benchmarks/make_photo_copies.py            # the set, seeded (~1 min)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eval_photo_copies.py [--data DIR]

Builds ImageSignals over the set's brands (product photos only, OCR off, so only `image_copy`
evidence is in play), runs `find` over every listing once, with the geometric support
threshold lowered to CALIBRATION_INLIERS so every verified copy is recorded, then scores the
evidence with the job's thresholds through brand_signals.decide (a listing is found when it
gets a decision for its brand). Before = the same signals without their geometric part (what
the job emitted before). Also prints the precision and recall geometric hits alone would
give at each inlier threshold (how the thresholds were chosen). Writes
benchmarks/results/photo_copies.json and photo_copies.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.eval_logos_offline import file_fetch  # noqa: E402
from benchmarks.make_photo_copies import DEFAULT_OUT, TRANSFORMS  # noqa: E402
from brand_signals.images import image_signals  # noqa: E402
from brand_signals.contract import parse_brand, parse_listing  # noqa: E402
from brand_signals.decide import combine, decide  # noqa: E402
from brand_signals.records import Evidence, SignalKind  # noqa: E402

BATCH = 32
CALIBRATION_INLIERS = 4
RESULTS = Path(__file__).resolve().parent / "results"


def rescore(evidence: list[Evidence], geometric: bool) -> list[Evidence]:
    """Copy signals scored with the job's thresholds; without their geometric part when not
    `geometric` (a signal found only geometrically then disappears)."""
    out = []
    for ev in evidence:
        sigs = []
        for s in ev.signals:
            if s.kind is not SignalKind.IMAGE_COPY:
                sigs.append(s)
                continue
            parts = [s.detail.get("score_copy", 0.0)]
            if geometric and "inliers" in s.detail:
                parts.append(image_signals.copy_geo_score(s.detail["inliers"]))
            score = combine(parts)
            if score > 0:
                sigs.append(dataclasses.replace(s, score=score))
        if sigs:
            out.append(Evidence(ev.brand_id, tuple(sigs)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--out", type=Path, default=RESULTS / "photo_copies.json")
    a = ap.parse_args(argv)
    brands = [parse_brand(x) for x in (a.data / "brands.jsonl").read_bytes().splitlines() if x.strip()]
    listings = [parse_listing(x) for x in (a.data / "listings.jsonl").read_bytes().splitlines() if x.strip()]
    labels = {r["listing_id"]: r for r in map(json.loads, (a.data / "labels.jsonl").read_text().splitlines())}
    by_id = {b.brand_id: b for b in brands}
    shipped = (image_signals.COPY_GEO_ENFORCE_INLIERS, image_signals.COPY_GEO_REVIEW_INLIERS)

    t0 = time.perf_counter()
    sig = image_signals.ImageSignals.build(brands, file_fetch, str(a.data), ocr=False, threads=1)
    t_build = time.perf_counter() - t0
    image_signals.COPY_GEO_REVIEW_INLIERS = CALIBRATION_INLIERS    # record every verified copy
    t0 = time.perf_counter()
    evidence: dict[str, list[Evidence]] = {}
    for i in range(0, len(listings), BATCH):
        chunk = listings[i:i + BATCH]
        for listing, ev in zip(chunk, sig.find(chunk, str(a.data))):
            evidence[listing.listing_id] = ev
    t_find = time.perf_counter() - t0
    image_signals.COPY_GEO_REVIEW_INLIERS = shipped[1]
    sig.close()

    def score(geometric: bool) -> dict:
        per = defaultdict(lambda: {"positives": 0, "found": 0, "distractors": 0, "distractors_flagged": 0,
                                   "wrong_brand": 0})
        tp = flagged = 0
        for listing in listings:
            lab = labels[listing.listing_id]
            d = decide(listing, rescore(evidence[listing.listing_id], geometric), by_id, 0)
            row = per[lab["transform"]]
            if d is not None:
                flagged += 1
            if lab["infringing"]:
                row["positives"] += 1
                if d is not None and d.brand_id == lab["brand_id"]:
                    row["found"] += 1
                    tp += 1
                elif d is not None:
                    row["wrong_brand"] += 1
            else:
                row["distractors"] += 1
                row["distractors_flagged"] += d is not None
        pos = sum(r["positives"] for r in per.values())
        return {"precision": round(tp / flagged, 4) if flagged else 1.0, "recall": round(tp / pos, 4),
                "flagged": flagged, "true_positives": tp,
                "by_transform": {t: {**r, "recall": round(r["found"] / r["positives"], 3)} for t, r in per.items()}}

    before, after = score(False), score(True)
    # geometric hits alone, per threshold: best-supported brand per listing
    sweep = {}
    for t in range(CALIBRATION_INLIERS, 25):
        tp = fp = 0
        for lid, ev in evidence.items():
            hits = [(s.detail["inliers"], e.brand_id) for e in ev for s in e.signals
                    if s.kind is SignalKind.IMAGE_COPY and s.detail.get("inliers", 0) >= t]
            if not hits:
                continue
            brand = max(hits)[1]
            if labels[lid]["infringing"] and brand == labels[lid]["brand_id"]:
                tp += 1
            else:
                fp += 1
        pos = sum(1 for r in labels.values() if r["infringing"])
        sweep[t] = {"recall": round(tp / pos, 4), "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
                    "false_positives": fp}
    res = {"listings": len(listings), "brands": len(brands), "product_photos": sum(len(b.product_images) for b in brands),
           "build_s": round(t_build, 1), "find_ms_per_image": round(t_find / len(listings) * 1000, 1),
           "thresholds": {"enforce_inliers": shipped[0], "review_inliers": shipped[1]},
           "before": before, "after": after, "geometric_alone_by_inliers": sweep}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")

    lines = ["| transformation | copies | recall before | recall after |", "|---|---:|---:|---:|"]
    for t in TRANSFORMS:
        if t in after["by_transform"]:
            b, f = before["by_transform"][t], after["by_transform"][t]
            lines.append(f"| {t} | {f['positives']} | {b['recall']:.3f} | **{f['recall']:.3f}** |")
    lines.append(f"| **all** | {sum(r['positives'] for r in after['by_transform'].values())} | "
                 f"{before['recall']:.3f} | **{after['recall']:.3f}** |")
    lines.append(f"| precision (flagged {before['flagged']} → {after['flagged']}) | | {before['precision']:.3f} | "
                 f"**{after['precision']:.3f}** |")
    dis_b = sum(r["distractors_flagged"] for r in before["by_transform"].values())
    dis_a = sum(r["distractors_flagged"] for r in after["by_transform"].values())
    dis_n = sum(r["distractors"] for r in after["by_transform"].values())
    wrong_b = sum(r["wrong_brand"] for r in before["by_transform"].values())
    wrong_a = sum(r["wrong_brand"] for r in after["by_transform"].values())
    lines.append(f"| distractors flagged (of {dis_n}) / copies given another brand | | {dis_b} / {wrong_b} | "
                 f"{dis_a} / {wrong_a} |")
    table = "\n".join(lines)
    (a.out.with_suffix(".md")).write_text(table + "\n")
    print(f"{len(brands)} brands, {res['product_photos']} product photos, built in {t_build:.1f} s; "
          f"{len(listings)} listings in {t_find:.1f} s ({res['find_ms_per_image']} ms/image, 1 thread)")
    print(table)
    print("\ngeometric hits alone, by least inliers: " + ", ".join(
        f"{t}: R {v['recall']:.3f} P {v['precision']:.3f} ({v['false_positives']} FP)" for t, v in sweep.items()))
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
