"""Word-mark matching: finds the enrolled trademarks that a listing's text presents.

`WordMarkIndex.build(brands)` compiles every mark once (immutable afterwards; the pipeline
swaps in a new index when brands change). `match(listing)` returns one `Evidence` per brand
whose mark the title, brand field, description or bullets show, plain or disguised
(homoglyphs, leetspeak, split letters, padding, one-edit typos), and not only as a
compatibility mention ("case for iPhone"). `decide.py` turns the evidence into a decision.

Candidates come from one Aho-Corasick automaton over token-bounded, leet-keyed mark keys
(one pass finds plain and leet spellings; each hit is then verified), and for misspellings
from a symmetric single-deletion neighbourhood of the mark words (SymSpell style: a handful
of hash lookups per token whatever the number of marks), verified with an exact one-edit
check. Large tables are sorted numpy arrays of string hashes, not dicts, to keep 1 M marks
within ~1-2 GiB.
"""
from __future__ import annotations

import bisect
import enum
from array import array
from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple, Sequence

import ahocorasick
import numpy as np

from brand_signals.text import textnorm as tn
from brand_signals.text.mark_records import SHORT_MARK_MAX, Mark, Occurrence  # noqa: F401 (re-exported)
from brand_signals.text.mark_records import Hit as _Hit
from brand_signals.records import BrandReference, Evidence, Listing, Signal, SignalKind
from brand_signals.text.mark_context import CJK_CUES_AFTER, CUES_AFTER, CUES_BEFORE, FILLER_WORDS
from brand_signals.text.mark_context import at_brand_position as _at_brand_position
from brand_signals.text.mark_context import brand_position_tokens as _brand_position_tokens
from brand_signals.text.mark_context import is_compat as _is_compat
from brand_signals.text.mark_context import leet_ok as _leet_ok
from brand_signals.text.mark_context import prefer_longer as _prefer_longer
from brand_signals.text.mark_context import short_ok as _short_ok
from brand_signals.text.token_streams import LEET_SYMBOL_RE as _LEET_SYMBOL_RE
from brand_signals.text.token_streams import MAYBE_GLUED_RE as _MAYBE_GLUED_RE
from brand_signals.text.token_streams import MAYBE_SPLIT_RE as _MAYBE_SPLIT_RE
from brand_signals.text.token_streams import TokenStream as _Stream
from brand_signals.text.token_streams import despaced_streams as _despaced_streams
from brand_signals.text.token_streams import glued_stream as _glued_stream
from brand_signals.text.token_streams import kanji_prefix_stream as _kanji_prefix_stream
from brand_signals.text.token_streams import symbol_stream as _symbol_stream

# --- scores (per signal; decide.py combines them with a noisy-OR) -------------------------
# A mark (plain or visually disguised: homoglyph, leet, split letters, padding) in the title
# or the brand field. Disguises are not weaker evidence: nobody types Cyrillic into "Dell" by
# accident. Above decide.ENFORCE_SCORE so the brand's own enforcement applies.
MARK_SCORE = 0.95
# One-edit misspellings can be honest words ("Alert" vs Alera) or product names: a human
# should look, so the score sits between decide.REVIEW_SCORE and ENFORCE_SCORE. Two hits
# (title and brand field) combine to >= ENFORCE_SCORE.
TYPO_SCORE = 0.7
# Short marks (2-3 characters: HP, GE, LG, OKI) read through leetspeak collide with model
# numbers ("RC4", "M51"): reviewable, not enforceable, on their own.
SHORT_LEET_SCORE = 0.6
# Description and bullet points name other brands more freely than the title (comparisons,
# "also fits"), and OCR text may come from a background object: scale their scores down.
BODY_FACTOR = 0.75
OCR_FACTOR = 0.9
# The listing's category and the brand's categories both given and unrelated ("apple slicer"
# in kitchen vs a brand of phones): the mark is most likely the ordinary word. Scales a 0.95
# hit to 0.43, under decide.REVIEW_SCORE, so it only counts together with other evidence.
CATEGORY_MISMATCH_FACTOR = 0.45

