"""Word-mark matching of this checkout next to another one's (e.g. the previous commit's), in
one process: both trees' word-mark index (brand_signals/text/wordmarks.py) over the same
generated marks and listings as benchmarks/text_matching.py, batches of 256 alternating between
them, listings per CPU-second of each and whether their evidence is identical.

    git worktree add /somewhere/prev HEAD~1
    .venv/bin/python benchmarks/text_side_by_side.py --baseline /somewhere/prev [--marks 1000 1000000]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import text_matching as tm  # noqa: E402
from brand_signals.text import textnorm as tn  # noqa: E402
from brand_signals.text import wordmarks as here  # noqa: E402


# Where a checkout keeps the word-mark index: in the text room, or (a checkout from before the
# rooms) at the top of brand_signals/.
WORDMARKS_PATHS = (("brand_signals", "text", "wordmarks.py"), ("brand_signals", "wordmarks.py"))


def baseline_module(tree: Path):
    path = next((tree.joinpath(*p) for p in WORDMARKS_PATHS if tree.joinpath(*p).is_file()), None)
    if path is None:
        raise ValueError(f"{tree}: no word-mark index at {' or '.join('/'.join(p) for p in WORDMARKS_PATHS)}")
    spec = importlib.util.spec_from_file_location("wordmarks_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["wordmarks_baseline"] = mod
    spec.loader.exec_module(mod)
    return mod


def compare(base, n_marks: int, n_listings: int) -> dict:
    marks = tm.make_marks(n_marks, random.Random(tm.SEED))
    listings = tm.make_listings(marks, n_listings, random.Random(tm.SEED + 1))
    brands = tm.make_brands(marks)
    tn.common_words(), tn.dictionary_words(), tn.confusable_map()
    idx = {"baseline": base.WordMarkIndex.build(brands), "this": here.WordMarkIndex.build(brands)}
    cpu = dict.fromkeys(idx, 0.0)
    same = True
    for i in range(0, n_listings, tm.BATCH):
        got = {}
        for name in (("baseline", "this") if (i // tm.BATCH) % 2 == 0 else ("this", "baseline")):
            c0 = time.process_time()
            got[name] = idx[name].match_many(listings[i:i + tm.BATCH])
            cpu[name] += time.process_time() - c0
        same = same and repr(got["baseline"]) == repr(got["this"])
    return {"marks": n_marks, "listings": n_listings,
            "baseline_per_cpu_s": round(n_listings / cpu["baseline"]), "this_per_cpu_s": round(n_listings / cpu["this"]),
            "this_over_baseline": round(cpu["baseline"] / cpu["this"], 3), "evidence_identical": same}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="another checkout of this repository")
    ap.add_argument("--marks", type=int, nargs="+", default=[1_000, 1_000_000])
    ap.add_argument("--listings", type=int, default=20_000)
    a = ap.parse_args(argv)
    base = baseline_module(a.baseline)
    rows = [compare(base, n, a.listings) for n in a.marks]
    for r in rows:
        print(json.dumps(r))
    first, last = rows[0], rows[-1]
    print(f"rate at {last['marks']:,} / {first['marks']:,} marks: baseline "
          f"{last['baseline_per_cpu_s'] / first['baseline_per_cpu_s']:.2f}, this {last['this_per_cpu_s'] / first['this_per_cpu_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
