"""Token streams over a folded text field for the word-mark matcher: the plain tokens, letters
split by spaces/dots/hyphens joined back ("S w i n g l i n e", "L u m 0 r a"), and tokens that
keep leetspeak symbols ("Sam$ung"). Each stream is searched as one leet-keyed string."""
from __future__ import annotations

import re
from typing import Callable, Sequence

from brand_signals.text import textnorm as tn

# Plain-int copies of the folds used on the hot path (IntFlag operators run in Python).
_LEET, _SPACING, _PUNCT = int(tn.Fold.LEET), int(tn.Fold.SPACING), int(tn.Fold.PUNCT)
LEET_SYMBOL_RE = re.compile(r"[$@!|]")
# Two single characters split by one separator: the only texts worth a despaced stream.
MAYBE_SPLIT_RE = re.compile(r"(?<![^\W_])[^\W_][ .\-_·•*/~][^\W_](?![^\W_])")
# Words tied by one punctuation character: the only texts worth a glued stream.
MAYBE_GLUED_RE = re.compile(rf"[^\W_][{re.escape(tn.GLUE_SEPARATORS)}][^\W_]")
# A mark word split by punctuation into at most this many pieces ("To-shiba": 2; "T-osh-iba":
# 3); each extra piece is one more lookup per tied token.
MAX_GLUED_PIECES = 3
# On ASCII text, textnorm.TOKEN_RE's tokens are the runs of letters and digits (split out
# with the gaps between them), and a one-character gap of these ties two.
_ASCII_PARTS_RE = re.compile(r"([^\W_]+)")
_GLUE_GAPS = frozenset(tn.GLUE_SEPARATORS)
# A kanji mark glued to what follows it in a run of kanji and hiragana ("東芝製", made by
# Toshiba; "日立純正", genuine Hitachi; "東芝の"; "東芝用", for Toshiba) is split off when the
# rest starts with one of these words; otherwise the run is another word ("日立市", the city).
# Kanji marks are 2-4 characters (東芝, 日立, 任天堂, 資生堂): longer prefixes are not tried.
KANJI_MARK_SUFFIXES = ("製", "社製", "純正", "正規", "の", "ブランド")
MAX_KANJI_MARK = 4


class TokenStream:
    """A token sequence over a folded field, searched as one leet-keyed string ("hay"),
    optionally only over a window of its tokens. Token spans (in the folded text) and per
    token folds are only worked out when a key matches, which is rare."""

    __slots__ = ("tokens", "hay", "offset", "needs", "anywhere", "_text", "_spans", "_tflags")

    def __init__(self, tokens: Sequence[str], needs: int, text: str, *,
                 window: tuple[int, int] | None = None, hay_tokens: Sequence[str] | None = None,
                 spans: Sequence[tuple[int, int]] | None = None, tflags: Sequence[int] | None = None,
                 anywhere: bool = False) -> None:
        self.tokens = tokens
        self.anywhere = anywhere     # misspellings count anywhere, not only in the brand position
        a, b = window if window is not None else (0, len(tokens))
        self.offset = a
        self.hay = (" " + " ".join(hay_tokens if hay_tokens is not None else tokens[a:b]) + " ").translate(
            tn.LEET_TABLE)
        self.needs = needs           # a hit counts only if its folds include one of these (0: any)
        self._text = text
        self._spans = spans
        self._tflags = tflags

    def spans(self) -> Sequence[tuple[int, int]]:
        if self._spans is None:
            self._spans = [m.span() for m in tn.TOKEN_RE.finditer(self._text)]
        return self._spans

    def flags(self, first: int, last: int) -> int:
        f = 0
        if self._tflags is not None:
            for k in range(first, last + 1):
                f |= self._tflags[k]
        return f


def despaced_streams(text: str, plain: TokenStream) -> list[TokenStream]:
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


# Digits that leetspeak uses for letters; one of them inside a run of split letters is a letter.
_LEET_DIGITS = frozenset("013457")


def _leet_digit_between_letters(toks: list[str], text: str, spans, i: int) -> bool:
    """toks[i] is a leet digit standing alone between single letters split by spaces."""
    return (toks[i] in _LEET_DIGITS and i + 1 < len(toks) and len(toks[i + 1]) == 1
            and toks[i + 1].isalpha() and text[spans[i][1]:spans[i + 1][0]] == " ")


def _despaced_stream(text: str, plain: TokenStream, detach_last: bool) -> tuple[TokenStream | None, bool]:
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
            if gap == " " and toks[j].isdigit() != toks[j + 1].isdigit() and not (
                    (toks[j].isdigit() and j > k) or _leet_digit_between_letters(toks, text, spans, j + 1)):
                break  # "3 M", "2 x": a quantity and its unit; but "L u m 0 r a" is split letters
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
    return TokenStream(out_t, _SPACING, text, spans=out_s, tflags=out_f), ambiguous


