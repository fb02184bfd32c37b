"""What each disguise rule of the word-mark matcher costs and buys: the dev text set's precision
and recall, the disguise-family set's recall and the matching time, with all rules on and
with each rule switched off in turn (monkeypatched in this process only).

    flock HEAVY_LOCK .venv/bin/python -m benchmarks.text_rule_costs [--dev DIR] [--repeat 3]

Time: match_many over the dev listings (4,000) on a freshly built index (cold token memo),
best of --repeat runs (default 5); single core. The kana folds and compatibility cues
are not switched (they change tokens, not a rule one can leave out).
"""
from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.disguise_families import DEFAULT_DATA as FAMILIES, FLAGGED  # noqa: E402
from brand_signals.text import textnorm as tn  # noqa: E402
from brand_signals.text import wordmarks as wm  # noqa: E402
from brand_signals.contract import parse_brand, parse_listing  # noqa: E402
from brand_signals.decide import decide  # noqa: E402

DEFAULT_DEV = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev" / "text"
JAPANESE = Path(__file__).resolve().parent / "data" / "japanese"
_NEVER = re.compile(r"(?!x)x")

# rule -> (module, attribute, value while the rule is off)
RULES = {
    "punctuation inside a mark": [(wm, "_MAYBE_GLUED_RE", _NEVER)],
    "digit typed into a mark": [(wm, "DIGIT_TYPO_MIN_LEN", 10 ** 6)],
    "first-letter edits": [(wm, "FIRST_LETTER_MIN_LEN", 10 ** 6)],
    "Latin look-alikes by name": [(tn, "latin_base", lambda c: None)],
    "letter pairs (rn, nn, vv, cl)": [(tn, "lookalike_readings", lambda t: [])],
    "kanji mark split off its run": [(wm, "_kanji_prefix_stream", lambda *a: None)],
}


@contextlib.contextmanager
def off(patches):
    saved = [(m, a, getattr(m, a)) for m, a, _ in patches]
    for m, a, v in patches:
        setattr(m, a, v)
    tn.fold_char.cache_clear()
    try:
        yield
    finally:
        for m, a, v in saved:
            setattr(m, a, v)
        tn.fold_char.cache_clear()


def load(data: Path):
    import json
    brands = [parse_brand(x) for x in (data / "brands.jsonl").read_bytes().splitlines() if x.strip()]
    listings = [parse_listing(x) for x in (data / "listings.jsonl").read_bytes().splitlines() if x.strip()]
    labels = {json.loads(x)["listing_id"]: json.loads(x) for x in (data / "labels.jsonl").read_text().splitlines() if x.strip()}
    return brands, listings, labels


def score(data, repeat: int = 1) -> tuple[float, float, float]:
    brands, listings, labels = data
    by_id = {b.brand_id: b for b in brands}
    best = float("inf")
    for _ in range(repeat):
        index = wm.WordMarkIndex.build(brands)
        t0 = time.perf_counter()
        evidence = index.match_many(listings)
        best = min(best, time.perf_counter() - t0)
    tp = flagged = infringing = 0
    for x, ev in zip(listings, evidence):
        lab = labels[x.listing_id]
        d = decide(x, ev, by_id, x.event_time_ms)
        infringing += lab["infringing"]
        if d is not None and d.action in FLAGGED:
            flagged += 1
            tp += lab["infringing"] and d.brand_id == lab["brand_id"]
    return (tp / flagged if flagged else 1.0), tp / infringing, best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dev", type=Path, default=DEFAULT_DEV)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)
    dev, fam, jp = load(a.dev), load(FAMILIES), load(JAPANESE)
    tn.common_words(), tn.dictionary_words()
    print(f"{'rules':<40}{'dev P':>8}{'dev R':>8}{'dev ms':>8}{'families R':>12}{'families P':>12}{'Japanese R':>12}")

    def row(name: str) -> None:
        p, r, t = score(dev, a.repeat)
        fp_, fr, _ = score(fam)
        _, jr, _ = score(jp)
        print(f"{name:<40}{p:>8.4f}{r:>8.4f}{t * 1000:>8.0f}{fr:>12.4f}{fp_:>12.4f}{jr:>12.4f}")

    row("all rules")
    for name, patches in RULES.items():
        with off(patches):
            row(f"without {name}")
    with off([p for patches in RULES.values() for p in patches]):
        row("without all six")
    row("all rules (again: timing noise)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
