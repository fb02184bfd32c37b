"""How safe and how useful the feedback neighbour signal is, on the dev text set.

Every dev listing is scanned once (the scanner remembers what each presented); then a seeded
sample of infringing listings is removed by their brands (`brand_removal` feedback, judged as
the job judges it). Then:
- every honest listing (not infringing: clean, an authorized seller, a compatibility mention)
  is scanned again with what was learned: how many get a `feedback_neighbor` signal, and how
  many become flagged because of it (target 0);
- disguised re-posts of each removed listing by another seller (the mark taken out of the title
  and the brand field, plus a light edit: a word added, one dropped, two swapped) are scanned:
  how many the neighbour signal catches, and how many the marks alone would have caught.
The same counts for the previous rule (plain word-set Jaccard >= 0.6, every word alike) show
what weighting by rarity changes.

    .venv/bin/python benchmarks/neighbors_dev.py --data ../shared/eval/dev/text [--removals 300]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brand_signals.catalog import Catalog  # noqa: E402
from brand_signals.contract import parse_brand, parse_listing  # noqa: E402
from brand_signals.feedback.context import ContextStore  # noqa: E402
from brand_signals.feedback.fingerprints import fingerprint, jaccard  # noqa: E402
from brand_signals.feedback.ledger import LedgerKind  # noqa: E402
from brand_signals.feedback.state import FeedbackPolicy, FeedbackState, handle_feedback  # noqa: E402
from brand_signals.records import FeedbackEvent, FeedbackKind, Listing, SignalKind  # noqa: E402
from brand_signals.scanner import Scanner  # noqa: E402

T0 = 1_735_700_000_000
EDITS = ("add", "drop", "swap")


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def strip_marks(title: str, marks: tuple[str, ...]) -> str:
    for m in sorted(marks, key=len, reverse=True):
        title = re.sub(rf"(?i)(?<!\w){re.escape(m)}(?!\w)", " ", title)
    return re.sub(r"\s+", " ", title).strip()


def repost(listing: Listing, marks: tuple[str, ...], edit: str, n: int, rng: random.Random) -> Listing:
    words = strip_marks(listing.title, marks).split()
    if edit == "add":
        words.insert(rng.randrange(len(words) + 1), rng.choice(["NEW", "Original", "2024", "Sale", "Genuine"]))
    elif edit == "drop" and len(words) > 3:
        words.pop(rng.randrange(len(words)))
    elif edit == "swap" and len(words) > 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return dataclasses.replace(listing, listing_id=f"repost-{n}", seller_id=f"s-repost-{n}",
                               title=" ".join(words) or "item", brand="")


def neighbour_brands(decision) -> set[str]:
    if decision is None:
        return set()
    return {decision.brand_id} if any(s.kind is SignalKind.FEEDBACK_NEIGHBOR for s in decision.signals) else set()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder with brands.jsonl, listings.jsonl, labels.jsonl")
    ap.add_argument("--removals", type=int, default=300, help="infringing listings the brands remove")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--min-rarity", type=float, help="override FeedbackPolicy.neighbor_min_rarity")
    ap.add_argument("--jaccard", type=float, help="override FeedbackPolicy.neighbor_jaccard")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()

    brands = [parse_brand(line) for line in _lines(args.data / "brands.jsonl")]
    catalog = Catalog.build(brands, version=1)
    listings = [parse_listing(line) for line in _lines(args.data / "listings.jsonl")]
    labels = {d["listing_id"]: d for d in map(json.loads, _lines(args.data / "labels.jsonl"))}
    by_id = {x.listing_id: x for x in listings}

    policy = FeedbackPolicy()
    if args.min_rarity is not None:
        policy = dataclasses.replace(policy, neighbor_min_rarity=args.min_rarity)
    if args.jaccard is not None:
        policy = dataclasses.replace(policy, neighbor_jaccard=args.jaccard)
    state, contexts, scanner = FeedbackState(policy), ContextStore(), Scanner("bench")
    before = {x.listing_id: d for x, d in zip(listings, scanner.scan(catalog, listings, T0, state, contexts))}

    rng = random.Random(args.seed)
    infringing = sorted(lid for lid, lab in labels.items() if lab["infringing"])
    removed = rng.sample(infringing, min(args.removals, len(infringing)))
    accepted = []
    for i, lid in enumerate(removed):
        ev = FeedbackEvent(FeedbackKind.BRAND_REMOVAL, lid, labels[lid]["brand_id"], T0 + i, "owner", "counterfeit")
        _d, led = handle_feedback(ev, contexts.get(lid), state, catalog.brands, T0 + i)
        state.apply(led)
        if led.kind is LedgerKind.REMOVAL_ACCEPTED:
            accepted.append(lid)

    honest = [by_id[lid] for lid, lab in labels.items() if not lab["infringing"]]
    after = scanner.scan(catalog, honest, T0 + 10**6, state, ContextStore())
    honest_with_signal = sum(1 for d in after if neighbour_brands(d))
    honest_flagged_by_it = sum(1 for x, d in zip(honest, after) if neighbour_brands(d) and before[x.listing_id] is None)

    reposts, n = [], 0
    for lid in accepted:
        brand = catalog.brands[labels[lid]["brand_id"]]
        for edit in EDITS:
            reposts.append((brand.brand_id, repost(by_id[lid], brand.trademarks, edit, n, rng)))
            n += 1
    plain = Scanner("bench-no-feedback")
    marks_only = plain.scan(catalog, [r for _b, r in reposts], T0, None, None)
    learned = scanner.scan(catalog, [r for _b, r in reposts], T0 + 10**6, state, ContextStore())
    caught = sum(1 for (b, _r), d in zip(reposts, learned) if b in neighbour_brands(d))
    caught_any = sum(1 for (b, _r), d in zip(reposts, learned) if d is not None and d.brand_id == b)
    by_marks = sum(1 for (b, _r), d in zip(reposts, marks_only) if d is not None and d.brand_id == b)

    # the previous rule: plain Jaccard of the word sets >= 0.6, every word alike
    confirmed = [(labels[lid]["brand_id"], fingerprint(by_id[lid]).shingles) for lid in accepted]

    def old_rule(x: Listing) -> bool:
        fp = fingerprint(x).shingles
        return any(jaccard(fp, s) >= 0.6 for _b, s in confirmed)

    old_honest = sum(1 for x in honest if old_rule(x))
    old_caught = sum(1 for _b, r in reposts if old_rule(r))

    figures = {
        "neighbor_min_rarity": policy.neighbor_min_rarity, "neighbor_jaccard": policy.neighbor_jaccard,
        "removals": len(removed), "removals_accepted": len(accepted),
        "honest_listings": len(honest), "honest_with_neighbor_signal": honest_with_signal,
        "honest_flagged_by_neighbor": honest_flagged_by_it,
        "reposts": len(reposts), "reposts_caught_by_neighbor": caught, "reposts_flagged": caught_any,
        "reposts_caught_by_marks_alone": by_marks,
        "old_rule_honest_with_signal": old_honest, "old_rule_reposts_caught": old_caught,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
