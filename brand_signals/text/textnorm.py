"""Text normalisation for word-mark matching: folds listing text and trademarks into one
comparable form and records which folds were needed, so evidence can say "matched after
homoglyph folding". `wordmarks.py` builds its token streams with these functions.

Per character (cached): Unicode confusables (from the `confusable-homoglyphs` package, which
ships Unicode's confusables.txt as JSON), NFKD compatibility decomposition, diacritics
stripping, invisible-character removal and case folding. Per token: leetspeak keys,
joining of letters split by spaces/dots/hyphens, and squeezing of repeated letters.
"""
from __future__ import annotations

import enum
import functools
import gzip
import json
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources

import orjson

# Hostile-input bound: no field is read past this many characters. Titles are at most 2,000
# by contract; marks in descriptions and bullets almost always stand early, and the cost of
# every later step is linear in this bound (a confusable flood of 20,000 characters costs
# the same as a plain one of 4,096).
MAX_FIELD_CHARS = 4096
# Size of the per-character fold cache; a cache miss costs ~3 µs, a hit ~50 ns. 65,536
# covers the BMP, so a flood of distinct characters costs at most one miss per character.
FOLD_CACHE_SIZE = 1 << 16


class Fold(enum.IntFlag):
    """Which normalisations a piece of text needed to match; names are used in evidence."""

    NONE = 0
    HOMOGLYPH = 1      # a confusable look-alike (Cyrillic/Greek/math letters) became ASCII
    COMPAT = 2         # NFKD compatibility form (fullwidth, ligature, superscript)
    DIACRITICS = 4     # combining marks dropped ("é" -> "e")
    INVISIBLE = 8      # zero-width / format characters removed
    LEET = 16          # digits or symbols read as letters ("T0mT0m")
    SPACING = 32       # letters split by spaces, dots or hyphens joined ("S.o.n.y")
    REPEAT = 64        # a letter repeated to pad the mark ("Sonyyyy")
    TYPO = 128         # one edit away (insertion, deletion, substitution, transposition)
    PUNCT = 256        # punctuation inside a mark dropped ("To-shiba", "Sa.brent")
    DIGIT_TYPO = 512   # a digit typed for a neighbouring key or a flipped bit, or added ("Sha5p", "Acer3")
    FIRST_LETTER = 1024  # the one edit is on the first letter ("Etgear", "Asharp")
    KANA = 2048        # kana variants: small for full size, long-vowel mark dropped or replaced


# Evidence names, in a stable order.
FOLD_NAMES: tuple[tuple[int, str], ...] = tuple((int(bit), name) for bit, name in (
    (Fold.HOMOGLYPH, "homoglyph"), (Fold.COMPAT, "nfkc"), (Fold.DIACRITICS, "diacritics"),
    (Fold.INVISIBLE, "invisible"), (Fold.LEET, "leet"), (Fold.SPACING, "spacing"),
    (Fold.REPEAT, "repeat"), (Fold.TYPO, "typo:edit1"), (Fold.PUNCT, "punctuation"),
    (Fold.DIGIT_TYPO, "typo:digit"), (Fold.FIRST_LETTER, "typo:first-letter"), (Fold.KANA, "kana"),
))


def fold_names(flags: int) -> list[str]:
    return [name for bit, name in FOLD_NAMES if flags & bit]


