"""Word-mark matching: finds the enrolled trademarks that a listing's text presents.

`WordMarkIndex.build(brands)` compiles every mark once (immutable afterwards; the pipeline
swaps in a new index when brands change). `match(listing)` returns one `Evidence` per brand
whose mark the title, brand field, description or bullets show, plain or disguised
(homoglyphs, leetspeak, split letters, padding, one-edit typos), and not only as a
compatibility mention ("case for iPhone"). `decide.py` turns the evidence into a decision.

Candidates come from an Aho-Corasick automaton over token-bounded keys (exact and leet
forms) and, for misspellings, from a symmetric single-deletion neighbourhood of the mark
words (SymSpell style: cost per token independent of the number of marks), verified with
an exact OSA distance.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple, Sequence

import ahocorasick

from brand_signals import textnorm as tn
from brand_signals.records import BrandReference, Evidence, Listing, Signal, SignalKind

# --- scores (per signal; decide.py combines them with a noisy-OR) -------------------------
# A mark (plain or visually disguised: homoglyph, leet, split letters, padding) in the title
# or the brand field. Disguises are not weaker evidence: nobody types Cyrillic into "Dell" by
# accident. Above decide.ENFORCE_SCORE so the brand's own enforcement applies.
MARK_SCORE = 0.95
# One-edit misspellings can be honest words ("Alert" vs Alera) or product names: a human
# should look, so the score sits between decide.REVIEW_SCORE and ENFORCE_SCORE. Two hits
# (title and brand field) combine to >= ENFORCE_SCORE.
TYPO_SCORE = 0.7
# The same misspelling away from where titles put the brand (first words, or after "by"):
# weak alone (under decide.REVIEW_SCORE), it only adds to other evidence. On the dev set
# 154 of 156 disguised typos stand first (after "New"); ordinary look-alike words
# ("Dyno", "Share") stand anywhere.
TYPO_OFF_POSITION_SCORE = 0.35
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

# --- matching limits -------------------------------------------------------------------
# Marks (joined, without spaces) of at most this many characters are "short": exact token
# only, no typo matching; split letters only when they join into one isolated token.
SHORT_MARK_MAX = 3
# Typo matching needs mark words and text tokens of at least this length (4: "Tops" vs
# "Topps" is in; with 3 letters one edit reaches half the dictionary). A 3-letter token
# may still be a 4-letter mark missing a letter ("DYO" for DYMO), but only where the brand
# stands (see BRAND_POSITION_MAX).
FUZZY_MIN_LEN = 4
# Titles put the brand first ("Brand Model Product"); tokens at index <= this (after
# LEADING_WORDS such as "New") are in the brand position.
BRAND_POSITION_MAX = 1
# Marketing words that may precede the brand in a title.
LEADING_WORDS = frozenset({"new", "brand", "genuine", "original", "authentic", "official", "oem",
                           "premium", "remanufactured", "refurbished"})
# A word before the mark that names the maker ("PD-620J-IG by Middle Atlantic").
MAKER_WORDS = frozenset({"by", "from", "von", "par"})
# A compatibility cue stands at most this many tokens before the mark ("battery for 15 inch
# Dell": 3), with only filler words, model numbers or other marks between.
CUE_BEFORE_WINDOW = 4
# "Lexmark E250A21A Compatible": a cue at most this many tokens after the mark.
CUE_AFTER_WINDOW = 2
# Short marks read through leetspeak away from the brand position: at most this many leet
# characters ("4CP" for ACP; a "0K1" mid-title reads as much like a model code as OKI).
SHORT_LEET_MAX_CHARS = 1
# A token with several readings ("lin": line or link) gets a stream per extra reading, up
# to this many streams per field (bounds the cost of hostile text full of near-marks).
MAX_CORRECTED_STREAMS = 8
# Token fuzzy-lookup memo (text tokens are Zipf-distributed: a few thousand cover most
# titles). Cleared when full, so memory stays bounded on hostile input.
TOKEN_CACHE_MAX = 1 << 17

# Compatibility cues (normalised: lower case, no diacritics), English first, then German,
# French, Spanish/Portuguese, Italian, Dutch.
CUES_BEFORE = frozenset({
    "for", "fits", "fit", "fitting", "compatible", "compatibility", "replacement", "replacements",
    "replaces", "replace", "replacing", "works", "use", "designed", "equivalent", "substitute",
    "alternative", "suits", "suitable", "supports",
    "fur", "passend", "kompatibel", "ersatz",
    "pour", "compatibles", "adapte", "remplacement",
    "para", "compativel", "reemplazo", "repuesto",
    "per", "compatibile", "ricambio",
    "voor", "geschikt",
})
CUES_AFTER = frozenset({
    "compatible", "compatibles", "compat", "equivalent", "replacement", "replacements",
    "kompatibel", "compatibile", "compativel", "equivalente",
})
# Words that may stand between a cue and the mark ("for use with the Apple iPad").
FILLER_WORDS = frozenset({
    "the", "a", "an", "your", "yours", "my", "our", "all", "most", "many", "select", "selected",
    "any", "use", "using", "used", "with", "and", "or", "in", "on", "of", "to", "by", "new",
    "original", "oem", "genuine", "models", "model", "series", "type", "other", "various",
    "popular", "inch", "in", "mm", "cm", "gen", "generation", "also",
    "mit", "und", "oder", "die", "der", "das", "den", "dem", "ihr", "ihre", "alle",
    "avec", "et", "ou", "le", "la", "les", "votre", "vos", "tous",
    "con", "y", "o", "el", "los", "las", "su", "sus", "tu", "de", "e", "com", "todos",
    "il", "lo", "gli", "voor", "en", "met",
})
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
FIELD_FACTOR = {
    Field.TITLE: 1.0, Field.BRAND: 1.0, Field.DESCRIPTION: BODY_FACTOR, Field.BULLETS: BODY_FACTOR,
    Field.OCR: OCR_FACTOR,
}


# Stream-token bit (beyond textnorm.Fold) for a 3-letter token read as a 4-letter mark word.
_SHORT_TYPO = 1 << 16
# ... and for an ordinary word (COMMON_WORDS) read as a mark word: only counts inside a
# multi-word mark whose other words stand as written ("Trip Lite", "Bufalo Technology").
_COMMON_TYPO = 1 << 17
_FOLD_MASK = _SHORT_TYPO - 1
# Plain-int copies of the folds used on the hot path (IntFlag operators run in Python).
_LEET, _SPACING, _TYPO, _REPEAT = (int(tn.Fold.LEET), int(tn.Fold.SPACING), int(tn.Fold.TYPO),
                                   int(tn.Fold.REPEAT))
_LEET_SYMBOL_RE = re.compile(r"[$@!|]")
# Two single characters split by one separator: the only texts worth a despaced stream.
_MAYBE_SPLIT_RE = re.compile(r"(?<![^\W_])[^\W_][ .\-_·•*/~][^\W_](?![^\W_])")


class _Key(enum.IntEnum):
    """How an automaton key spells a mark."""
    PLAIN = 0      # the mark's tokens: " wilson jones "
    JOINED = 1     # a multi-token mark written as one token: " wilsonjones "
    LEET = 2       # leet key of either form (only differs from the above where "l" occurs)


_LEET_KEY = int(_Key.LEET)


@dataclass(frozen=True, slots=True)
class Mark:
    """One enrolled word mark in normal form."""

    brand_id: str
    text: str                     # as enrolled: "Wilson Jones"
    tokens: tuple[str, ...]       # ("wilson", "jones")
    joined: str                   # "wilsonjones"

    @property
    def short(self) -> bool:
        return len(self.joined) <= SHORT_MARK_MAX


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Where one mark was found in one field (folded-text character span)."""

    mark_id: int
    start: int
    end: int
    flags: int
    compat: bool
    lead: bool        # in the brand position (first words of the field, or after "by")


