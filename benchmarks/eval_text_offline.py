"""Offline evaluation of text matching on a labelled set (default: shared/eval/dev/text).

    .venv/bin/python benchmarks/eval_text_offline.py [--data DIR] [--out FILE] [--errors N]

Parses brands and listings with brand_signals.contract, builds the WordMarkIndex, runs
match_many and decide_all (now_ms = listing.event_time_ms), writes decision JSONL as the job
does (one per listing and brand, the strongest last, which the scorer keeps) and runs the
shared scorer on it; also counts the listings decided for more than one brand. --errors N prints up to N false positives / misses per variant.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brand_signals.contract import parse_brand, parse_listing  # noqa: E402
from brand_signals.decide import decide_all  # noqa: E402
from brand_signals.text.textnorm import common_words, dictionary_words  # noqa: E402
from brand_signals.text.wordmarks import WordMarkIndex  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev" / "text"
DEFAULT_SCORER = Path(__file__).resolve().parents[2] / "shared" / "eval" / "score.py"
BATCH = 256


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--scorer", type=Path, default=DEFAULT_SCORER)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/tmp/text_decisions.jsonl"))
    ap.add_argument("--errors", type=int, default=0, help="print up to N errors per variant")
    a = ap.parse_args(argv)

    brands = [parse_brand(line) for line in (a.data / "brands.jsonl").read_bytes().splitlines() if line.strip()]
    listings = [parse_listing(line) for line in (a.data / "listings.jsonl").read_bytes().splitlines() if line.strip()]
    t0 = time.perf_counter()
    index = WordMarkIndex.build(brands)
    t_build = time.perf_counter() - t0
    by_id = {b.brand_id: b for b in brands}
    common_words(); dictionary_words()   # once-per-process word list loads (~1 s) stay out of the timing

    t0 = time.perf_counter()
    decisions = {}
    every: list = []
    evidence_of = {}
    for i in range(0, len(listings), BATCH):
        chunk = listings[i:i + BATCH]
        for listing, ev in zip(chunk, index.match_many(chunk)):
            evidence_of[listing.listing_id] = ev
            ds = decide_all(listing, ev, by_id, listing.event_time_ms)
            every += ds
            if ds:
                decisions[listing.listing_id] = ds[-1]
    t_match = time.perf_counter() - t0

    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "wb") as f:
        for d in every:
            f.write(orjson.dumps(d.to_json()) + b"\n")
    print(f"index: {len(index)} marks, built in {t_build * 1000:.1f} ms; matched {len(listings)} listings "
          f"in {t_match:.2f} s ({len(listings) / t_match:,.0f}/s incl. decide); {len(every)} decisions for "
          f"{len(decisions)} listings "
          f"-> {a.out}")
    subprocess.run([sys.executable, str(a.scorer), str(a.data / "labels.jsonl"), str(a.out)], check=True)
    labelled = {}
    for x in (a.data / "labels.jsonl").read_text().splitlines():
        if x.strip():
            lab = json.loads(x)
            labelled[lab["listing_id"]] = {lab.get("brand_id")} | set(lab.get("alt_brand_ids") or [])
    extra = [d for d in every if decisions[d.listing_id] is not d]
    print(f"per brand: {len({d.listing_id for d in extra})} listings decided for more than one brand, "
          f"{len(extra)} decisions besides the strongest ({sum(d.brand_id in labelled.get(d.listing_id, ()) for d in extra)}"
          f" for a labelled brand)")

    if a.errors:
        labels = [json.loads(x) for x in (a.data / "labels.jsonl").read_text().splitlines() if x.strip()]
        by_listing = {x.listing_id: x for x in listings}
        errors: dict[str, list[str]] = defaultdict(list)
        for lab in labels:
            lid = lab["listing_id"]
            d = decisions.get(lid)
            ok_brands = {lab.get("brand_id")} | set(lab.get("alt_brand_ids") or [])
            flagged_ok = d is not None and d.brand_id in ok_brands
            x = by_listing[lid]
            if lab["infringing"] and not flagged_ok:
                kind = "MISS"
            elif not lab["infringing"] and d is not None:
                kind = "FP"
            elif lab["infringing"] and d is not None and not flagged_ok:
                kind = "WRONG"
            else:
                continue
            extra = {k: lab[k] for k in ("mention", "shown", "mentions", "near_miss") if k in lab}
            sig = "" if d is None else f" -> {d.brand_id} {[s.detail for s in d.signals[:2]]}"
            errors[lab["variant"]].append(
                f"  {kind} {lid} label={lab.get('brand_id')} brand={x.brand!r} title={x.title[:110]!r} {extra}{sig}")
        for variant, rows in sorted(errors.items()):
            print(f"\n== {variant}: {len(rows)} errors")
            for r in rows[:a.errors]:
                print(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