def symbol_stream(text: str) -> TokenStream | None:
    """Tokens that keep the symbols leetspeak uses inside words ("Sam$ung", "@cer")."""
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
    if not tokens:
        return None
    return TokenStream(tokens, _LEET, text, spans=spans)


def glued_stream(text: str, plain: TokenStream, is_key: Callable[[str], bool]) -> TokenStream | None:
    """Tokens tied by one punctuation character joined back where the joined form is a mark
    word or joined mark (`is_key`): "To-shiba" -> "toshiba", "mc-afee" -> "mcafee". Longest
    join first; pieces that join into no key stay as they are."""
    if text.isascii() and not _ascii_joins_a_key(text, is_key):
        return None
    return _glued_walk(text, plain, is_key)


def _glued_walk(text: str, plain: TokenStream, is_key: Callable[[str], bool]) -> TokenStream | None:
    toks, spans = plain.tokens, plain.spans()
    n = len(toks)
    out_t: list[str] = []
    out_s: list[tuple[int, int]] = []
    out_f: list[int] = []
    joined_any = False
    k = 0
    while k < n:
        j = k
        while j + 1 < n and j - k + 2 <= MAX_GLUED_PIECES:
            gap = text[spans[j][1]:spans[j + 1][0]]
            if len(gap) != 1 or gap not in tn.GLUE_SEPARATORS:
                break
            j += 1
        hit, word = -1, ""
        for e in range(j, k, -1):
            for w in _joins(text, toks, spans, k, e):
                if is_key(w):
                    hit, word = e, w
                    break
            if hit >= 0:
                break
        if hit < 0:
            out_t.append(toks[k]); out_s.append(spans[k]); out_f.append(0)
            k += 1
            continue
        out_t.append(word); out_s.append((spans[k][0], spans[hit][1])); out_f.append(_PUNCT)
        joined_any = True
        k = hit + 1
    if not joined_any:
        return None
    return TokenStream(out_t, _PUNCT, text, spans=out_s, tflags=out_f)


def _ascii_joins_a_key(text: str, is_key: Callable[[str], bool]) -> bool:
    """On ASCII text, whether any 2..MAX_GLUED_PIECES tokens tied by one separator join into a
    key: when none does, glued_stream joins nothing. Most titles tie some tokens ("USB-C",
    "3.5mm") and join no key; this answers for them without the walk over every token. ASCII
    tokens are the runs of letters and digits, so a tie lies inside one whitespace-separated
    word that is not all letters and digits (and ASCII has no long-vowel reading)."""
    for w in text.split():
        if w.isalnum():
            continue
        parts = _ASCII_PARTS_RE.split(w)   # gap, token, gap, ..., token, gap
        toks = parts[1::2]
        n = len(toks)
        for k in range(n - 1):
            e = k
            while e + 1 < n and e - k + 2 <= MAX_GLUED_PIECES and parts[2 * e + 2] in _GLUE_GAPS:
                e += 1
                if is_key("".join(toks[k:e + 1])):
                    return True
    return False


def _joins(text: str, toks: Sequence[str], spans: Sequence[tuple[int, int]], k: int, e: int) -> tuple[str, ...]:
    """toks[k..e] joined; where a dash ties two katakana pieces it may also stand for the
    long-vowel mark ("ロジク-ル" is ロジクール)."""
    plain = "".join(toks[k:e + 1])
    if not tn.KATAKANA_RE.match(toks[k]):
        return (plain,)
    pieces = [toks[k]]
    for g in range(k + 1, e + 1):
        gap = text[spans[g - 1][1]:spans[g][0]]
        pieces.append(tn.LONG_VOWEL if gap in tn.KANA_DASHES else "")
        pieces.append(toks[g])
    long = "".join(pieces)
    return (plain,) if long == plain else (plain, long)


def kanji_prefix_stream(plain: TokenStream, is_key: Callable[[str], bool], cues_after: tuple[str, ...]) -> TokenStream | None:
    """Kanji/hiragana tokens that start with a mark (`is_key`) followed by one of
    KANJI_MARK_SUFFIXES or a compatibility cue (`cues_after`) split in two."""
    cuts: dict[int, int] = {}
    for k, t in enumerate(plain.tokens):
        if len(t) > 2 and tn.OTHER_CJK_RE.match(t) is not None:
            for n in range(min(MAX_KANJI_MARK, len(t) - 1), 1, -1):
                rest = t[n:]
                if (rest.startswith(KANJI_MARK_SUFFIXES) or rest.startswith(cues_after)) and is_key(t[:n]):
                    cuts[k] = n
                    break
    if not cuts:
        return None
    out_t: list[str] = []
    out_s: list[tuple[int, int]] = []
    for k, (t, (a, b)) in enumerate(zip(plain.tokens, plain.spans())):
        n = cuts.get(k)
        if n is None:
            out_t.append(t); out_s.append((a, b))
        else:
            out_t.extend((t[:n], t[n:])); out_s.extend(((a, a + n), (a + n, b)))
    return TokenStream(out_t, 0, plain._text, spans=out_s)