# Leetspeak readings, as one key per character. "1", "!", "|" and "l" all key to "i" so that
# either reading of "1" (i or l) meets the mark's own letters; the matcher verifies the
# alignment afterwards (a plain "l" in the text must still face an "l" or "i" in the mark).
# Kana written small or full size ("キャノン" for キヤノン) and the long-vowel mark present
# or not ("ソニ" for ソニー) read alike: small kana key to their full-size letter and the
# mark "ー" is dropped from the key (the matcher verifies the kana alignment afterwards).
SMALL_KANA = "ァィゥェォッャュョヮヵヶぁぃぅぇぉっゃゅょゎ"
FULL_KANA = "アイウエオツヤユヨワカケあいうえおつやゆよわ"
LONG_VOWEL = "\u30fc"
KANA_TABLE = str.maketrans(dict(zip(SMALL_KANA, FULL_KANA)) | {LONG_VOWEL: None})
LEET_TABLE = str.maketrans({
    "0": "o", "1": "i", "!": "i", "|": "i", "l": "i", "3": "e", "4": "a", "@": "a",
    "5": "s", "$": "s", "7": "t", "8": "b", "9": "g",
} | dict(zip(SMALL_KANA, FULL_KANA)) | {LONG_VOWEL: None})
# Which text character may stand for which mark character in a leet match.
LEET_READINGS: dict[str, frozenset[str]] = {
    "0": frozenset("o"), "1": frozenset("il"), "!": frozenset("il"), "|": frozenset("il"),
    "3": frozenset("e"), "4": frozenset("a"), "@": frozenset("a"), "5": frozenset("s"),
    "$": frozenset("s"), "7": frozenset("t"), "8": frozenset("b"), "9": frozenset("g"),
}

# Chinese, Japanese and Korean text has no spaces between words, so a run of those scripts is
# a token of its own even when glued to Latin letters: "Nike运动鞋" is "nike" + "运动鞋", as a
# marketplace title or an OCR line ("Google搜索") means it. (Hiragana, Katakana, CJK
# ideographs with extension A and the compatibility block, Hangul syllables.) Thai, Lao,
# Myanmar and Khmer are written without spaces between words too ("Nikeรองเท้า").
# Katakana (with its long-vowel mark and the small-kana extension) is a run of its own:
# Japanese titles glue a katakana brand to kanji or hiragana ("ソニー製", "ナイキの"), while
# a katakana word inside a longer katakana word is another word ("デル" in "モデル"). The
# katakana middle dot "・" separates words ("ルイ・ヴィトン"); it is no part of a token.
KATAKANA = "\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff"
OTHER_CJK = "\u3040-\u309f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
CJK = KATAKANA + OTHER_CJK
SOUTHEAST_ASIAN = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"
UNSPACED = CJK + SOUTHEAST_ASIAN
_RUNS = rf"[{KATAKANA}]+|[{OTHER_CJK}]+|[{SOUTHEAST_ASIAN}]+"
TOKEN_RE = re.compile(rf"[^\W_{UNSPACED}]+|{_RUNS}")
CJK_RE = re.compile(rf"[{CJK}]")
KATAKANA_RE = re.compile(rf"[{KATAKANA}]")
OTHER_CJK_RE = re.compile(rf"[{OTHER_CJK}]")
# Tokens of the leet stream keep the symbols that leetspeak uses inside words.
LEET_TOKEN_RE = re.compile(rf"(?:[^\W_{UNSPACED}]|[$@!|])+|{_RUNS}")
# Symbols that only count as leet inside a token ("Sony!" is not "sonyi").
LEET_EDGE_STRIP = "!|"
_REPEAT_RE = re.compile(r"(.)\1+")
_TRIPLE_RE = re.compile(r"(.)\1\1")
# Separators that may split a mark's letters ("S w i n g", "C.a.s.i.o", "L-G", "S_o_n_y").
SPLIT_SEPARATORS = frozenset(" .-_·•*/~\u30fb")
# Punctuation that may stand inside a mark's word ("To-shiba", "Sa.brent", "Mc'Afee"): the
# separators above without the space, plus apostrophes.
GLUE_SEPARATORS = "-._·•*/~'\u2019\u30fb"


