"""What identifies a listing's content for the feedback loop: a fingerprint of its title words
(hashed, with the rarity of the rare ones, from `wordfreq`) and of the image bytes the scanner
fetched, and the Jaccard similarity that finds near-duplicates of a confirmed removal."""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from brand_signals.records import Listing


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What identifies a listing's content across light edits and re-uploads: its title words
    (hashed), the rarity of the rare ones, and the digests of image bytes the scanner fetched
    (never the digests a listing claims)."""

    shingles: frozenset[int]
    images: frozenset[str] = frozenset()
    rarity: Mapping[int, float] = field(default_factory=dict)   # shingle -> rarity, rare words only

    def to_json(self) -> dict[str, Any]:
        return {"shingles": sorted(self.shingles), "images": sorted(self.images),
                "rarity": sorted([s, round(w, 3)] for s, w in self.rarity.items())}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Fingerprint":
        return cls(frozenset(int(x) for x in d.get("shingles", ())), frozenset(d.get("images", ())),
                   {int(s): float(w) for s, w in d.get("rarity", ())})


NO_FINGERPRINT = Fingerprint(frozenset())

_TOKEN = re.compile(r"[^\W_]+")
# Bounds the fingerprint of a hostile 20,000-character description.
MAX_FINGERPRINT_TOKENS = 256
# Word rarity = RARITY_CEIL - Zipf frequency, floored at 0: a word used once per million words
# (Zipf 3: "earbuds", "foldable" 2.6 -> 0.4) or more often carries nothing; an invented word or a
# model number (Zipf 0) carries 3. Frequencies from `wordfreq`; English, the listing language
# of the dev data and the lingua franca of marketplace titles (each extra language costs the
# scan workers ~1 s and ~50 MB at start).
RARITY_CEIL = 3.0
RARITY_LANGUAGES = ("en",)


def word_rarity(word: str) -> float:
    """Remembered by the fingerprint's word table (`_WORDS`), its one caller."""
    from wordfreq import zipf_frequency

    return max(0.0, RARITY_CEIL - max(zipf_frequency(word, lang) for lang in RARITY_LANGUAGES))


def load_word_frequencies() -> None:
    """Load the word frequencies of RARITY_LANGUAGES now (~0.5 s: wordfreq's import and
    lists) rather than at the first flagged listing."""
    from wordfreq import zipf_frequency

    for lang in RARITY_LANGUAGES:
        zipf_frequency("the", lang)


def _shingle(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")


# word -> (shingle, rarity): words recur listing after listing, so one dict look-up per word
# (two caches' calls before). Bounded: emptied when full, so a stream of invented words costs
# misses, never memory.
_WORDS: dict[str, tuple[int, float]] = {}
MAX_REMEMBERED_WORDS = 262_144


def _word(t: str) -> tuple[int, float]:
    if len(_WORDS) >= MAX_REMEMBERED_WORDS:
        _WORDS.clear()
    v = _WORDS[t] = (_shingle(t), word_rarity(t))
    return v


def fingerprint(listing: Listing, image_digests: Iterable[str] = ()) -> Fingerprint:
    """`image_digests`: sha256 of the listing's image bytes as fetched and hashed by the scanner.
    The words are those of the NFKC-normalised, case-folded title and brand (for ASCII text,
    both are its lower case)."""
    raw = f"{listing.title} {listing.brand}"
    text = raw.lower() if raw.isascii() else unicodedata.normalize("NFKC", raw).casefold()
    shingles: set[int] = set()
    rarity: dict[int, float] = {}
    known = _WORDS.get
    for t in _TOKEN.findall(text)[:MAX_FINGERPRINT_TOKENS]:
        s, w = known(t) or _word(t)
        shingles.add(s)
        if w > 0:
            rarity[s] = w
    return Fingerprint(frozenset(shingles), frozenset(image_digests), rarity)


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)