class _Hit(NamedTuple):
    """A key found in a stream, before the compatibility check."""

    mark_id: int
    stream: "_Stream"
    first: int          # token range in the stream, inclusive
    last: int
    start: int          # folded-text character span
    end: int
    flags: int
    lead: bool


class _Stream:
    """A token sequence over a folded field, searched as one string ("hay").

    Token spans (in the folded text) and per-token folds (spacing, leet, typo, padding) are
    only worked out when a key matches, which is rare: most fields match nothing."""

    __slots__ = ("tokens", "hay", "needs", "_text", "_spans", "_tflags", "_leet")

    def __init__(self, tokens: Sequence[str], needs: int, text: str, *, hay: str | None = None,
                 spans: Sequence[tuple[int, int]] | None = None, tflags: Sequence[int] | None = None,
                 leet: bool = False) -> None:
        self.tokens = tokens
        self.hay = hay if hay is not None else " " + " ".join(tokens) + " "
        self.needs = needs           # an occurrence counts only if its tokens carry one of these
        self._text = text
        self._spans = spans
        self._tflags = tflags
        self._leet = leet

    def spans(self) -> Sequence[tuple[int, int]]:
        if self._spans is None:
            self._spans = [m.span() for m in tn.TOKEN_RE.finditer(self._text)]
        return self._spans

    def flags(self, first: int, last: int) -> int:
        f = 0
        if self._tflags is not None:
            for k in range(first, last + 1):
                f |= self._tflags[k]
        elif self._leet:
            for k in range(first, last + 1):
                if tn.has_leet(self.tokens[k]):
                    f |= _LEET
        return f