# Ordinary words are not read as misspelt marks ("Bass" is not a typo of BOSS). Word lists
# from `pyspellchecker` (frequency lists of subtitles): the most frequent words of English,
# and of the largest other marketplace languages. Sizes: English's 25,000th word still
# occurs ~600 times per 10^8 words (everyday vocabulary, plurals included); beyond that
# the lists turn into names and rare forms. The other lists are smaller because their
# counts flatten out (ties at the minimum count) well before 20,000. Dutch and Portuguese
# are left out: their files are the largest (~0.2 s each to load) for little gain.
COMMON_WORD_LISTS: tuple[tuple[str, int], ...] = (
    ("en", 25_000), ("de", 10_000), ("fr", 10_000), ("es", 10_000), ("it", 10_000),
)


@functools.lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """Frequent ordinary words of the languages in COMMON_WORD_LISTS, folded. Loaded once per
    process (~0.4 s), on the first typo lookup."""
    out: set[str] = set()
    base = resources.files("spellchecker").joinpath("resources")
    for lang, top in COMMON_WORD_LISTS:
        counts: dict[str, int] = orjson.loads(gzip.decompress(base.joinpath(f"{lang}.json.gz").read_bytes()))
        values = sorted(counts.values(), reverse=True)
        cut = values[min(top, len(values)) - 1]   # words tied with the last one are kept too
        for word, n in counts.items():
            if n >= cut:
                out.add(word.lower() if word.isascii() else "".join(TOKEN_RE.findall(fold(word).text)))
    return frozenset(out)


@functools.lru_cache(maxsize=1)
def dictionary_words() -> frozenset[str]:
    """Every word of pyspellchecker's English list (~128,000, rare words and names included)
    plus common_words(): a misspelling of a mark's first letter must not be any known word
    ("Cattery" is no Battery). Loaded once per process, on the first such lookup."""
    base = resources.files("spellchecker").joinpath("resources")
    counts: dict[str, int] = orjson.loads(gzip.decompress(base.joinpath("en.json.gz").read_bytes()))
    return frozenset(w.lower() for w in counts if w.isascii()) | common_words()


def load_word_lists() -> None:
    """Load what folding and typo reading use (word lists, confusables) now rather than at
    the first record that needs them (~1 s per process): a scan worker calls it at start."""
    common_words()
    dictionary_words()
    confusable_map()


@functools.lru_cache(maxsize=1)
def confusable_map() -> dict[str, str]:
    """Non-ASCII character -> the ASCII letter or digit it is confusable with.

    From Unicode's confusables (source -> prototype) as shipped by `confusable-homoglyphs`;
    only single-character prototypes that are ASCII letters or digits are kept. A capital
    look-alike of "I" has the prototype "l" in Unicode's skeleton (I and l look alike in
    sans fonts); since we fold case afterwards, it becomes "i".
    """
    raw = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    data: dict[str, list[dict[str, str]]] = json.loads(raw)
    out: dict[str, str] = {}

    def target(v: str) -> str | None:
        # UTS #39 skeleton of the prototype: a prototype of several code points that is one
        # letter plus combining marks ("o" + combining long solidus for "ø") is that letter.
        v = "".join(c for c in unicodedata.normalize("NFD", v.strip("\u200e\u200f"))
                    if not unicodedata.combining(c))
        return v if len(v) == 1 and v.isascii() and v.isalnum() else None

    for k, entries in data.items():
        if len(k) != 1 or k.isascii():
            continue
        for e in entries:
            t = target(e["c"])
            if t is not None:
                out[k] = t
                break
    for k, entries in data.items():  # reverse direction: ASCII key -> its look-alikes
        if len(k) != 1 or not (k.isascii() and k.isalnum()):
            continue
        for e in entries:
            v = e["c"].strip("\u200e\u200f")
            if len(v) == 1 and not v.isascii():
                out.setdefault(v, k)
    for k, v in list(out.items()):
        if v == "l" and k.isupper():
            out[k] = "i"
    return out


