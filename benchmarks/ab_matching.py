"""Matching side by side: the scan operator's work per listing (parse, match, decide, write the
decisions: `pipeline_bench`'s steady measure, no content memo) of two or more checkouts, at 1 k
and at 1 M marks, alternating in fresh processes so that each sees the machine at nearly the
same time. Also split per listing: those the 1 M catalogue flags and those it does not, and a
digest of every decision written, so a change meant to be exact shows it is.

    .venv/bin/python -m benchmarks.ab_matching [--rounds 2] [--large 1000000] NAME=CHECKOUT ...

CHECKOUT is the folder of a checkout (a worktree of the commit to compare, sharing this
virtualenv); this file's measurement runs against that checkout's code. Prints one JSON line per
checkout and round (µs per listing: the faster of two passes) and the ratios to the first NAME;
writes nothing else. Each process builds the 1 M catalogue (~40 s).
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json

SMALL = 1000


def measure(large: int) -> dict:
    """Run inside a checkout: the figures of its code."""
    import orjson

    from benchmarks.pipeline_bench import CORE_BATCH, ScanContext, Scanner, _scan_all, steady_setup
    from benchmarks.traffic import brand_records
    from brand_signals.contract import listing_from_obj
    from connectors.serde import Origin
    from pipelines.steps import scan_records

    small, lines = steady_setup(brand_records(SMALL))
    big, _ = steady_setup(brand_records(large))   # the 1 k catalogue's traffic for both
    listings = [listing_from_obj(orjson.loads(line)) for line in lines]
    found = big.scanner.evidence(big.catalog, listings)
    groups = {"all": lines, "not_flagged": [x for x, e in zip(lines, found) if not e],
              "flagged": [x for x, e in zip(lines, found) if e]}
    # Not alive while timing: the cyclic collector's full collections walked these 20,000 parsed
    # listings and the 1 M catalogue's evidence for them (~20 µs of a listing's ~100 at 1 M
    # marks), which the scan worker does not hold.
    del listings, found
    gc.collect()

    def fresh(ctx):
        return ScanContext(ctx.catalog, Scanner("bench", memo_entries=0))

    digest = hashlib.sha256()
    origins = [Origin("listings", 0, i) for i in range(CORE_BATCH)]
    for ctx in (small, big):
        cold = fresh(ctx)
        for i in range(0, len(lines), CORE_BATCH):
            chunk = lines[i:i + CORE_BATCH]
            for row in scan_records(chunk, origins[:len(chunk)], cold, 0):
                digest.update(repr((row.kind, row.listing_id, [f.decision for f in row.flags])).encode())
    from benchmarks.text_matching import DEV_LISTINGS

    # The traffic's titles are the dev listings' where the checkout finds ../shared beside it,
    # generated ones elsewhere: checkouts that read different titles measure different traffic.
    out: dict = {"decisions_sha256": digest.hexdigest()[:16], "titles": "dev" if DEV_LISTINGS.exists() else "generated",
                 "flagged_share_large": round(len(groups["flagged"]) / len(lines), 4)}
    for name, ctx in (("1k", small), ("large", big)):
        for group, chunk in groups.items():
            t = min(_scan_all(fresh(ctx), chunk) for _ in range(2))
            out[f"{name}_{group}_us"] = round(t / len(chunk) * 1e6, 1)
    out["large_over_1k"] = round(out["1k_all_us"] / out["large_all_us"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkouts", nargs="*", metavar="NAME=CHECKOUT")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--large", type=int, default=1_000_000, help="marks of the large catalogue")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.large)), flush=True)
        return 0
    from benchmarks.alternate import alternate, checkouts   # this tree's, not the checkouts'

    pairs = checkouts(ap, args.checkouts)
    results = alternate(__file__, pairs, args.rounds, ["--large", str(args.large)])
    if results is None:
        return 1
    first = pairs[0][0]
    for name, _ in pairs[1:]:
        for r, (a, b) in enumerate(zip(results[first], results[name])):
            ratios = {k: round(a[k] / b[k], 3) for k in a if k.endswith("_us")}
            print(f"round {r + 1}: {first}/{name} time per listing (>1: {name} faster): {json.dumps(ratios)}"
                  + ("" if a["decisions_sha256"] == b["decisions_sha256"] else "  DECISIONS DIFFER")
                  + ("" if a.get("titles") == b.get("titles") else
                     f"  TRAFFIC DIFFERS (titles: {a.get('titles')} / {b.get('titles')}; give the checkouts ../shared)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