# --- matching limits (SHORT_MARK_MAX: brand_signals.text.mark_records) ----------------------
# Typo matching needs mark words and text tokens of at least this length (4: "Tops" vs
# "Topps" is in; with 3 letters one edit reaches half the dictionary). A 3-letter token
# may still be a 4-letter mark missing a letter ("DYO" for DYMO), but only where the brand
# stands (see mark_context.BRAND_POSITION_MAX).
FUZZY_MIN_LEN = 4
# A digit typed into a mark word (tn.digit_typo_ok) counts for mark words of at least this
# many letters, as plain typos do (FUZZY_MIN_LEN): "Cob6" for Coby, "Acer3".
DIGIT_TYPO_MIN_LEN = 4
# An edit on the first letter counts for mark words of at least this many letters, when the
# token is no known word (tn.dictionary_words) and the edit is a typed one
# (tn.first_letter_typo_ok: dropped, swapped, a neighbouring key, a digit one bit away). From
# the dev brands' 158 mark words of 4+ letters against pyspellchecker's 128,000 English
# words: words one first-letter edit from a mark word number 5.9 per mark word of 4 letters,
# 1.3 of 5, 1.1 of 6, 0.05 of 7 and 0 of 9+; the dictionary check removes those, so the
# risk left is other names. On the dev text set 5 costs no false positive (7: none either)
# and finds 0.71 of the disguise-family set's first-letter edits (7: 0.53); 4 finds 0.79 but
# adds two dev false positives ("SVGA" read as EVGA, "Luv" as iLuv).
FIRST_LETTER_MIN_LEN = 5
# A token with several readings ("lin": line or link) gets a stream per extra reading, up
# to this many streams per field (bounds the cost of hostile text full of near-marks).
MAX_CORRECTED_STREAMS = 8
# Hostile-input bound: a field stops collecting hits after this many (a listing naming 500
# marks is spam whichever it presents; the first hits still decide).
MAX_HITS_PER_FIELD = 512
# Token fuzzy-lookup memo (text tokens are Zipf-distributed: a few thousand cover most
# titles). Cleared when full, so memory stays bounded on hostile input.
TOKEN_CACHE_MAX = 1 << 17

# Text tokens never read as a misspelt mark (they are the words that compatibility
# phrases are made of).
NEVER_CORRECTED = CUES_BEFORE | CUES_AFTER | FILLER_WORDS


class Field(enum.Enum):
    TITLE = "title"
    BRAND = "brand"
    DESCRIPTION = "description"
    BULLETS = "bullet_points"
    OCR = "ocr_text"


FIELD_KIND = {
    Field.TITLE: SignalKind.TRADEMARK_TEXT, Field.DESCRIPTION: SignalKind.TRADEMARK_TEXT,
    Field.BULLETS: SignalKind.TRADEMARK_TEXT, Field.BRAND: SignalKind.BRAND_FIELD,
    Field.OCR: SignalKind.OCR_TEXT,
}
# Fields where a misspelling counts wherever it stands (short texts that name a maker).
TYPO_ANYWHERE = frozenset({Field.BRAND, Field.OCR})
# People keep the first letter when they misspell a word; OCR of a stylised logo misreads or
# drops it as readily as any other glyph ("odidas", "TAHOO!", "prite", "EPSI" on the dev logo
# photos). In these fields a one-edit reading may differ in its first letter.
ANY_FIRST_LETTER = frozenset({Field.OCR})
FIELD_FACTOR = {
    Field.TITLE: 1.0, Field.BRAND: 1.0, Field.DESCRIPTION: BODY_FACTOR, Field.BULLETS: BODY_FACTOR,
    Field.OCR: OCR_FACTOR,
}



# Stream-token bits (beyond textnorm.Fold): a 3-letter token read as a 4-letter mark word,
# and an ordinary word (textnorm.common_words) read as a mark word; the latter only counts
# inside a multi-word mark whose other words stand as written ("Trip Lite").
_SHORT_TYPO = 1 << 16
_COMMON_TYPO = 1 << 17
_FOLD_MASK = _SHORT_TYPO - 1
# Plain-int copies of the folds used on the hot path (IntFlag operators run in Python).
_LEET, _SPACING, _TYPO, _REPEAT = (int(tn.Fold.LEET), int(tn.Fold.SPACING), int(tn.Fold.TYPO),
                                   int(tn.Fold.REPEAT))
_HOMOGLYPH = int(tn.Fold.HOMOGLYPH)
_DIGIT_TYPO, _FIRST, _KANA = int(tn.Fold.DIGIT_TYPO), int(tn.Fold.FIRST_LETTER), int(tn.Fold.KANA)
# Automaton values (pyahocorasick STORE_INTS keeps 32-bit ints): mark id * 2 + (1 if the
# key is the joined spelling); keys shared by several marks store _COLLISION_BASE + an
# index into a side table. Room for 500 M marks.
_COLLISION_BASE = 1 << 30


def _misread_off_position(flags: int, lead: bool, anywhere: bool) -> bool:
    """A reading dropped for where it stands: a misspelling away from the brand position
    (outside fields read anywhere), or a 3-letter token read as a 4-letter mark word away from
    it. `_search` drops such hits; `_may_hit` builds no stream for a one-token key read so."""
    return not lead and bool(flags & _TYPO and not anywhere or flags & _SHORT_TYPO)


