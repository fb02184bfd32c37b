"""Per-family recall and precision of text matching on a labelled set in the contract's
formats (default: benchmarks/data/disguise_families; also benchmarks/data/japanese).

    .venv/bin/python -m benchmarks.disguise_families [--data DIR] [--errors N]

Runs the scanner's text path in process (WordMarkIndex.match_many, then decide with
now_ms = the listing's event time) and scores like the shared scorer: a listing is flagged
when its decision is takedown, review or notify; a true positive is flagged for the
labelled brand. Prints one row per `variant` (the disguise family, or the kind of negative).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brand_signals.contract import parse_brand, parse_listing  # noqa: E402
from brand_signals.decide import decide  # noqa: E402
from brand_signals.records import Action  # noqa: E402
from brand_signals.text.textnorm import common_words, dictionary_words  # noqa: E402
from brand_signals.text.wordmarks import WordMarkIndex  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "disguise_families"
FLAGGED = {Action.TAKEDOWN, Action.REVIEW, Action.NOTIFY}


def evaluate(data: Path, errors: int = 0) -> dict:
    brands = [parse_brand(x) for x in (data / "brands.jsonl").read_bytes().splitlines() if x.strip()]
    listings = [parse_listing(x) for x in (data / "listings.jsonl").read_bytes().splitlines() if x.strip()]
    labels = [json.loads(x) for x in (data / "labels.jsonl").read_text().splitlines() if x.strip()]
    index = WordMarkIndex.build(brands)
    by_id = {b.brand_id: b for b in brands}
    common_words(); dictionary_words()
    t0 = time.perf_counter()
    flagged: dict[str, str] = {}
    for listing, ev in zip(listings, index.match_many(listings)):
        d = decide(listing, ev, by_id, listing.event_time_ms)
        if d is not None and d.action in FLAGGED:
            flagged[listing.listing_id] = d.brand_id
    seconds = time.perf_counter() - t0
    by_listing = {x.listing_id: x for x in listings}
    rows: dict[str, Counter] = {}
    examples: dict[str, list[str]] = {}
    for lab in labels:
        c = rows.setdefault(lab["variant"], Counter())
        lid = lab["listing_id"]
        got = flagged.get(lid)
        c["rows"] += 1
        if lab["infringing"]:
            c["infringing"] += 1
            if got == lab["brand_id"]:
                c["tp"] += 1
            elif got is not None:
                c["fp"] += 1
        elif got is not None:
            c["fp"] += 1
        bad = (lab["infringing"] and got != lab["brand_id"]) or (not lab["infringing"] and got is not None)
        if bad and errors:
            x = by_listing[lid]
            examples.setdefault(lab["variant"], []).append(
                f"  {lid} label={lab.get('brand_id')} got={got} shown={lab.get('shown')!r} "
                f"brand={x.brand!r} title={x.title[:100]!r}")
    total = sum(rows.values(), Counter())
    flagged_n = len(flagged)
    return {"rows": rows, "total": total, "flagged": flagged_n, "seconds": seconds, "listings": len(listings),
            "examples": examples}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--errors", type=int, default=0, help="print up to N errors per variant")
    a = ap.parse_args(argv)
    r = evaluate(a.data, a.errors)
    t = r["total"]
    precision = t["tp"] / r["flagged"] if r["flagged"] else 1.0
    recall = t["tp"] / t["infringing"] if t["infringing"] else 0.0
    print(f"{r['listings']} listings matched in {r['seconds']:.2f} s; flagged {r['flagged']}  "
          f"TP {t['tp']}  FP {t['fp']}  precision {precision:.4f}  recall {recall:.4f}")
    print(f"{'variant':<20}{'rows':>6}{'infr':>6}{'TP':>6}{'recall':>8}{'FP':>5}")
    for variant, c in sorted(r["rows"].items(), key=lambda kv: (-kv[1]["infringing"] > 0, kv[0])):
        rec = f"{c['tp'] / c['infringing']:.3f}" if c["infringing"] else "n/a"
        print(f"{variant:<20}{c['rows']:>6}{c['infringing']:>6}{c['tp']:>6}{rec:>8}{c['fp']:>5}")
    for variant, ex in sorted(r["examples"].items()):
        print(f"\n== {variant}: {len(ex)} errors")
        print("\n".join(ex[:a.errors]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