def _category_related(listing_category: str, brand_categories: Sequence[str]) -> bool:
    """Same top-level branch of the slash path ("electronics/phones" ~ "electronics")."""
    top = tn.normalize(listing_category.split("/", 1)[0])
    for c in brand_categories:
        if tn.normalize(c.split("/", 1)[0]) == top:
            return True
    return False


class WordMarkIndex:
    """Immutable index of the word marks of the enrolled (not deleted) brands."""

    __slots__ = ("_brands", "_marks", "_automaton", "_exact_words", "_fuzzy_words",
                 "_not_corrected", "_deletes", "_squeezed", "_cache")

    def __init__(self, brands: Mapping[str, BrandReference], marks: tuple[Mark, ...]) -> None:
        self._brands = dict(brands)
        self._marks = marks
        automaton = ahocorasick.Automaton()
        keys: dict[str, list[tuple[int, int]]] = {}
        exact_words: set[str] = set()
        fuzzy_words: set[str] = set()
        for mid, m in enumerate(marks):
            plain = " " + " ".join(m.tokens) + " "
            keys.setdefault(plain, []).append((mid, int(_Key.PLAIN)))
            forms = [plain]
            if len(m.tokens) > 1:
                joined = " " + m.joined + " "
                keys.setdefault(joined, []).append((mid, int(_Key.JOINED)))
                forms.append(joined)
            for f in forms:
                keys.setdefault(tn.leet_key(f), []).append((mid, _LEET_KEY))
            exact_words.update(m.tokens)
            if not m.short:
                fuzzy_words.update(t for t in m.tokens if len(t) >= FUZZY_MIN_LEN)
                if len(m.tokens) > 1:
                    fuzzy_words.add(m.joined)
        for k, v in keys.items():
            automaton.add_word(k, (len(k), tuple(v)))
        if keys:
            automaton.make_automaton()
        self._automaton = automaton
        self._exact_words = frozenset(exact_words | {m.joined for m in marks})
        deletes: dict[str, object] = {}
        squeezed: dict[str, object] = {}
        for w in sorted(fuzzy_words):
            for d in tn.deletes1(w):
                _multi_add(deletes, d, w)
            _multi_add(squeezed, tn.squeeze(w), w)
        self._fuzzy_words = frozenset(fuzzy_words)
        self._not_corrected = self._exact_words | NEVER_CORRECTED
        self._deletes = deletes
        self._squeezed = squeezed
        self._cache: dict[str, tuple[tuple[str, int], ...]] = {}

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
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for bid in sorted(live):
            for text in live[bid].trademarks:
                tokens = tuple(tn.normalize(text).split())
                if not tokens or (bid, tokens) in seen:
                    continue
                seen.add((bid, tokens))
                marks.append(Mark(bid, text, tokens, "".join(tokens)))
        return cls(live, tuple(marks))

    def __reduce__(self):
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
        # Fuzzy lookups are memoised per token, so a batch pays once per distinct token.
        return [self.match(x) for x in listings]

    def match_text(self, text: str, field: str = "ocr_text") -> list[Evidence]:
        return self._evidence([(Field(field), text)], "")

    def find(self, text: str, field: Field = Field.TITLE) -> list[tuple[Mark, Occurrence, str]]:
        """All occurrences in one text (for tests and debugging): (mark, occurrence, surface)."""
        folded = tn.fold(text)
        return [(self._marks[o.mark_id], o, folded.surface(o.start, o.end))
                for o in self._occurrences(folded)]

    def readings(self, token: str) -> tuple[tuple[str, int], ...]:
        """The mark words a folded text token may misspell or pad, best first, each with its
        folds (for tests and debugging; matching uses the same memoised lookup)."""
        return self._correct(token)

    # --- internals -----------------------------------------------------------------------
    def _evidence(self, fields: Sequence[tuple[Field, str]], category: str) -> list[Evidence]:
        best: dict[str, dict[Field, tuple[float, Signal]]] = {}
        for field, text in fields:
            if not text:
                continue
            folded = tn.fold(text)
            occurrences = [o for o in self._occurrences(folded) if not o.compat]
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
                    "mark": mark.text, "field": field.value,
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
            lead = occ.lead or field is Field.BRAND or field is Field.OCR
            score = TYPO_SCORE if lead else TYPO_OFF_POSITION_SCORE
        elif mark.short and occ.flags & _LEET:
            score = SHORT_LEET_SCORE
        else:
            score = MARK_SCORE
        score *= FIELD_FACTOR[field]
        if self._category_mismatch(mark, category):
            score *= CATEGORY_MISMATCH_FACTOR
        return score

    def _occurrences(self, folded: tn.FoldedText) -> list[Occurrence]:
        text = folded.text
        tokens = tn.TOKEN_RE.findall(text)
        if not tokens:
            return []
        plain = _Stream(tokens, 0, text)
        found: list[_Hit] = []
        self._search(plain, folded, found, leet=False)
        if _MAYBE_SPLIT_RE.search(text) is not None:
            for spaced in _despaced_streams(text, plain):
                self._search(spaced, folded, found, leet=False)
        if tn.has_leet(text):
            self._search(_leet_stream(text, plain), folded, found, leet=True)
        for corrected in self._corrected_streams(plain):
            self._search(corrected, folded, found, leet=False)
        if not found:
            return []
        spans = [(h.start, h.end) for h in found]
        occurrences = [Occurrence(h.mark_id, h.start, h.end, h.flags, _is_compat(h, spans), h.lead)
                       for h in found]
        return _prefer_longer(occurrences, self._marks) if len(occurrences) > 1 else occurrences

    def _search(self, stream: _Stream, folded: tn.FoldedText, found: list[_Hit],
                leet: bool) -> None:
        tokens = stream.tokens
        hay = stream.hay
        starts: dict[int, int] | None = None
        for end, (klen, entries) in self._automaton.iter(hay):
            if starts is None:
                starts = {}
                pos = 1
                for k, t in enumerate(tokens):
                    starts[pos] = k
                    pos += len(t) + 1
            first = starts[end - klen + 2]
            last = first + hay.count(" ", end - klen + 2, end)      # inclusive
            tflags = stream.flags(first, last)
            if stream.needs and not tflags & stream.needs:
                continue
            lead = _at_brand_position(tokens, first)
            if tflags & _SHORT_TYPO and not lead:
                continue
            common_typo = tflags & _COMMON_TYPO
            for mid, key in entries:
                if (key == _LEET_KEY) != leet:
                    continue
                mark = self._marks[mid]
                if common_typo and first == last:
                    continue   # an ordinary word read as a one-word mark ("Bass" as BOSS)
                if leet and not _leet_ok(tokens, first, last, mark, lead):
                    continue
                if mark.short and not _short_ok(tokens, first, last):
                    continue
                spans = stream.spans()
                start, end_c = spans[first][0], spans[last][1]
                flags = (tflags & _FOLD_MASK) | folded.span_flags(start, end_c)
                found.append(_Hit(mid, stream, first, last, start, end_c, flags, lead))

    def _corrected_streams(self, plain: _Stream) -> list[_Stream]:
        """Streams with misspelt or padded tokens replaced by the mark words they evoke: one
        with every token's best reading, plus one per alternative reading of one token
        ("lin" may be "line" or "link"), at most MAX_CORRECTED_STREAMS in all."""
        if not self._fuzzy_words:
            return []
        tokens: list[str] | None = None
        tflags: list[int] = []
        alternatives: list[tuple[int, str, int]] = []
        skip = self._not_corrected
        for k, t in enumerate(plain.tokens):
            if len(t) < FUZZY_MIN_LEN - 1 or t in skip:
                continue
            hits = self._correct(t)
            if hits:
                if tokens is None:
                    tokens = list(plain.tokens)
                    tflags = [0] * len(tokens)
                tokens[k], tflags[k] = hits[0]
                alternatives.extend((k, w, f) for w, f in hits[1:])
        if tokens is None:
            return []
        needs = _TYPO | _REPEAT
        spans = plain.spans()
        out = [_Stream(tokens, needs, plain._text, spans=spans, tflags=tflags)]
        for k, w, f in alternatives[:MAX_CORRECTED_STREAMS - 1]:
            alt_t, alt_f = list(tokens), list(tflags)
            alt_t[k], alt_f[k] = w, f
            out.append(_Stream(alt_t, needs, plain._text, spans=spans, tflags=alt_f))
        return out

    def _correct(self, token: str) -> tuple[tuple[str, int], ...]:
        """The mark words a text token misspells or pads, best first, each with its folds."""
        cache = self._cache
        if token in cache:
            return cache[token]
        result = self._correct_uncached(token)
        if len(cache) >= TOKEN_CACHE_MAX:
            cache.clear()
        cache[token] = result
        return result

    def _correct_uncached(self, token: str) -> tuple[tuple[str, int], ...]:
        if token.isdigit() or not any(c.isalpha() for c in token):
            return ()
        if tn.has_padding(token):
            padded = tuple((w, _REPEAT) for w in sorted(_multi_get(self._squeezed, tn.squeeze(token)))
                           if tn.padded_from(token, w))
            if padded:
                return padded
        if any(c.isdigit() for c in token):
            return ()   # model codes; digits standing for letters are leet's business
        candidates: set[str] = set()
        for d in tn.deletes1(token):
            candidates.update(_multi_get(self._deletes, d))
        words = sorted((w for w in candidates
                        if len(w) >= FUZZY_MIN_LEN and w[0] == token[0] and tn.within_one_edit(token, w)),
                       key=lambda w: (-len(w), w))
        if not words:
            return ()
        flag = _TYPO | (_SHORT_TYPO if len(token) < FUZZY_MIN_LEN else 0)
        if token in tn.common_words():
            flag |= _COMMON_TYPO
        return tuple((w, int(flag)) for w in words)


