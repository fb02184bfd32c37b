"""Builds benchmarks/data/disguise_families/: the dev text set's titles disguised by a
third-party typosquatting generator (dnstwist's fuzzers), one family per listing group,
plus honest negatives, in the contract's formats (brands / listings / labels JSONL).

    python -m venv /tmp/gen-venv && /tmp/gen-venv/bin/pip install dnstwist==20250130
    /tmp/gen-venv/bin/python benchmarks/make_disguise_families.py --dev DEV_TEXT_DIR

Needs only the standard library and dnstwist (not a dependency of zeroscan: the generated
set is committed). Deterministic for a given dnstwist version and seed. The dev recipe
never edits a mark's first letter and never uses digits; dnstwist does both, so the families
below measure what the dev set cannot. Family of a disguise (edits on the disguised word):
  punctuation     hyphenation, dot inserted ("To-shiba", "Sha.rp")
  keyboard_bitflip  keyboard-neighbour replacement (qwerty/qwertz/azerty, digit row included)
                  or a one-bit flip of the character code, not on the first letter ("Sha5p")
  first_letter    omission, replacement, bit flip, insertion or repetition on the first
                  letter ("Etgear", "3harp", "Asharp")
  confusables     homoglyph: one or two letters replaced by Unicode look-alikes ("Kēnwøød")
  digits          a digit appended or inserted ("Toshiba2", "Whirlpo9ol")
  other_one_edit  omission, transposition, vowel swap, repetition off the first letter (what
                  the dev recipe's typos look like: a control)
Negatives: `compat` (every dev compatibility mention), `compat_disguised` (those with the
mentioned mark disguised by a random family: still only a compatibility mention), `clean`
(dev titles naming no enrolled brand) and `authorized` (dev authorized sellers).
"""
from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import dnstwist

SEED = 20261201
OUT = Path(__file__).resolve().parent / "data" / "disguise_families"
FAMILIES = ("punctuation", "keyboard_bitflip", "first_letter", "confusables", "digits", "other_one_edit")
CLEAN_SAMPLE = 600
AUTHORIZED_SAMPLE = 300
BASE_TIME_MS = 1767225600000


def _diff_pos(a: str, b: str) -> int:
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return i


def candidates(word: str) -> dict[str, list[str]]:
    """Disguises of a lower-case ASCII word, per family."""
    f = dnstwist.Fuzzer(word + ".com")
    w = f.domain
    fam: dict[str, set[str]] = {k: set() for k in FAMILIES}
    fam["punctuation"] |= set(f._hyphenation()) | set(f._subdomain())
    for v in list(f._replacement()) + list(f._bitsquatting()):
        if len(v) == len(w) and v != w:
            fam["first_letter" if v[0] != w[0] else "keyboard_bitflip"].add(v)
    for gen in (f._omission, f._insertion, f._repetition):
        for v in gen():
            if v != w and _diff_pos(v, w) == 0:
                fam["first_letter"].add(v)
    fam["confusables"] |= {v for v in f._homoglyph() if not v.isascii()}
    fam["digits"] |= {v for v in f._addition() if v[-1].isdigit()}
    fam["digits"] |= {v for v in f._insertion() if any(c.isdigit() for c in v) and _diff_pos(v, w) > 0}
    for gen in (f._omission, f._transposition, f._vowel_swap, f._repetition):
        for v in gen():
            if v != w and _diff_pos(v, w) > 0 and v.isalpha():
                fam["other_one_edit"].add(v)
    return {k: sorted(x for x in v if x != w and "-" not in x[:1] + x[-1:]) for k, v in fam.items()}


def match_case(surface: str, v: str) -> str:
    if surface.isupper() and len(surface) > 1:
        return v.upper()
    if surface[:1].isupper():
        return v[:1].upper() + v[1:]
    return v


def mark_re(mark: str) -> re.Pattern[str]:
    words = [re.escape(t) for t in re.findall(r"[A-Za-z0-9]+", mark)]
    return re.compile(r"(?<![A-Za-z0-9])" + r"[\s\-.]*".join(words) + r"(?![A-Za-z0-9])", re.I)


def word_re(word: str) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(word) + r"(?![A-Za-z0-9])", re.I)


