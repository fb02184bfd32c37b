"""Where a word mark stands and what surrounds it: the brand position of a marketplace title,
compatibility mentions ("case for Dell"), short marks that need an isolated token, leetspeak
readings of a mark, and the longer mark winning over one inside it ("Wilson" in "Wilson
Jones"). Plain functions over token lists, used by `wordmarks.WordMarkIndex`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from brand_signals.text import textnorm as tn

if TYPE_CHECKING:
    from brand_signals.text.mark_records import Hit, Mark, Occurrence

# Titles put the brand first ("Brand Model Product"); tokens at index <= this (after
# LEADING_WORDS such as "New") are in the brand position. Misspellings only count there
# (or after "by", or anywhere in the brand field and OCR text): on the dev set 154 of 156
# disguised typos stand first, while ordinary look-alike words ("Dyno", "Share") stand
# anywhere; it also spares the typo lookup for most tokens of a title.
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
# ...not counting up to this many tokens of other found marks between ("ソニー(SONY)対応": the
# other spelling of the same mark; "Canon Nikon compatible").
CUE_AFTER_MARKS = 2
# Short marks read through leetspeak away from the brand position: at most this many leet
# characters ("4CP" for ACP; a "0K1" mid-title reads as much like a model code as OKI).
SHORT_LEET_MAX_CHARS = 1

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
# Chinese, Japanese and Korean cues live inside runs of those scripts, which are single tokens
# (textnorm.TOKEN_RE; katakana runs apart from kanji/hiragana ones): "适用于戴尔Dell电池"
# (battery suitable for Dell), "Dell专用" (for Dell), "Sony用ケース" (case for Sony), "Sony용"
# (for Sony), Japanese "キヤノン互換インク" (ink compatible with Canon), "ソニー対応" (supports
# Sony), "エプソン専用" (dedicated to Epson), "ニコン適合" (fits Nikon), "アップル向け" (made
# for Apple), "iPhoneに対応" (with the particle に). A CJK token right before the mark that
# contains one of CJK_CUES_BEFORE ("対応機種：ソニー", models supported: Sony), or one within
# CUE_AFTER_WINDOW after it that starts with one of CJK_CUES_AFTER, makes a compatibility cue.
CJK_CUES_BEFORE = ("适用", "兼容", "用于", "适配", "對應", "对应", "対応", "호환", "互換", "適合", "適用")
CJK_CUES_AFTER = ("用", "专用", "專用", "适用", "兼容", "対応", "对应", "호환", "용",
                  "専用", "互換", "適合", "適用", "向け", "交換用", "に対応", "にも対応", "に適合",
                  "製品に対応", "製品対応", "製品用", "製品専用", "製品互換", "機種対応", "機種用")
# ...except words that merely start like a cue: 用品 (goods: "Nike用品店" is a Nike shop), 용품.
CJK_NOT_CUES_AFTER = ("用品", "용품")
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


def short_ok(tokens: Sequence[str], first: int, last: int) -> bool:
    """Short marks: one isolated token, not a unit after a number ("5 HP" is horsepower)."""
    if first != last:
        return False
    if first > 0 and tokens[first - 1].replace(".", "").isdigit():
        return False
    return True


def leet_ok(written: str, mark: "Mark", lead: bool) -> bool:
    """The written tokens (joined) spell the mark through leet readings, with at least one
    letter. Short marks: never two-letter ones ("G3", "1G" are model codes, not GE or LG);
    more than SHORT_LEET_MAX_CHARS leet characters only in the brand position ("M51")."""
    if not any(c.isalpha() for c in written) or not tn.leet_reading_ok(written, mark.joined):
        return False
    if mark.short:
        n_leet = sum(1 for a, b in zip(written, mark.joined) if a != b)
        return len(mark.joined) > 2 and (n_leet <= SHORT_LEET_MAX_CHARS or lead)
    return True


def brand_position_tokens(tokens: Sequence[str], max_tokens: int) -> list[int]:
    """Indices of the tokens a mark starting in the brand position can cover."""
    k0 = 0
    while k0 < len(tokens) and tokens[k0] in LEADING_WORDS:
        k0 += 1
    out = list(range(k0, min(len(tokens), k0 + BRAND_POSITION_MAX + max_tokens)))
    for k, t in enumerate(tokens):
        if t in MAKER_WORDS:
            out.extend(j for j in range(k + 1, min(len(tokens), k + 1 + max_tokens)) if j not in out)
    return out


def at_brand_position(tokens: Sequence[str], first: int) -> bool:
    k = 0
    while k < len(tokens) and tokens[k] in LEADING_WORDS:
        k += 1
    if first - k <= BRAND_POSITION_MAX:
        return True
    return first > 0 and tokens[first - 1] in MAKER_WORDS


def is_compat(hit: "Hit", covered: bytearray) -> bool:
    """A compatibility mention: a cue a few tokens before the mark with only filler, model
    numbers or other found marks between ("for Canon and HP"), or a cue right after it.
    `covered` marks the folded characters that some found mark covers."""
    toks = hit.stream.tokens
    first, last = hit.first, hit.last
    k = first - 1
    lo = max(0, first - CUE_BEFORE_WINDOW)
    while k >= lo:
        t = toks[k]
        if t in CUES_BEFORE or (k == first - 1 and _is_cjk(t) and any(c in t for c in CJK_CUES_BEFORE)):
            return True
        if t in FILLER_WORDS or any(c.isdigit() for c in t):
            k -= 1
            continue
        s, e = hit.stream.spans()[k]
        if covered.find(0, s, e) < 0:
            k -= 1
            continue
        break
    k, seen = last + 1, 0
    stop = min(len(toks), last + 1 + CUE_AFTER_WINDOW + CUE_AFTER_MARKS)
    while k < stop and seen < CUE_AFTER_WINDOW:
        t = toks[k]
        if t in CUES_AFTER or (_is_cjk(t) and t.startswith(CJK_CUES_AFTER) and not t.startswith(CJK_NOT_CUES_AFTER)):
            return True
        s, e = hit.stream.spans()[k]
        if covered.find(0, s, e) >= 0:
            seen += 1      # other found marks do not count ("ソニー(SONY)対応")
        k += 1
    return False


def _is_cjk(token: str) -> bool:
    return tn.CJK_RE.match(token) is not None


def prefer_longer(found: list["Occurrence"], marks: tuple["Mark", ...]) -> list["Occurrence"]:
    """Drop an occurrence lying inside a longer one of another brand ("Wilson" in "Wilson
    Jones"). One sweep in start order against the longest-reaching occurrence so far."""
    ordered = sorted(found, key=lambda o: (o.start, -o.end))
    out: list[Occurrence] = []
    reach: Occurrence | None = None
    for o in ordered:
        if reach is not None and o.end <= reach.end and (reach.end - reach.start) > (o.end - o.start) \
                and marks[reach.mark_id].brand_id != marks[o.mark_id].brand_id:
            continue
        out.append(o)
        if reach is None or o.end > reach.end:
            reach = o
    return out