def _rebuild(brands: tuple[BrandReference, ...], marks: tuple[Mark, ...]) -> WordMarkIndex:
    return WordMarkIndex({b.brand_id: b for b in brands}, marks)


def _multi_add(d: dict[str, object], key: str, value: str) -> None:
    cur = d.get(key)
    if cur is None:
        d[key] = value
    elif isinstance(cur, str):
        if cur != value:
            d[key] = (cur, value)
    elif value not in cur:  # tuple
        d[key] = cur + (value,)


def _multi_get(d: dict[str, object], key: str) -> tuple[str, ...]:
    v = d.get(key)
    if v is None:
        return ()
    return (v,) if isinstance(v, str) else v  # type: ignore[return-value]


def _plain_stream(text: str) -> _Stream:
    tokens: list[str] = []
    spans: list[tuple[int, int]] = []
    for m in tn.TOKEN_RE.finditer(text):
        tokens.append(m.group())
        spans.append(m.span())
    return _Stream(tuple(tokens), tuple(spans), (0,) * len(tokens), 0)


def _despaced_streams(text: str, plain: _Stream) -> list[_Stream]:
    """The despaced stream, and when a run's last letter may belong to the next word
    ("B r o t h e r P-Touch" vs "C i s c o-Linksys"), the reading without it too."""
    out = []
    for detach in (False, True):
        s, ambiguous = _despaced_stream(text, plain, detach)
        if s is not None:
            out.append(s)
        if not ambiguous:
            break
    return out