def disguise(text: str, brand: dict, family: str, rng: random.Random, enrolled_words: set[str],
             cache: dict) -> tuple[str, str, str] | None:
    """(new text, disguised word, its disguise) or None when the family cannot apply."""
    found = [m for m in sorted(brand["trademarks"], key=len, reverse=True) if mark_re(m).search(text)]
    if not found:
        return None
    words = [t for t in re.findall(r"[A-Za-z0-9]+", found[0]) if t.isalpha()]
    if not words:
        return None
    word = max(words, key=len).lower()
    if word not in cache:
        cache[word] = candidates(word)
    options = [v for v in cache[word][family] if v.lower() not in enrolled_words]
    if not options:
        return None
    v = rng.choice(options)
    new = word_re(word).sub(lambda m: match_case(m.group(), v), text)
    if any(mark_re(m).search(new) for m in brand["trademarks"]):
        return None   # another of the brand's marks is still written plainly
    return new, word, v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dev", type=Path, required=True, help="the dev text directory")
    a = ap.parse_args()
    rng = random.Random(SEED)
    brands = [json.loads(x) for x in (a.dev / "brands.jsonl").read_text().splitlines() if x.strip()]
    listings = {json.loads(x)["listing_id"]: json.loads(x)
                for x in (a.dev / "listings.jsonl").read_text().splitlines() if x.strip()}
    labels = [json.loads(x) for x in (a.dev / "labels.jsonl").read_text().splitlines() if x.strip()]
    by_id = {b["brand_id"]: b for b in brands}
    enrolled_words = {t.lower() for b in brands for m in b["trademarks"] for t in re.findall(r"[A-Za-z0-9]+", m)}
    cache: dict = {}
    rows: list[tuple[dict, dict]] = []

    def add(src: dict, lab: dict, title: str, brand_field: str | None, variant: str, extra: dict) -> None:
        x = {k: v for k, v in src.items() if k not in ("listing_id", "title", "brand", "event_time")}
        x["title"] = title
        if brand_field:
            x["brand"] = brand_field
        label = {"brand_id": lab.get("brand_id"), "infringing": lab["infringing"], "variant": variant,
                 "source": f"dev:{lab['listing_id']}", **extra}
        rows.append((x, label))

    exact = [lab for lab in labels if lab["variant"] == "exact"]
    for family in FAMILIES:
        for lab in exact:
            src = listings[lab["listing_id"]]
            brand = by_id[lab["brand_id"]]
            d = disguise(src["title"], brand, family, rng, enrolled_words, cache)
            if d is None:
                continue
            title, word, v = d
            brand_field = None
            if rng.random() < 0.5:
                bd = disguise(brand["name"], brand, family, rng, enrolled_words, cache)
                brand_field = bd[0] if bd else None
            add(src, lab, title, brand_field, family, {"mention": word, "shown": v})
    for lab in labels:
        if lab["variant"] != "not_enrolled_mentions_enrolled":
            continue
        src = listings[lab["listing_id"]]
        add(src, lab, src["title"], src.get("brand"), "compat", {"mentions": lab.get("mentions")})
        family = rng.choice(FAMILIES)
        title = src["title"]
        shown = []
        for bid in lab.get("mentions") or []:
            d = disguise(title, by_id[bid], family, rng, enrolled_words, cache)
            if d is not None:
                title = d[0]
                shown.append(d[2])
        if shown:
            add(src, lab, title, src.get("brand"), "compat_disguised",
                {"mentions": lab.get("mentions"), "shown": shown, "family": family})
    clean = [lab for lab in labels if lab["variant"] == "not_enrolled"]
    for lab in rng.sample(clean, CLEAN_SAMPLE):
        src = listings[lab["listing_id"]]
        add(src, lab, src["title"], src.get("brand"), "clean", {})
    auth = [lab for lab in labels if lab["variant"] == "authorized"]
    for lab in rng.sample(auth, AUTHORIZED_SAMPLE):
        src = listings[lab["listing_id"]]
        add(src, lab, src["title"], src.get("brand"), "authorized", {})

    rng.shuffle(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "listings.jsonl", "w") as fl, open(OUT / "labels.jsonl", "w") as fb:
        for n, (x, label) in enumerate(rows, 1):
            lid = f"df-{n:06d}"
            fl.write(json.dumps({"listing_id": lid, **{k: x[k] for k in ("seller_id",)},
                                 "event_time": BASE_TIME_MS + 1000 * n,
                                 **{k: v for k, v in x.items() if k != "seller_id"}}, ensure_ascii=False) + "\n")
            fb.write(json.dumps({"listing_id": lid, **label}, ensure_ascii=False) + "\n")
    (OUT / "brands.jsonl").write_text("".join(json.dumps(b, ensure_ascii=False) + "\n" for b in brands))
    counts: dict[str, int] = {}
    for _, label in rows:
        counts[label["variant"]] = counts.get(label["variant"], 0) + 1
    print(json.dumps({"dnstwist": dnstwist.__version__, "seed": SEED, "rows": len(rows), "by_variant": counts}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
