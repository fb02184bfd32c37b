"""What an operator should know before approving a brand owner's submission: word marks that are
ordinary words or phrases of the listing languages (a brand whose mark is "Wireless Earbuds"
would take down honest listings), and marks, logos or product images another brand already
holds. These are reasons shown to the operator, not refusals: the operator decides.

Word frequencies come from `wordfreq` (Wikipedia, subtitles, news, books, web text and social
media, per language), looked up lazily; the lookup is injectable so rules are tested without it.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import Callable, Iterable

from brand_signals.records import BrandReference

# The listing languages the matcher already treats as such (the ordinary-word lists of
# `textnorm`): English, German, French, Spanish, Italian.
LISTING_LANGUAGES = ("en", "de", "fr", "es", "it")
# Zipf 3.0 = once per million words (wordfreq's scale: log10 of frequency per billion words).
# "wireless" 4.2, "earbuds" 3.06, "phone" and "case" > 5 are at or above it; invented marks
# ("veltrix") are 0. Real brand names used as words also reach it ("nike" 3.9, "apple" 4.8),
# which is why this is a reason shown to the operator and not a refusal.
ORDINARY_ZIPF = 3.0

_WORD = re.compile(r"[^\W_]+")

Zipf = Callable[[str], tuple[float, str]]


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


@functools.lru_cache(maxsize=65_536)
def wordfreq_zipf(word: str) -> tuple[float, str]:
    """The word's highest Zipf frequency over the listing languages, and that language."""
    from wordfreq import zipf_frequency

    return max((zipf_frequency(word, lang), lang) for lang in LISTING_LANGUAGES)


def ordinary_reason(mark: str, zipf: Zipf = wordfreq_zipf) -> str | None:
    """Why `mark` is an ordinary word or phrase (every word of it is common in some listing
    language), or None."""
    ws = words(mark)
    if not ws:
        return None
    found = [(w, *zipf(w)) for w in ws]
    if any(z < ORDINARY_ZIPF for _w, z, _l in found):
        return None
    what = "an ordinary word" if len(ws) == 1 else "an ordinary phrase"
    detail = ", ".join(f"{w!r} zipf {z:.1f} ({lang})" for w, z, lang in found)
    return f"mark {mark!r} is {what} of the listing languages ({detail}; ordinary from zipf {ORDINARY_ZIPF})"


def mark_key(mark: str) -> str:
    return " ".join(words(mark))


def _digests(b: BrandReference) -> dict[str, str]:
    out = {i.sha256: "logo" for i in b.logos if i.sha256}
    out.update({i.sha256: "product image" for i in b.product_images if i.sha256 and i.sha256 not in out})
    return out


def concerns(brand: BrandReference, others: Iterable[tuple[BrandReference, str]],
             zipf: Zipf = wordfreq_zipf) -> tuple[str, ...]:
    """Reasons for the operator about a submitted brand; `others` are (brand, owner) of every
    other registered brand (live or pending)."""
    if brand.deleted:
        return ()
    out = [r for m in brand.trademarks if (r := ordinary_reason(m, zipf)) is not None]
    mine = {mark_key(m): m for m in brand.trademarks}
    images = _digests(brand)
    for other, owner in others:
        if other.brand_id == brand.brand_id or other.deleted:
            continue
        for m in other.trademarks:
            k = mark_key(m)
            if k in mine:
                out.append(f"mark {mine[k]!r} is also a mark of brand {other.brand_id} (owner {owner})")
        for sha, what in _digests(other).items():
            if sha in images:
                out.append(f"{images[sha]} {sha[:12]}… is also a {what} of brand {other.brand_id} (owner {owner})")
    return tuple(dict.fromkeys(out))