def _despaced_stream(text: str, plain: _Stream, detach_last: bool) -> tuple[_Stream | None, bool]:
    """Join runs of single characters split by separators ("S w i n g", "C.a.s.i.o", "L-G").

    Within a run the most common separator splits letters and any other one splits words
    ("W.i.l.s.o.n J.o.n.e.s", "Q S.e.e"). With `detach_last`, a last letter tied to the next
    word by another separator goes to that word ("B r o t h e r P-Touch"). Returns the
    stream (None: nothing joined) and whether such an ambiguous last letter was seen."""
    toks, spans = plain.tokens, plain.spans()
    n = len(toks)
    out_t: list[str] = []
    out_s: list[tuple[int, int]] = []
    out_f: list[int] = []
    joined_any = False
    ambiguous = False
    k = 0
    while k < n:
        if len(toks[k]) != 1:
            out_t.append(toks[k]); out_s.append(spans[k]); out_f.append(0)
            k += 1
            continue
        j = k
        gaps: list[str] = []
        while j + 1 < n and len(toks[j + 1]) == 1:
            gap = text[spans[j][1]:spans[j + 1][0]]
            if len(gap) != 1 or gap not in tn.SPLIT_SEPARATORS:
                break
            if gap == " " and toks[j].isdigit() != toks[j + 1].isdigit():
                break  # "3 M", "2 x": a quantity and its unit, not split letters
            gaps.append(gap)
            j += 1
        if gaps:
            sep = max(set(gaps), key=lambda g: (gaps.count(g), g == " "))
            if j + 1 < n:
                after = text[spans[j][1]:spans[j + 1][0]]
                if after != sep and len(after) == 1 and after != " " and gaps[-1] != after:
                    ambiguous = True
                    if detach_last:
                        j -= 1
                        gaps.pop()
        group_start = k
        for g in range(k, j + 1):
            if g == j or gaps[g - k] != sep:
                if g > group_start:
                    out_t.append("".join(toks[group_start:g + 1]))
                    out_s.append((spans[group_start][0], spans[g][1]))
                    out_f.append(_SPACING)
                    joined_any = True
                else:
                    out_t.append(toks[g]); out_s.append(spans[g]); out_f.append(0)
                group_start = g + 1
        k = j + 1
    if not joined_any:
        return None, ambiguous
    return _Stream(out_t, _SPACING, text, spans=out_s, tflags=out_f), ambiguous