# Latin letters that Unicode's confusables do not list but whose name says which letter they
# are, with a hook, stroke, tail, bar or descender, or as a small capital ("ꞑ" LATIN SMALL
# LETTER N WITH DESCENDER, "ʙ" LATIN LETTER SMALL CAPITAL B, "ʉ" LATIN SMALL LETTER U BAR):
# typosquatting generators draw their look-alikes from exactly these.
_LATIN_NAME_RE = re.compile(r"LATIN (?:SMALL |CAPITAL )?LETTER (?:SMALL CAPITAL )?([A-Z])(?: WITH .+| BAR)?")
# Latin letters whose name does not say the letter they look like.
LATIN_LOOKALIKES = {"\u014b": "n", "\u014a": "n", "\u0138": "k", "\u01bf": "p", "\u01f7": "p",
                    "\u0185": "b", "\u0184": "b", "\u0259": "a", "\u00e6": "ae", "\u00c6": "ae",
                    "\u0153": "oe", "\u0152": "oe"}   # eng, kra, wynn, tone six, schwa, ae, oe


# Letter pairs that read as one letter in most fonts (Unicode's confusables list single
# characters only; typosquatting generators use these pairs: "Tỏrntom", "nꞑcafee").
ASCII_LOOKALIKES = (("rn", "m"), ("nn", "m"), ("vv", "w"), ("cl", "d"))


def lookalike_readings(token: str) -> list[str]:
    """`token` with one letter pair of ASCII_LOOKALIKES read as the letter it looks like."""
    out = []
    for pair, letter in ASCII_LOOKALIKES:
        i = token.find(pair)
        while i >= 0:
            out.append(token[:i] + letter + token[i + 2:])
            i = token.find(pair, i + 1)
    return out


def latin_base(c: str) -> str | None:
    """The ASCII letter a Latin letter with a modifier stands for, from its Unicode name."""
    hit = LATIN_LOOKALIKES.get(c)
    if hit is not None:
        return hit
    m = _LATIN_NAME_RE.fullmatch(unicodedata.name(c, ""))
    return m.group(1).lower() if m else None


# Voiced and semi-voiced sound marks, combining, spacing and half-width, by the combining
# mark they put on the kana before them ("ｸﾞ" -> グ, "ハ" + U+309A -> パ).
_VOICED_MARKS = {"\u3099": "\u3099", "\u309a": "\u309a", "\u309b": "\u3099", "\u309c": "\u309a",
                 "\uff9e": "\u3099", "\uff9f": "\u309a"}
# Dashes that stand for the katakana long-vowel mark at the end of a katakana word ("ソニ-",
# "シャ−プ" typed with a minus sign); between katakana words they separate them.
KANA_DASHES = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\uff0d~\u301c\uff5e")


def _is_katakana(c: str) -> bool:
    return "\u30a1" <= c <= "\u30ff" and c != "\u30fb" or "\uff66" <= c <= "\uff9f" or "\u31f0" <= c <= "\u31ff"


@functools.lru_cache(maxsize=FOLD_CACHE_SIZE)
def fold_char(c: str) -> tuple[str, int]:
    """One character -> (folded text, Fold bits). The folded text may be empty or longer."""
    if c.isascii():
        return c.lower(), 0
    if c in _VOICED_MARKS:
        return "", int(Fold.DIACRITICS)   # a voiced mark with no kana before it (fold() composes the others)
    if "\u3040" <= c <= "\u30ff" or "\uff61" <= c <= "\uff9f":
        # Kana: NFKC, so that half-width forms become full width ("ﾅｲｷ" -> ナイキ) and voiced
        # kana keep their mark (NFKD would split "グ" into ク + a combining mark).
        n = unicodedata.normalize("NFKC", c)
        return n, int(Fold.COMPAT) if n != c else 0
    cat = unicodedata.category(c)
    if cat == "Cf" or cat == "Mn" or cat == "Me":
        return "", int(Fold.INVISIBLE if cat == "Cf" else Fold.DIACRITICS)
    conf = confusable_map()
    proto = conf.get(c)
    if proto is not None:
        return proto.lower(), int(Fold.HOMOGLYPH)
    flags = 0
    decomposed = unicodedata.normalize("NFKD", c)
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    if len(kept) < len(decomposed):
        flags |= Fold.DIACRITICS
    if unicodedata.normalize("NFD", c) != decomposed:
        flags |= Fold.COMPAT
    out = []
    for ch in kept.casefold():
        p = conf.get(ch)
        if p is None and not ch.isascii():
            p = latin_base(ch)
        if p is not None:
            out.append(p.lower())
            flags |= Fold.HOMOGLYPH
        else:
            out.append(ch)
    return "".join(out), int(flags)