def _common_word_alone(flags: int, first: int, last: int) -> bool:
    """An ordinary word read as a one-word mark ("Bass" as BOSS): dropped (`_search`, `_may_hit`)."""
    return bool(flags & _COMMON_TYPO) and first == last


# Hash tables up to this many keys also keep a dict (~100 bytes a key).
SMALL_TABLE = 1 << 16


class _HashTable:
    """Sorted int64 hashes of strings -> int32 ids: a compact multi-map for millions of keys
    (a dict of 10 M short strings costs ~1.5 GiB, this ~120 MiB). Uses the process's own
    str hash, so it is rebuilt, never pickled; false hits are possible and callers verify.
    A large table also keeps a directory by the hashes' top bits (about one key per bucket,
    int32 offsets, a third of the keys' bytes): a look-up reads a bucket's few keys as
    Python ints where a binary search was a NumPy call and ~23 cache misses (3-13 us)."""

    __slots__ = ("_keys", "_values", "_small", "_dir", "_shift", "_k", "_v", "_d")

    def __init__(self, hashes: array, values: array) -> None:
        keys = np.frombuffer(hashes, dtype=np.int64) if len(hashes) else np.zeros(0, np.int64)
        vals = np.frombuffer(values, dtype=np.int32) if len(values) else np.zeros(0, np.int32)
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._values = vals[order]
        # A small table (a catalogue of thousands of marks, one brand's re-check index) is also
        # a dict: a look-up is a hash probe instead of a NumPy call (~10 us each).
        self._small: dict[int, list[int]] | None = None
        self._dir = np.zeros(0, np.int32)
        self._shift = 64
        if len(keys) <= SMALL_TABLE:
            small: dict[int, list[int]] = {}
            for k, v in zip(self._keys.tolist(), self._values.tolist()):
                small.setdefault(k, []).append(v)
            self._small = small
        else:
            bits = max(1, len(keys).bit_length() - 1)          # 2**bits <= keys < 2**(bits + 1)
            self._shift = 64 - bits
            # the hashes as unsigned (order kept), their top bits: non-decreasing over the keys
            top = (self._keys.view(np.uint64) ^ np.uint64(1 << 63)) >> np.uint64(self._shift)
            self._dir = np.searchsorted(top, np.arange((1 << bits) + 1, dtype=np.uint64)).astype(np.int32)
        self._k, self._v, self._d = memoryview(self._keys), memoryview(self._values), memoryview(self._dir)

    def lookup(self, strings: Iterable[str]) -> list[int]:
        if self._small is not None:
            small = self._small
            out = []
            for s in strings:
                hit = small.get(hash(s))
                if hit is not None:
                    out.extend(hit)
            return out
        keys, vals, d, shift = self._k, self._v, self._d, self._shift
        out = []
        for s in strings:
            h = hash(s)
            b = (h + (1 << 63)) >> shift
            for i in range(d[b], d[b + 1]):     # sorted: stop past h
                k = keys[i]
                if k == h:
                    out.append(vals[i])
                elif k > h:
                    break
        return out

    def __contains__(self, s: str) -> bool:
        h = hash(s)
        if self._small is not None:
            return h in self._small
        keys, d = self._k, self._d
        b = (h + (1 << 63)) >> self._shift
        for i in range(d[b], d[b + 1]):
            k = keys[i]
            if k >= h:
                return k == h
        return False

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes + self._values.nbytes + self._dir.nbytes)


def _category_related(listing_category: str, brand_categories: Sequence[str]) -> bool:
    """Same top-level branch of the slash path ("electronics/phones" ~ "electronics")."""
    top = tn.normalize(listing_category.split("/", 1)[0])
    for c in brand_categories:
        if tn.normalize(c.split("/", 1)[0]) == top:
            return True
    return False