def _leet_stream(text: str, plain: _Stream) -> _Stream:
    """Tokens keyed for leet lookup. Without "$@!|" in the text the tokens are the plain
    ones; otherwise those symbols stay inside tokens ("Sam$ung")."""
    if _LEET_SYMBOL_RE.search(text) is None:
        return _Stream(plain.tokens, _LEET, text, hay=plain.hay.translate(tn.LEET_TABLE), leet=True)
    tokens: list[str] = []
    spans: list[tuple[int, int]] = []
    for m in tn.LEET_TOKEN_RE.finditer(text):
        t = m.group()
        stripped = t.strip(tn.LEET_EDGE_STRIP)
        if not stripped:
            continue
        s = m.start() + len(t) - len(t.lstrip(tn.LEET_EDGE_STRIP))
        tokens.append(stripped)
        spans.append((s, s + len(stripped)))
    hay = (" " + " ".join(tokens) + " ").translate(tn.LEET_TABLE)
    return _Stream(tokens, _LEET, text, hay=hay, spans=spans, leet=True)


def _short_ok(tokens: Sequence[str], first: int, last: int) -> bool:
    """Short marks: one isolated token, not a unit after a number ("5 HP" is horsepower)."""
    if first != last:
        return False
    if first > 0 and tokens[first - 1].replace(".", "").isdigit():
        return False
    return True


