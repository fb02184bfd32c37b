"""Word-mark matching throughput on one core, from 1 k to 1 M marks, next to a naive loop.

    .venv/bin/python benchmarks/text_matching.py [--max-marks 1000000] [--listings 20000]
        [--naive-max 10000] [--faiss-max 100000] [--out benchmarks/results/text_matching.json]

Marks are brand-like pseudo-words from a seeded syllable vocabulary (1-2 words, 4 marks per
brand). Listings are real product titles (shared/eval/dev/text, or generated ones when that
file is absent); 40% get a generated mark at the front (a quarter of them disguised: leet,
homoglyph, split letters or a one-edit typo) and 10% a compatibility mention ("for <mark>").
Each mark count runs in its own process: "index MiB" is the resident-memory growth while
building that index (a lower bound: memory freed by the data generation is reused), "peak
RSS" the whole process's (data generation, listings and index). Throughput is one cold pass of match_many (batches of 256) over
all listings: the per-token typo memo starts empty.

The naive baseline folds each title the same way, then tests every mark's token key against
the plain and the leet-keyed title (two substring tests per mark, exact only: a lower bound
on a naive matcher's cost). It runs up to --naive-max marks; larger counts are extrapolated
linearly from the largest measured one and labelled so.

--faiss-max adds the approximate-lookup comparison behind the design: misspelt tokens looked
up (a) in the symmetric-deletion index the matcher uses and (b) with FAISS over hashed
character n-gram vectors of the mark words (HNSW, top 10, then the same OSA check), both
scored for recall against a brute-force OSA oracle on a sample.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brand_signals.text import textnorm as tn  # noqa: E402
from brand_signals.records import Action, BrandReference, Listing  # noqa: E402
from brand_signals.text.wordmarks import WordMarkIndex  # noqa: E402

SEED = 20240611
DEV_LISTINGS = Path(__file__).resolve().parents[2] / "shared" / "eval" / "dev" / "text" / "listings.jsonl"
SIZES = (1_000, 10_000, 100_000, 1_000_000)
MARKS_PER_BRAND = 4
BATCH = 256
NAIVE_LISTINGS = 2_000

ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
          "br", "cl", "dr", "fl", "gr", "kr", "pl", "pr", "sk", "st", "tr", "qu", "sh", "ch", "th"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y"]
CODAS = ["", "", "", "n", "r", "s", "x", "l", "m", "k", "t", "nd", "rt", "ck"]
HOMOGLYPHS = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441", "x": "\u0445",
              "i": "\u0456", "s": "\u0455"}
LEET = {"o": "0", "i": "1", "e": "3", "a": "4", "s": "5"}
FALLBACK_WORDS = ("wireless charger case cable black white usb adapter pack replacement battery screen "
                  "protector laptop bag stand mount holder premium leather slim hard cover kit set "
                  "portable speaker bluetooth headphones stereo inch mini pro series").split()


def make_marks(n: int, rng: random.Random) -> list[str]:
    marks: set[str] = set()
    while len(marks) < n:
        def word() -> str:
            return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
                           for _ in range(rng.choice((2, 2, 3))))
        m = word().capitalize()
        if rng.random() < 0.3:
            m += " " + word().capitalize()
        marks.add(m)
    return sorted(marks)


def make_brands(marks: list[str]) -> list[BrandReference]:
    return [BrandReference(brand_id=f"b{i}", version=1, name=marks[i],
                           trademarks=tuple(marks[i:i + MARKS_PER_BRAND]),
                           authorized_sellers=frozenset({f"auth-b{i}"}), enforcement=Action.TAKEDOWN)
            for i in range(0, len(marks), MARKS_PER_BRAND)]


def disguise(mark: str, rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return "".join(LEET.get(c, c) for c in mark)
    if kind == 1:
        i = next((i for i, c in enumerate(mark) if c in HOMOGLYPHS), None)
        return mark if i is None else mark[:i] + HOMOGLYPHS[mark[i]] + mark[i + 1:]
    if kind == 2:
        return " ".join(".".join(w) for w in mark.split())
    i = rng.randrange(1, len(mark.split()[0]))
    return mark[:i] + mark[i + 1:]


def base_titles() -> list[str]:
    if DEV_LISTINGS.exists():
        return [json.loads(line)["title"] for line in DEV_LISTINGS.read_text().splitlines() if line.strip()]
    rng = random.Random(SEED)
    return [" ".join(rng.choice(FALLBACK_WORDS) for _ in range(rng.randint(6, 16))) + f" X{rng.randint(10, 9999)}"
            for _ in range(4000)]


def make_listings(marks: list[str], n: int, rng: random.Random) -> list[Listing]:
    titles = base_titles()
    out = []
    for i in range(n):
        title = titles[i % len(titles)]
        r = rng.random()
        mark = rng.choice(marks)
        if r < 0.4:
            title = (disguise(mark, rng) if rng.random() < 0.25 else mark) + " " + title
        elif r < 0.5:
            title = title + " for " + mark
        out.append(Listing(listing_id=f"x{i}", seller_id=f"s-{i % 997}", event_time_ms=i, title=title))
    return out


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def naive_rate(marks: list[str], listings: list[Listing]) -> float:
    keys = [" " + tn.normalize(m) + " " for m in marks]
    leet_keys = [tn.leet_key(k) for k in keys]
    t0 = time.perf_counter()
    hits = 0
    for x in listings:
        plain = " " + " ".join(tn.TOKEN_RE.findall(tn.fold(x.title).text)) + " "
        leet = tn.leet_key(plain)
        for k, lk in zip(keys, leet_keys):
            if k in plain or lk in leet:
                hits += 1
    return len(listings) / (time.perf_counter() - t0)


def faiss_compare(words: list[str], rng: random.Random, n_queries: int = 500) -> dict:
    import faiss
    import numpy as np

    dim = 256

    def vec(w: str) -> np.ndarray:
        v = np.zeros(dim, dtype=np.float32)
        p = f"^{w}$"
        for n in (2, 3):
            for i in range(len(p) - n + 1):
                v[hash(p[i:i + n]) % dim] += 1.0
        return v / max(1e-6, float(np.linalg.norm(v)))

    t0 = time.perf_counter()
    xb = np.stack([vec(w) for w in words])
    index = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = 64
    index.add(xb)
    t_build = time.perf_counter() - t0
    long_words = [w for w in words if len(w) >= 5]
    known = set(words) | tn.common_words()   # ordinary words are not looked up (see wordmarks)
    queries = []
    while len(queries) < n_queries:
        w = rng.choice(long_words)
        i = rng.randrange(1, len(w))
        q = w[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + w[i + 1:]
        if q not in known:
            queries.append(q)
    by_first: dict[str, list[str]] = {}
    for w in words:
        by_first.setdefault(w[0], []).append(w)
    oracle = [{w for w in by_first.get(q[0], ()) if tn.osa_distance(q, w, 1) == 1} for q in queries]
    xq = np.stack([vec(q) for q in queries])
    t0 = time.perf_counter()
    _, ids = index.search(xq, 10)
    found_faiss = [{words[j] for j in row if j >= 0 and words[j][0] == q[0] and tn.osa_distance(q, words[j], 1) == 1}
                   for q, row in zip(queries, ids)]
    t_faiss = (time.perf_counter() - t0) / len(queries)
    brands = make_brands(words)
    idx = WordMarkIndex.build(brands)
    t0 = time.perf_counter()
    found_del = [{w for w, f in idx._correct_uncached(q) if f & tn.Fold.TYPO} for q in queries]
    t_del = (time.perf_counter() - t0) / len(queries)
    total = sum(len(o) for o in oracle)

    def recall(found: list[set[str]]) -> float:
        return sum(len(f & o) for f, o in zip(found, oracle)) / max(1, total)

    return {"words": len(words), "queries": len(queries), "oracle_pairs": total,
            "faiss_hnsw_recall": round(recall(found_faiss), 4), "faiss_us_per_query": round(t_faiss * 1e6, 1),
            "faiss_build_s": round(t_build, 1),
            "deletion_recall": round(recall(found_del), 4), "deletion_us_per_query": round(t_del * 1e6, 1)}


def run_single(n_marks: int, n_listings: int, naive_max: int, faiss_max: int) -> dict:
    rng = random.Random(SEED)
    marks = make_marks(n_marks, rng)
    listings = make_listings(marks, n_listings, random.Random(SEED + 1))
    brands = make_brands(marks)
    tn.common_words()
    tn.dictionary_words()   # first-letter typo check: loaded once per process, outside the timing
    tn.confusable_map()
    rss0 = rss_mib()
    t0 = time.perf_counter()
    index = WordMarkIndex.build(brands)
    build_s = time.perf_counter() - t0
    rss1 = rss_mib()
    del brands
    t0 = time.perf_counter()
    flagged = 0
    for i in range(0, len(listings), BATCH):
        for ev in index.match_many(listings[i:i + BATCH]):
            flagged += bool(ev)
    rate = len(listings) / (time.perf_counter() - t0)
    row = {"marks": n_marks, "build_s": round(build_s, 2), "index_mib": round(rss1 - rss0, 1),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "listings": len(listings), "listings_per_s": round(rate), "with_evidence": flagged}
    if n_marks <= naive_max:
        row["naive_per_s"] = round(naive_rate(marks, listings[:NAIVE_LISTINGS]), 1)
    if n_marks <= faiss_max:
        words = list(index.mark_words)
        row["typo_lookup"] = faiss_compare(words, random.Random(SEED + 2))
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-marks", type=int, default=1_000_000)
    ap.add_argument("--listings", type=int, default=20_000)
    ap.add_argument("--naive-max", type=int, default=10_000)
    ap.add_argument("--faiss-max", type=int, default=0, help="run the FAISS comparison up to this many marks")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/text_matching.json"))
    ap.add_argument("--single", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.single:
        print(json.dumps(run_single(a.single, a.listings, a.naive_max, a.faiss_max)))
        return 0

    rows = []
    for n in [s for s in SIZES if s <= a.max_marks] or [a.max_marks]:
        cmd = [sys.executable, __file__, "--single", str(n), "--listings", str(a.listings),
               "--naive-max", str(a.naive_max), "--faiss-max", str(a.faiss_max)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"  {n:>9,} marks: {row['listings_per_s']:>8,} listings/s, build {row['build_s']} s, "
              f"index {row['index_mib']} MiB", file=sys.stderr)

    measured = [r for r in rows if "naive_per_s" in r]
    if measured:
        ref = measured[-1]
        for r in rows:
            if "naive_per_s" not in r:
                r["naive_per_s_extrapolated"] = round(ref["naive_per_s"] * ref["marks"] / r["marks"], 2)
    first, last = rows[0], rows[-1]
    summary = {"ratio_last_to_first": round(last["listings_per_s"] / first["listings_per_s"], 3),
               "first_marks": first["marks"], "last_marks": last["marks"]}

    print("| marks | listings/s (index) | naive listings/s | speed-up | build s | index MiB (RSS growth) | process peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        naive = r.get("naive_per_s", r.get("naive_per_s_extrapolated"))
        if naive is None:
            label, speedup = "not run", "n/a"
        else:
            label = f"{naive:,.1f}" + ("" if "naive_per_s" in r else " (extrapolated)")
            speedup = f"{r['listings_per_s'] / naive:,.0f}x"
        print(f"| {r['marks']:,} | {r['listings_per_s']:,} | {label} | {speedup} | "
              f"{r['build_s']} | {r['index_mib']} | {r['peak_rss_mib']} |")
    print(f"\nthroughput ratio {last['marks']:,} / {first['marks']:,} marks: {summary['ratio_last_to_first']}")
    faiss_rows = [r["typo_lookup"] for r in rows if "typo_lookup" in r]
    if faiss_rows:
        print("\n| mark words | oracle pairs | deletion-index recall | µs/query | FAISS HNSW recall | µs/query | FAISS build s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for f in faiss_rows:
            print(f"| {f['words']:,} | {f['oracle_pairs']} | {f['deletion_recall']} | {f['deletion_us_per_query']} | "
                  f"{f['faiss_hnsw_recall']} | {f['faiss_us_per_query']} | {f['faiss_build_s']} |")

    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"rows": rows, "summary": summary, "listings": a.listings,
                                 "cpu": "one core (single process)", "seed": SEED,
                                 "maxrss_children_mib": round(
                                     resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)},
                                indent=1) + "\n")
    print(f"\nwritten {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