@dataclass(frozen=True, slots=True)
class FoldedText:
    """A field after per-character folding, with a way back to the original characters."""

    original: str                      # the field text, cut at MAX_FIELD_CHARS
    text: str                          # folded: lower case ASCII wherever a fold exists
    origin: tuple[int, ...] | None     # folded index -> original index (None: identical)
    flags: tuple[int, ...] | None      # Fold bits per folded character (None: all zero)

    def span_flags(self, start: int, end: int) -> int:
        if self.flags is None:
            return 0
        f = 0
        for x in self.flags[start:end]:
            f |= x
        return f

    def surface(self, start: int, end: int) -> str:
        """The original text behind folded[start:end]."""
        if self.origin is None:
            return self.original[start:end]
        if start >= end or start >= len(self.origin):
            return ""
        o_start = self.origin[start]
        o_end = self.origin[end - 1] + 1
        while o_end < len(self.original) and self.original[o_end] in _VOICED_MARKS:
            o_end += 1     # composed into the kana before it
        return self.original[o_start:o_end]


_ASCII_RUN = re.compile(r"[\x00-\x7f]+")
# Off: every character is folded on its own, as before runs were folded whole (the tests compare).
FOLD_ASCII_RUNS = True


def fold(text: str, max_chars: int = MAX_FIELD_CHARS) -> FoldedText:
    """Fold a field: confusables, compatibility forms, diacritics, invisibles, case."""
    if len(text) > max_chars:
        text = text[:max_chars]
    if text.isascii():
        return FoldedText(text, text.lower(), None, None)
    pieces: list[str] = []
    origin: list[int] = []
    flags: list[int] = []
    pending = 0   # folds of removed characters, credited to the next character kept
    n = len(text)
    runs = FOLD_ASCII_RUNS
    i = -1
    while i + 1 < n:
        i += 1
        c = text[i]
        if runs and c < "\x80" and (not pieces or pieces[-1][-1] < "\u3040"):
            # A run of ASCII after no kana folds as a whole: each character is its lower case,
            # with no fold (fold_char), and none of them can join a kana before it.
            j = _ASCII_RUN.match(text, i).end()
            pieces.append(text[i:j].lower())
            origin.extend(range(i, j))
            flags.append(pending)
            flags.extend([0] * (j - i - 1))
            pending = 0
            i = j - 1
            continue
        if pieces and pieces[-1][-1] >= "\u3040" and (_is_katakana(pieces[-1][-1]) or pieces[-1][-1] <= "\u309f"):
            mark = _VOICED_MARKS.get(c)
            if mark is not None:
                composed = unicodedata.normalize("NFC", pieces[-1][-1] + mark)
                if len(composed) == 1:
                    pieces[-1] = pieces[-1][:-1] + composed
                    if c not in "\u3099\u309a":
                        flags[-1] |= int(Fold.COMPAT)
                    continue
            if c in KANA_DASHES and _is_katakana(pieces[-1][-1]) and (i + 1 == n or not _is_katakana(text[i + 1])):
                pieces.append(LONG_VOWEL)
                origin.append(i)
                flags.append(int(Fold.KANA) | pending)
                pending = 0
                continue
        f, bits = fold_char(c)
        if f:
            pieces.append(f)
            origin.extend([i] * len(f))
            flags.extend([bits | pending] * len(f))
            pending = 0
        else:
            pending |= bits
    if pending and flags:
        flags[-1] |= pending
    return FoldedText(text, "".join(pieces), tuple(origin), tuple(flags))