class WordMarkIndex:
    """Immutable index of the word marks of the enrolled (not deleted) brands."""

    __slots__ = ("_brands", "_marks", "_automaton", "_collisions", "_max_tokens", "_exact",
                 "_words", "_in_multi", "_deletes", "_squeezed", "_cache", "_cache_any_first", "_key_words",
                 "_solo", "_pairs", "_part_cache", "_token_touch")

    def __init__(self, brands: Mapping[str, BrandReference], marks: tuple[Mark, ...]) -> None:
        if 2 * len(marks) >= _COLLISION_BASE:
            raise ValueError(f"{len(marks)} marks: at most {_COLLISION_BASE // 2 - 1} fit one index")
        self._brands = dict(brands)
        self._marks = marks
        keys: dict[str, object] = {}
        exact_h, exact_v = array("q"), array("i")
        words: dict[str, bool] = {}    # mark word -> is a word of a multi-word mark
        max_tokens = 1
        for mid, m in enumerate(marks):
            tokens = m.norm.split(" ")
            _multi_add(keys, tn.leet_key(" " + m.norm + " "), mid * 2)
            for t in tokens:
                exact_h.append(hash(t))
                exact_v.append(0)
            if len(tokens) > 1:
                joined = m.joined
                _multi_add(keys, tn.leet_key(" " + joined + " "), mid * 2 + 1)
                exact_h.append(hash(joined))
                exact_v.append(0)
                max_tokens = max(max_tokens, len(tokens))
            if not m.short:
                for t in tokens:
                    if len(t) >= FUZZY_MIN_LEN:
                        words[t] = words.get(t, False) or len(tokens) > 1
                if len(tokens) > 1:
                    words.setdefault(m.joined, False)
        automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        collisions: list[tuple[int, ...]] = []
        # what a key can look like around one of its tokens: whole one-token keys, and the
        # adjacent token pairs of longer ones (`_may_hit` asks before a corrected stream is built)
        solo_h, pair_h = array("q"), array("q")
        for k in keys:
            toks = k[1:-1].split(" ")
            if len(toks) == 1:
                solo_h.append(hash(toks[0]))
            else:
                for a, b in zip(toks, toks[1:]):
                    pair_h.append(hash(a + " " + b))
        self._solo = _HashTable(solo_h, array("i", bytes(4 * len(solo_h))))
        self._pairs = _HashTable(pair_h, array("i", bytes(4 * len(pair_h))))
        del solo_h, pair_h
        for k, v in keys.items():
            if isinstance(v, tuple):
                collisions.append(v)
                automaton.add_word(k, _COLLISION_BASE + len(collisions) - 1)
            else:
                automaton.add_word(k, v)
        del keys
        if len(automaton):
            automaton.make_automaton()
        self._automaton = automaton
        self._collisions = tuple(collisions)
        self._max_tokens = max_tokens
        self._exact = _HashTable(exact_h, exact_v)
        word_list = sorted(words)
        self._words = tuple(word_list)
        self._in_multi = bytes(words[w] for w in word_list)
        del_h, del_v, sq_h, sq_v = array("q"), array("i"), array("q"), array("i")
        for wid, w in enumerate(word_list):
            for d in tn.deletes1(w):
                del_h.append(hash(d))
                del_v.append(wid)
            sq_h.append(hash(tn.squeeze(w)))
            sq_v.append(wid)
        self._deletes = _HashTable(del_h, del_v)
        self._squeezed = _HashTable(sq_h, sq_v)
        self._cache: dict[str, tuple[tuple[str, int], ...]] = {}
        self._cache_any_first: dict[str, tuple[tuple[str, int], ...]] = {}
        self._key_words: frozenset[str] | None = None   # prefixes of mark words, for `touches`
        self._part_cache: dict[str, bool] = {}   # `_may_hit`'s answers: a word or "a b" pair -> in a key
        self._token_touch: dict[str, bool] = {}  # `touches`: a token is a mark word or reads as one

    # --- construction --------------------------------------------------------------------
    @classmethod
    def build(cls, brands: Iterable[BrandReference]) -> "WordMarkIndex":
        live: dict[str, BrandReference] = {}
        for b in brands:
            prev = live.get(b.brand_id)
            if prev is None or b.version >= prev.version:
                live[b.brand_id] = b
        live = {k: b for k, b in live.items() if not b.deleted}
        marks: list[Mark] = []
        seen: set[tuple[str, str]] = set()
        for bid in sorted(live):
            for text in live[bid].trademarks:
                norm = tn.normalize(text)
                if not norm or (bid, norm) in seen:
                    continue
                seen.add((bid, norm))
                marks.append(Mark(bid, text, norm))
        return cls(live, tuple(marks))

    def __reduce__(self):
        # Rebuilt on unpickling: the hash tables use the process's own str hash.
        return (_rebuild, (tuple(self._brands.values()), self._marks))

    @property
    def marks(self) -> tuple[Mark, ...]:
        return self._marks

    def __len__(self) -> int:
        return len(self._marks)

    # --- matching ------------------------------------------------------------------------
    def match(self, listing: Listing) -> list[Evidence]:
        fields: list[tuple[Field, str]] = [(Field.TITLE, listing.title), (Field.BRAND, listing.brand)]
        if listing.description:
            fields.append((Field.DESCRIPTION, listing.description))
        if listing.bullet_points:
            fields.append((Field.BULLETS, " \n ".join(listing.bullet_points)))
        return self._evidence(fields, listing.category)

    def match_many(self, listings: Sequence[Listing]) -> list[list[Evidence]]:
        # Typo lookups are memoised per token, so a batch pays once per distinct token.
        return [self.match(x) for x in listings]

    def match_text(self, text: str, field: str = "ocr_text") -> list[Evidence]:
        return self._evidence([(Field(field), text)], "")

    def find(self, text: str, field: Field = Field.TITLE) -> list[tuple[Mark, Occurrence, str]]:
        """All occurrences in one text (for tests and debugging): (mark, occurrence, surface)."""
        folded = tn.fold(text)
        return [(self._marks[o.mark_id], o, folded.surface(o.start, o.end))
                for o in self._occurrences(folded, field in TYPO_ANYWHERE, field in ANY_FIRST_LETTER)]

    def readings(self, token: str, field: Field = Field.TITLE) -> tuple[tuple[str, int], ...]:
        """The mark words a folded text token may misspell or pad, best first, each with its
        folds (for tests and debugging; matching uses the same memoised lookup)."""
        return self._correct(token, field in ANY_FIRST_LETTER)

    @property
    def max_tokens(self) -> int:
        """Tokens of the longest mark: how far from a field's start typos are read."""
        return self._max_tokens

    def touches(self, texts: Iterable[str]) -> bool:
        """Whether these marks could take part in matching any of these texts, in this index or
        in a larger one that holds them: a hit of a mark in any stream (compatibility mentions,
        weak and filtered readings included), a token that is a mark word (such a token is not
        read as a typo of another brand's word), a join or kanji cut into a mark word, or a
        typo, padding or look-alike reading of any token (which may displace another brand's
        reading). Conservative: texts it says no to match the same in an index with and
        without these marks."""
        keys = self._key_words
        if keys is None:
            words = {w for m in self._marks for w in m.norm.split(" ")} | {m.joined for m in self._marks}
            keys = self._key_words = frozenset(w[:n] for w in words for n in range(1, len(w) + 1))
        for text in texts:
            if not text:
                continue
            folded = tn.fold(text)
            t = folded.text
            tokens = tn.TOKEN_RE.findall(t)
            if not tokens:
                continue
            # a token that is a mark word, or that a typo, padding or look-alike reading turns
            # into one: answered once per token (titles differ, their words repeat)
            touch = self._token_touch
            for tok in tokens:
                hit = touch.get(tok)
                if hit is None:
                    if len(touch) >= TOKEN_CACHE_MAX:
                        touch.clear()
                    hit = touch[tok] = tok in self._exact or bool(
                        self._words and len(tok) >= FUZZY_MIN_LEN - 1 and self._correct(tok, True))
                if hit:
                    return True
            exact = self._exact
            plain = _Stream(tokens, 0, t)
            # a join starts with a token that begins a mark word or joined mark
            if (_MAYBE_GLUED_RE.search(t) is not None and any(tok in keys for tok in tokens)
                    and _glued_stream(t, plain, exact.__contains__) is not None):
                return True
            if (not folded.original.isascii() and tn.OTHER_CJK_RE.search(t) is not None
                    and _kanji_prefix_stream(plain, exact.__contains__, CJK_CUES_AFTER) is not None):
                return True
            # no reading, no join, no cut: what is left are the streams every text is searched
            # in, and any key found in them (before any check of the hit) counts
            automaton = self._automaton
            if len(automaton) == 0:
                continue
            streams = [plain]
            if _MAYBE_SPLIT_RE.search(t) is not None:
                streams += _despaced_streams(t, plain)
            if _LEET_SYMBOL_RE.search(t) is not None:
                symbols = _symbol_stream(t)
                if symbols is not None:
                    streams.append(symbols)
            for stream in streams:
                for _ in automaton.iter(stream.hay):
                    return True
        return False

    @property
    def mark_words(self) -> tuple[str, ...]:
        """The words that typo and padding lookups can return (mark words of 4+ letters)."""
        return self._words

    # --- internals -----------------------------------------------------------------------
    def _evidence(self, fields: Sequence[tuple[Field, str]], category: str) -> list[Evidence]:
        best: dict[str, dict[Field, tuple[float, Signal]]] = {}
        for field, text in fields:
            if not text:
                continue
            folded = tn.fold(text)
            occurrences = [o for o in self._occurrences(folded, field in TYPO_ANYWHERE, field in ANY_FIRST_LETTER)
                           if not o.compat]
            if not occurrences:
                continue
            # A misspelling or short leet code next to another brand's plain mark is that
            # brand's product name or model ("Microsoft Visio" is no Vizio, "Samsung G3" no GE).
            plain_brands = {self._marks[o.mark_id].brand_id for o in occurrences if not self._weak(o)}
            for occ in occurrences:
                mark = self._marks[occ.mark_id]
                if self._weak(occ) and plain_brands - {mark.brand_id}:
                    continue
                score = self._score(mark, occ, field, category)
                per_field = best.setdefault(mark.brand_id, {})
                prev = per_field.get(field)
                if prev is not None and prev[0] >= score:
                    continue
                detail = {
                    "mark": mark.text, "field": field._value_,   # the plain attribute: .value is a descriptor call
                    "matched": folded.surface(occ.start, occ.end),
                    "normalisations": tn.fold_names(occ.flags),
                }
                if self._category_mismatch(mark, category):
                    detail["category_mismatch"] = True
                per_field[field] = (score, Signal(FIELD_KIND[field], score, detail))
        out = [Evidence(bid, tuple(s for _, s in sorted(per.values(), key=lambda x: -x[0])))
               for bid, per in best.items()]
        out.sort(key=lambda e: -max(s.score for s in e.signals))
        return out

    def _weak(self, occ: Occurrence) -> bool:
        return bool(occ.flags & _TYPO) or (self._marks[occ.mark_id].short and bool(occ.flags & _LEET))

    def _category_mismatch(self, mark: Mark, category: str) -> bool:
        cats = self._brands[mark.brand_id].categories
        return bool(category and cats and not _category_related(category, cats))

    def _score(self, mark: Mark, occ: Occurrence, field: Field, category: str) -> float:
        if occ.flags & _TYPO:
            score = TYPO_SCORE
        elif mark.short and occ.flags & _LEET:
            score = SHORT_LEET_SCORE
        else:
            score = MARK_SCORE
        score *= FIELD_FACTOR[field]
        if self._category_mismatch(mark, category):
            score *= CATEGORY_MISMATCH_FACTOR
        return score

    def _occurrences(self, folded: tn.FoldedText, typo_anywhere: bool, any_first: bool = False) -> list[Occurrence]:
        text = folded.text
        tokens = tn.TOKEN_RE.findall(text)
        if not tokens:
            return []
        plain = _Stream(tokens, 0, text)
        found: list[_Hit] = []
        self._search(plain, folded, found)
        if _MAYBE_SPLIT_RE.search(text) is not None:
            for spaced in _despaced_streams(text, plain):
                self._search(spaced, folded, found)
        if _MAYBE_GLUED_RE.search(text) is not None:
            glued = _glued_stream(text, plain, self._exact.__contains__)
            if glued is not None:
                self._search(glued, folded, found)
        if not folded.original.isascii() and tn.OTHER_CJK_RE.search(text) is not None:
            kanji = _kanji_prefix_stream(plain, self._exact.__contains__, CJK_CUES_AFTER)
            if kanji is not None:
                self._search(kanji, folded, found)
        if _LEET_SYMBOL_RE.search(text) is not None:
            symbols = _symbol_stream(text)
            if symbols is not None:
                self._search(symbols, folded, found)
        for corrected in self._corrected_streams(plain, typo_anywhere, any_first):
            self._search(corrected, folded, found)
        if not found:
            return []
        unique: dict[tuple[int, int, int], _Hit] = {}
        for h in found:   # one hit per mark and span: the one that needed the fewest folds
            key = (h.mark_id, h.start, h.end)
            prev = unique.get(key)
            if prev is None or bin(h.flags).count("1") < bin(prev.flags).count("1"):
                unique[key] = h
        covered = bytearray(len(folded.text))
        for h in unique.values():
            covered[h.start:h.end] = b"\x01" * (h.end - h.start)
        occurrences = [Occurrence(h.mark_id, h.start, h.end, h.flags, _is_compat(h, covered), h.lead)
                       for h in unique.values()]
        return _prefer_longer(occurrences, self._marks) if len(occurrences) > 1 else occurrences

    def _search(self, stream: _Stream, folded: tn.FoldedText, found: list[_Hit]) -> None:
        hay = stream.hay
        tokens = stream.tokens
        for end, value in self._automaton.iter(hay):
            if len(found) >= MAX_HITS_PER_FIELD:
                return
            codes = (value,) if value < _COLLISION_BASE else self._collisions[value - _COLLISION_BASE]
            m0 = self._marks[codes[0] >> 1]
            # Keys sharing a value have as many tokens; count tokens, not characters (kana
            # keys drop the long-vowel mark, so a key may be shorter than the mark).
            n_tokens = 1 if codes[0] & 1 else m0.norm.count(" ") + 1
            last = stream.offset + hay.count(" ", 0, end) - 1   # inclusive
            first = last - n_tokens + 1
            written = " ".join(tokens[first:last + 1])
            tflags = stream.flags(first, last)
            lead = _at_brand_position(tokens, first)
            if _misread_off_position(tflags, lead, stream.anywhere):
                continue
            for code in codes:
                mark = self._marks[code >> 1]
                form = mark.joined if code & 1 else mark.norm
                flags = tflags
                if written != form:
                    if tn.kana_variant(written, form):
                        flags |= _KANA
                    elif not _leet_ok(written.replace(" ", ""), mark, lead):
                        continue
                    else:
                        flags |= _LEET
                if stream.needs and not flags & stream.needs:
                    continue
                if _common_word_alone(flags, first, last):
                    continue
                if mark.short and not _short_ok(tokens, first, last):
                    continue
                spans = stream.spans()
                start, end_c = spans[first][0], spans[last][1]
                flags = (flags & _FOLD_MASK) | folded.span_flags(start, end_c)
                found.append(_Hit(code >> 1, stream, first, last, start, end_c, flags, lead))

    def _corrected_streams(self, plain: _Stream, anywhere: bool, any_first: bool = False) -> list[_Stream]:
        """Streams with misspelt or padded tokens replaced by the mark words they evoke,
        searched only in a window around the replaced tokens: one with every token's best
        reading, plus one per alternative reading of a token ("lin" may be "line" or "link"),
        at most MAX_CORRECTED_STREAMS in all."""
        if not self._words:
            return []
        base = plain.tokens
        tokens: list[str] | None = None
        tflags: list[int] = []
        changed: list[int] = []
        alternatives: list[tuple[int, str, int]] = []
        for k in (range(len(base)) if anywhere else _brand_position_tokens(base, self._max_tokens)):
            t = base[k]
            if len(t) < FUZZY_MIN_LEN - 1:
                continue
            hits = self._correct(t, any_first)
            if hits:
                if tokens is None:
                    tokens = list(base)
                    tflags = [0] * len(tokens)
                tokens[k], tflags[k] = hits[0]
                changed.append(k)
                alternatives.extend((k, w, f) for w, f in hits[1:])
        if tokens is None:
            return []
        needs = _TYPO | _REPEAT | _HOMOGLYPH
        spans = plain.spans()
        text = plain._text
        span = self._max_tokens - 1
        # Every best reading lives in the same token list, so one stream whose window covers
        # all replaced tokens finds what one stream per replaced token would (a hit must contain
        # a replaced token: `needs`), for one automaton pass instead of several. A stream none
        # of whose replaced tokens can be part of a key where it stands (`_may_hit`) finds
        # nothing, so it is not built (benchmarks/text_matching.py at 100 k marks: 65 % of the checks).
        out = []
        if any(self._may_hit(tokens, k, tokens[k], tflags[k], anywhere) for k in changed):
            out.append(_Stream(tokens, needs, text, window=(max(0, changed[0] - span), changed[-1] + span + 1),
                               spans=spans, tflags=tflags, anywhere=anywhere))
        for k, w, f in alternatives[:MAX_CORRECTED_STREAMS - 1]:
            if not self._may_hit(tokens, k, w, f, anywhere):
                continue
            alt_t, alt_f = list(tokens), list(tflags)
            alt_t[k], alt_f[k] = w, f
            out.append(_Stream(alt_t, needs, text, window=(max(0, k - span), k + span + 1),
                               spans=spans, tflags=alt_f, anywhere=anywhere))
        return out

    def _may_hit(self, tokens: Sequence[str], k: int, word: str, flags: int, anywhere: bool) -> bool:
        """False when no hit `_search` keeps can run through `word` read at position k with
        its folds `flags`: it is no one-token key, or one `_search` drops there (a common
        word's misspelling alone, or a misspelling away from the brand position; at 1 M marks
        most corrected streams built before were dropped so), and it forms no key's adjacent
        pair with its neighbours (compared as the automaton does, leet-keyed). A necessary
        condition only (hash collisions say True). Whether k is at the brand position does not
        depend on the word read there (`at_brand_position` reads the tokens before it)."""
        return ((self._key_part(word, self._solo) and not _common_word_alone(flags, k, k)
                 and not _misread_off_position(flags, _at_brand_position(tokens, k), anywhere))
                or (k > 0 and self._key_part(tokens[k - 1] + " " + word, self._pairs))
                or (k + 1 < len(tokens) and self._key_part(word + " " + tokens[k + 1], self._pairs)))

    def _key_part(self, part: str, table: "_HashTable") -> bool:
        """`part`, leet-keyed, `in table`, remembered by the part as written: at 1 M marks a
        table look-up is a few random reads in ~100 MB, and the same brand-position words and
        pairs come back listing after listing (remembered as written, a repeat costs no
        translation either). One cache serves both tables: a solo part has no space, a pair
        exactly one (tokens hold no spaces, leet-keyed or not)."""
        cache = self._part_cache
        hit = cache.get(part)
        if hit is None:
            if len(cache) >= TOKEN_CACHE_MAX:
                cache.clear()
            hit = cache[part] = part.translate(tn.LEET_TABLE) in table
        return hit

    def _correct(self, token: str, any_first: bool = False) -> tuple[tuple[str, int], ...]:
        """The mark words a text token misspells or pads, best first, each with its folds;
        `any_first`: the first letter may be the misread one."""
        cache = self._cache_any_first if any_first else self._cache
        hit = cache.get(token)
        if hit is not None:
            return hit
        result = self._correct_uncached(token, any_first)
        if len(cache) >= TOKEN_CACHE_MAX:
            cache.clear()
        cache[token] = result
        return result

    def _correct_uncached(self, token: str, any_first: bool) -> tuple[tuple[str, int], ...]:
        if token in NEVER_CORRECTED or token.isdigit() or not any(c.isalpha() for c in token):
            return ()
        if token in self._exact:
            return ()   # a mark word itself is matched as written
        if tn.has_padding(token):
            squeezed = tn.squeeze(token)
            padded = sorted({self._words[i] for i in self._squeezed.lookup((squeezed,))
                             if tn.padded_from(token, self._words[i])})
            if padded:
                return tuple((w, _REPEAT) for w in padded)
        if tn.CJK_RE.match(token) is not None:
            return ()   # one edit in a kana or kanji word makes another word
        common = token in tn.common_words()
        if not common:
            looks = sorted({w for w in tn.lookalike_readings(token) if w in self._exact})
            if looks:
                return tuple((w, _HOMOGLYPH) for w in looks)   # "torntom": rn reads as m
        words = self._words
        if any(c.isdigit() for c in token):
            # Model codes carry digits; a mark word with one digit typed into it is a disguise
            # only in the shapes of tn.digit_typo_ok (digits read as letters are leet's).
            if len(token) < DIGIT_TYPO_MIN_LEN:
                return ()
            found = {words[i] for i in self._deletes.lookup(tn.deletes1(token))}
            ok = sorted((w for w in found if len(w) >= DIGIT_TYPO_MIN_LEN and tn.digit_typo_ok(token, w)
                         and (w[0] == token[0] or any_first or tn.first_letter_typo_ok(token, w))),
                        key=lambda w: (w[0] != token[0], -len(w), w))
            return tuple((w, _TYPO | _DIGIT_TYPO | (_FIRST if w[0] != token[0] else 0)) for w in ok)
        found = {words[i] for i in self._deletes.lookup(tn.deletes1(token))}
        ok = sorted((w for w in found
                     if len(w) >= FUZZY_MIN_LEN and self._first_ok(token, w, any_first) and tn.within_one_edit(token, w)),
                    key=lambda w: (w[0] != token[0], -len(w), w))   # a kept first letter reads best
        if common:
            in_multi = self._in_multi
            ok = [w for w in ok if in_multi[_index(words, w)]]
        if not ok:
            return ()
        flag = _TYPO | (_SHORT_TYPO if len(token) < FUZZY_MIN_LEN else 0) | (_COMMON_TYPO if common else 0)
        return tuple((w, flag | (_FIRST if w[0] != token[0] and not any_first else 0)) for w in ok)

    @staticmethod
    def _first_ok(token: str, word: str, any_first: bool) -> bool:
        """People keep the first letter when they misspell; counterfeiters change it too
        ("Etgear", "Ogitech"), so an edit there counts for long mark words when the token is
        no known word (FIRST_LETTER_MIN_LEN)."""
        if any_first or word[0] == token[0]:
            return True
        return (len(word) >= FIRST_LETTER_MIN_LEN and tn.first_letter_typo_ok(token, word)
                and token not in tn.dictionary_words())


def _index(words: tuple[str, ...], w: str) -> int:
    """Position of w in the sorted word tuple."""
    return bisect.bisect_left(words, w)


def _rebuild(brands: tuple[BrandReference, ...], marks: tuple[Mark, ...]) -> WordMarkIndex:
    return WordMarkIndex({b.brand_id: b for b in brands}, marks)


def _multi_add(d: dict[str, object], key: str, value: int) -> None:
    cur = d.get(key)
    if cur is None:
        d[key] = value
    elif isinstance(cur, int):
        if cur != value:
            d[key] = (cur, value)
    elif value not in cur:  # tuple
        d[key] = cur + (value,)  # type: ignore[operator]
