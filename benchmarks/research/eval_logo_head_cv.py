"""Cross-fitted evaluation of the learned logo head alone: does it recognise brands it was
not trained on?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/research/train_logo_head.py --fold 0 --folds 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/research/train_logo_head.py --fold 1 --folds 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/research/eval_logo_head_cv.py \\
        benchmarks/research/logo_head_fold0of2.npz benchmarks/research/logo_head_fold1of2.npz

Every logo photo is scored by the fold head that held its brand out of training (photos of
brands no head held out, e.g. word-mark-only brands, and the no_logo photos alternate
between heads). A photo is flagged with the brand of its most probable window when that
window passes both thresholds; precision and recall over the dev logo set's labels, for a
grid of (window probability, cosine similarity) thresholds. The job's thresholds are
logos.LOGO_REVIEW_PROB and logos.MIN_SIMILARITY.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.eval_logos_offline import DEFAULT_DATA, file_fetch  # noqa: E402
from benchmarks.research import logos as logos_mod  # noqa: E402
from benchmarks.research.logo_head import LogoHead  # noqa: E402
from brand_signals.contract import parse_brand  # noqa: E402
from brand_signals.images.image_decode import decode_rgb  # noqa: E402
from models.embedder import QUERY_SIDE, FeatureExtractor, letterbox  # noqa: E402

PROBS = (0.5, 0.8, 0.9, 0.97)
SIMS = (0.0, 0.8, 0.85, 0.88)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("heads", type=Path, nargs="+", help="fold heads (their npz names their held-out brands)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    a = ap.parse_args(argv)
    logos_mod.MIN_SIMILARITY = 0.0          # the grid below applies the floors
    logos_mod.MIN_REPORT_PROB = min(PROBS)
    fe = FeatureExtractor(threads=1)
    brands = [parse_brand(x) for x in (a.data / "brands.jsonl").read_bytes().splitlines() if x.strip()]
    refs = [(b.brand_id, r.uri, decode_rgb(file_fetch(r.uri, str(a.data), r.sha256))) for b in brands for r in b.logos]
    heads = [LogoHead.load(p) for p in a.heads]
    indexes = [logos_mod.LogoIndex.build(refs, fe, h) for h in heads]
    held = [set(h.meta.get("held_out", [])) - {""} for h in heads]
    labels = [json.loads(x) for x in (a.data / "labels.jsonl").read_text().splitlines() if x.strip()]
    listings = {json.loads(x)["listing_id"]: json.loads(x) for x in (a.data / "listings.jsonl").read_text().splitlines() if x.strip()}
    best: list[tuple[str | None, float, float]] = []
    for n, lab in enumerate(labels):
        k = next((i for i, h in enumerate(held) if lab.get("brand_id") in h), n % len(heads))
        rgb = decode_rgb(file_fetch(listings[lab["listing_id"]]["images"][0]["uri"], str(a.data), None))
        feats = fe.features([letterbox(rgb, QUERY_SIDE)[0]])[0]
        hits = indexes[k].match(feats, rgb.shape[:2])
        best.append(max(((h.brand_id, h.probability, h.similarity) for h in hits), key=lambda x: x[1], default=(None, 0.0, 0.0)))
    positives = sum(1 for lab in labels if lab["infringing"])
    print(f"{len(labels)} photos, {positives} with a logo; heads: {[p.name for p in a.heads]}")
    print(f"{'p >=':>6} {'sim >=':>7} {'flagged':>8} {'TP':>5} {'precision':>10} {'recall':>7}")
    for p in PROBS:
        for s in SIMS:
            flagged = tp = 0
            for lab, (b, prob, sim) in zip(labels, best):
                if b is not None and prob >= p and sim >= s:
                    flagged += 1
                    tp += bool(lab["infringing"] and b == lab["brand_id"])
            print(f"{p:6.2f} {s:7.2f} {flagged:8d} {tp:5d} {tp / max(1, flagged):10.3f} {tp / positives:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