def normalize(text: str) -> str:
    """The plain normal form of a mark or phrase: folded tokens joined by single spaces."""
    return " ".join(TOKEN_RE.findall(fold(text).text))


def kana_variant(text: str, mark: str) -> bool:
    """`text` writes `mark` with other kana sizes or long-vowel marks ("キャノン", "ソニ")."""
    return text != mark and text.translate(KANA_TABLE) == mark.translate(KANA_TABLE)


def leet_key(s: str) -> str:
    """The leet key of folded text (see LEET_TABLE)."""
    return s.translate(LEET_TABLE)


def leet_reading_ok(text: str, mark: str) -> bool:
    """True when folded `text` spells `mark` (same length) reading some characters as leet,
    and at least one leet character was needed. Letters must face the same letter."""
    if len(text) != len(mark) or text == mark:
        return False
    used = False
    for t, m in zip(text, mark):
        if t == m:
            continue
        readings = LEET_READINGS.get(t)
        if readings is None or m not in readings:
            return False
        used = True
    return used


def squeeze(s: str) -> str:
    """Collapse runs of one repeated character to one ("sonyyyy" -> "sony", "accell" -> "acel")."""
    return _REPEAT_RE.sub(r"\1", s)


def has_padding(s: str) -> bool:
    """A run of three or more of one character: the shape of "Sonyyy" padding."""
    return _TRIPLE_RE.search(s) is not None


def padded_from(text: str, mark: str) -> bool:
    """True when `text` is `mark` with some of its letters repeated more often."""
    if text == mark or squeeze(text) != squeeze(mark):
        return False
    runs_t = _runs(text)
    runs_m = _runs(mark)
    return len(runs_t) == len(runs_m) and all(a >= b for a, b in zip(runs_t, runs_m))


def _runs(s: str) -> list[int]:
    out: list[int] = []
    prev = None
    for c in s:
        if c == prev:
            out[-1] += 1
        else:
            out.append(1)
            prev = c
    return out


def osa_distance(a: str, b: str, limit: int = 2) -> int:
    """Optimal-string-alignment distance (Levenshtein plus adjacent transposition), cut off
    at limit + 1 as soon as it is sure to exceed `limit`."""
    if a == b:
        return 0
    la, lb = len(a), len(b)
    if abs(la - lb) > limit:
        return limit + 1
    prev2: list[int] | None = None
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        cur = [i] + [0] * lb
        ca = a[i - 1]
        best = cur[0]
        for j in range(1, lb + 1):
            cb = b[j - 1]
            cost = 0 if ca == cb else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if prev2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
            if v < best:
                best = v
        if best > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[lb], limit + 1)


def within_one_edit(a: str, b: str) -> bool:
    """OSA distance exactly 1 (one insertion, deletion, substitution or adjacent
    transposition), in one linear pass; osa_distance(a, b, 1) == 1 without the table."""
    la, lb = len(a), len(b)
    if la == lb:
        if a == b:
            return False
        i = 0
        while a[i] == b[i]:
            i += 1
        if a[i + 1:] == b[i + 1:]:
            return True                       # substitution
        return i + 1 < la and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2:] == b[i + 2:]
    if la == lb + 1:
        a, b, la, lb = b, a, lb, la
    if lb != la + 1:
        return False
    i = 0
    while i < la and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1:]                 # b has one extra character at i