def _leet_ok(tokens: Sequence[str], first: int, last: int, mark: Mark, lead: bool) -> bool:
    """The written tokens spell the mark through leet readings, with at least one letter.
    Short marks: never two-letter ones ("G3", "1G" are model codes, not GE or LG); more
    than SHORT_LEET_MAX_CHARS leet characters only in the brand position ("M51 GeForce")."""
    written = "".join(tokens[first:last + 1])
    if not any(c.isalpha() for c in written) or not tn.leet_reading_ok(written, mark.joined):
        return False
    if mark.short:
        n_leet = sum(1 for a, b in zip(written, mark.joined) if a != b)
        return len(mark.joined) > 2 and (n_leet <= SHORT_LEET_MAX_CHARS or lead)
    return True


def _at_brand_position(tokens: Sequence[str], first: int) -> bool:
    k = 0
    while k < len(tokens) and tokens[k] in LEADING_WORDS:
        k += 1
    if first - k <= BRAND_POSITION_MAX:
        return True
    return first > 0 and tokens[first - 1] in MAKER_WORDS


def _is_compat(hit: _Hit, mark_spans: Sequence[tuple[int, int]]) -> bool:
    """A compatibility mention: a cue a few tokens before the mark with only filler, model
    numbers or other found marks between ("for Canon and HP"), or a cue right after it."""
    toks = hit.stream.tokens
    first, last = hit.first, hit.last
    k = first - 1
    lo = max(0, first - CUE_BEFORE_WINDOW)
    while k >= lo:
        t = toks[k]
        if t in CUES_BEFORE:
            return True
        if t in FILLER_WORDS or any(c.isdigit() for c in t) or _inside(hit.stream.spans()[k], mark_spans):
            k -= 1
            continue
        break
    for k in range(last + 1, min(len(toks), last + 1 + CUE_AFTER_WINDOW)):
        if toks[k] in CUES_AFTER:
            return True
    return False


def _inside(span: tuple[int, int], spans: Sequence[tuple[int, int]]) -> bool:
    return any(s <= span[0] and span[1] <= e for s, e in spans)


def _prefer_longer(found: list[Occurrence], marks: tuple[Mark, ...]) -> list[Occurrence]:
    """Drop an occurrence lying inside a longer one of another brand ("Wilson" in "Wilson
    Jones"); also drop exact duplicates found by several streams (keep fewest folds)."""
    if len(found) <= 1:
        return found
    out: list[Occurrence] = []
    for o in found:
        bid = marks[o.mark_id].brand_id
        dominated = False
        for p in found:
            if p is o:
                continue
            if p.start <= o.start and o.end <= p.end and (p.end - p.start) > (o.end - o.start) \
                    and marks[p.mark_id].brand_id != bid:
                dominated = True
                break
        if not dominated:
            out.append(o)
    return out