def _keyboard_neighbours() -> dict[str, frozenset[str]]:
    """Keys next to each key on QWERTY, QWERTZ and AZERTY (digit row included), from each
    layout's rows with the usual half-key stagger: same row left and right, the two keys
    above (same column and one right) and the two below (one left and same column)."""
    layouts = (("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm"),
               ("1234567890", "qwertzuiop", "asdfghjkl", "yxcvbnm"),
               ("1234567890", "azertyuiop", "qsdfghjklm", "wxcvbn"))
    out: dict[str, set[str]] = {}
    for rows in layouts:
        for r, row in enumerate(rows):
            for c, key in enumerate(row):
                near = out.setdefault(key, set())
                for rr, cc in ((r, c - 1), (r, c + 1), (r - 1, c), (r - 1, c + 1), (r + 1, c - 1), (r + 1, c)):
                    if 0 <= rr < len(rows) and 0 <= cc < len(rows[rr]):
                        near.add(rows[rr][cc])
    return {k: frozenset(v) for k, v in out.items()}


KEYBOARD_NEIGHBOURS = _keyboard_neighbours()


def bit_flip(a: str, b: str) -> bool:
    """The character codes of a and b differ in exactly one bit ("s" 0x73 and "3" 0x33)."""
    x = ord(a) ^ ord(b)
    return x != 0 and x & (x - 1) == 0


def one_edit(text: str, mark: str) -> tuple[str, int] | None:
    """The single edit that turns `mark` into `text`, as (kind, position in text): "sub",
    "ins" (text has an extra character there), "del" (text lacks mark[position]) or "swap"
    (adjacent transposition starting there). None unless within_one_edit(text, mark)."""
    if not within_one_edit(text, mark):
        return None
    i = 0
    while i < min(len(text), len(mark)) and text[i] == mark[i]:
        i += 1
    if len(text) == len(mark):
        return ("sub", i) if text[i + 1:] == mark[i + 1:] else ("swap", i)
    return ("ins", i) if len(text) > len(mark) else ("del", i)


# A digit in place of a letter counts in mark words of at least this many letters: in four
# letters it makes a model code as often as a disguise ("AS8S" on the dev set is no Asus).
DIGIT_SUB_MIN_LEN = 5


def digit_typo_ok(text: str, mark: str) -> bool:
    """`text` is `mark` with one digit typed into it: in place of a letter whose key is next
    to the digit's or whose code is one bit away ("sha5p", "3harp"), inserted next to a
    letter whose key it neighbours ("whirlpo9ol"), or appended ("toshiba2"). Every other
    character of `text` is the mark's own."""
    if sum(c.isdigit() for c in text) != 1:
        return False
    e = one_edit(text, mark)
    if e is None:
        return False
    kind, i = e
    if kind == "sub":
        d, m = text[i], mark[i]
        return d.isdigit() and len(mark) >= DIGIT_SUB_MIN_LEN and (d in KEYBOARD_NEIGHBOURS.get(m, ()) or bit_flip(d, m))
    if kind == "ins":
        d = text[i]
        if not d.isdigit():
            return False
        if i == len(text) - 1:
            return True
        near = KEYBOARD_NEIGHBOURS.get(d, frozenset())
        return (i > 0 and mark[i - 1] in near) or mark[i] in near
    return False


def first_letter_typo_ok(text: str, mark: str) -> bool:
    """`text` is `mark` with its first letter dropped ("etgear"), swapped with the second,
    replaced by a neighbouring key or a one-bit flip ("3harp"), or with a neighbouring key
    or the same letter typed before it ("asharp", "nnetgear"). An arbitrary other first
    letter makes another word ("Pantech" is no Xantech)."""
    e = one_edit(text, mark)
    if e is None or e[1] != 0:
        return False
    kind = e[0]
    if kind in ("del", "swap"):
        return True
    t, m = text[0], mark[0]
    if kind == "sub" and t.isdigit() and bit_flip(t, m):
        return True   # a bit flip between letters makes another word ("Pantech", Xantech)
    return t in KEYBOARD_NEIGHBOURS.get(m, ()) or (kind == "ins" and t == m)


def deletes1(s: str) -> set[str]:
    """The string and every string one deletion away (the symmetric-deletion neighbourhood)."""
    out = {s}
    for i in range(len(s)):
        out.add(s[:i] + s[i + 1:])
    return out
