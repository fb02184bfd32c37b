"""Normalisation rules of brand_signals.text.textnorm, one table per rule, a reason per row."""
from __future__ import annotations

import random
import time

import pytest

from brand_signals.text import textnorm as tn
from brand_signals.text.textnorm import Fold

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text, folded, fold", [
    ("Sony", "sony", Fold.NONE),                       # plain ASCII: case only
    ("D\u0435ll", "dell", Fold.HOMOGLYPH),             # Cyrillic ie for e
    ("\u03a1\u039d\u03a5", "pny", Fold.HOMOGLYPH),     # Greek capitals Rho, Nu, Upsilon
    ("\u0421i\u0455\u0441o", "cisco", Fold.HOMOGLYPH),  # Cyrillic es, dze, es
    ("\u0406ogear", "iogear", Fold.HOMOGLYPH),         # Cyrillic capital I: prototype "l", folded as a capital I
    ("\u0399ntel", "intel", Fold.HOMOGLYPH),           # Greek capital Iota, same rule
    ("\U0001d412\U0001d428\U0001d427\U0001d432", "sony", Fold.HOMOGLYPH),  # mathematical bold letters
    ("\uff33\uff4f\uff4e\uff59", "sony", Fold.HOMOGLYPH | Fold.COMPAT),  # fullwidth: most are listed confusables, n is an NFKD form
    ("Caf\u00e9", "cafe", Fold.DIACRITICS),            # precomposed e-acute
    ("Cafe\u0301", "cafe", Fold.DIACRITICS),           # combining acute accent
    ("So\u200bny", "sony", Fold.INVISIBLE),            # zero-width space inside the mark
    ("Son\u00adY", "sony", Fold.INVISIBLE),            # soft hyphen
    ("\u2460", "1", Fold.COMPAT),                      # circled digit one: NFKD compatibility form
    ("f\u00fcr", "fur", Fold.DIACRITICS),              # German cue "für"
    ("\u65e5\u672c", "\u65e5\u672c", Fold.NONE),      # CJK text is left alone
])
def test_fold_table(text, folded, fold):
    f = tn.fold(text)
    assert f.text == folded
    assert f.span_flags(0, len(f.text)) == fold


@pytest.mark.parametrize("text, start, end, surface", [
    ("Wilson J\u043e\u0440es binder", 7, 12, "J\u043e\u0440es"),   # folded span maps back to Cyrillic
    ("So\u200bny TV", 0, 4, "So\u200bny"),                           # removed invisible stays in the surface
    ("ACME pro", 5, 8, "pro"),                                       # ASCII: identity mapping
])
def test_surface_maps_back_to_original(text, start, end, surface):
    assert tn.fold(text).surface(start, end) == surface


@pytest.mark.parametrize("text, mark, ok", [
    ("t0mt0m", "tomtom", True),        # 0 for o
    ("m1dl4nd", "midland", True),      # 1 for i, 4 for a
    ("l0w3pr0", "lowepro", True),      # 0, 3 for o, e
    ("5ony", "sony", True),            # 5 for s
    ("$ony", "sony", True),            # $ for s
    ("@cer", "acer", True),            # @ for a
    ("de11", "dell", True),            # 1 may read as l as well as i
    ("ti7an", "titan", True),          # 7 for t
    ("deii", "dell", False),           # a plain i does not stand for l: not leet, a different word
    ("sony", "sony", False),           # nothing to read: not a leet match
    ("s0nyy", "sony", False),          # lengths differ
    ("b0ss", "bass", False),           # 0 reads o, not a
])
def test_leet_reading(text, mark, ok):
    assert tn.leet_reading_ok(text, mark) is ok
    if ok:
        assert tn.leet_key(text) == tn.leet_key(mark)   # the automaton key meets the mark's


@pytest.mark.parametrize("text, mark, ok", [
    ("sonyyyy", "sony", True),         # last letter repeated
    ("ssssony", "sony", True),         # first letter repeated
    ("acccell", "accell", True),       # a doubled letter padded further
    ("acel", "accell", False),         # letters missing, not padded
    ("sony", "sony", False),           # identical: no padding
    ("sonny", "sony", True),           # one letter doubled
    ("sonya", "sony", False),          # another letter added
])
def test_padding(text, mark, ok):
    assert tn.padded_from(text, mark) is ok


@pytest.mark.parametrize("a, b, d", [
    ("garmin", "garmin", 0),           # identical
    ("gramin", "garmin", 1),           # adjacent transposition counts one (OSA)
    ("garmijn", "garmin", 1),          # insertion
    ("smed", "smead", 1),              # deletion
    ("pokaroid", "polaroid", 1),       # substitution
    ("kodajk", "kodak", 1),            # insertion near the end
    ("sunyo", "sony", 2),              # two edits
    ("abcdef", "uvwxyz", 3),           # far apart: cut off at limit + 1
])
def test_osa_distance(a, b, d):
    assert tn.osa_distance(a, b, limit=2) == d
    assert tn.within_one_edit(a, b) is (d == 1)
    assert tn.within_one_edit(b, a) is (d == 1)


def test_within_one_edit_agrees_with_osa_on_seeded_pairs():
    import random
    rng = random.Random(7)
    for _ in range(3000):
        a = "".join(rng.choice("abc") for _ in range(rng.randint(0, 6)))
        b = "".join(rng.choice("abc") for _ in range(rng.randint(0, 6)))
        assert tn.within_one_edit(a, b) is (tn.osa_distance(a, b, 1) == 1), (a, b)


def test_deletion_neighbourhood_meets_for_one_edit():
    # the symmetric single-deletion neighbourhoods intersect for every OSA-1 pair
    for a, b in [("gramin", "garmin"), ("garmijn", "garmin"), ("smed", "smead"), ("pokaroid", "polaroid")]:
        assert tn.deletes1(a) & tn.deletes1(b), (a, b)


@pytest.mark.parametrize("text, normal", [
    ("Wilson Jones", "wilson jones"),          # words kept apart by one space
    ("D-Link", "d link"),                      # hyphen splits tokens
    ("StarTech.com", "startech com"),          # dot splits tokens
    ("  Hewlett   Packard ", "hewlett packard"),   # runs of spaces collapse
    ("3M", "3m"),                              # digits are token characters
])
def test_normalize(text, normal):
    assert tn.normalize(text) == normal


def test_common_words_hold_ordinary_words_not_misspellings():
    words = tn.common_words()
    for w in ("bass", "share", "quarter", "alert", "drink", "tips"):   # ordinary words near marks
        assert w in words, w
    for w in ("gramin", "pokaroid", "wintce"):                         # typical brand misspellings
        assert w not in words, w


def test_hostile_input_is_bounded():
    flood = "\u0435\u0455\u0440\u0430" * 50_000            # 200,000 confusables
    t0 = time.perf_counter()
    f = tn.fold(flood)
    elapsed = time.perf_counter() - t0
    assert len(f.original) == tn.MAX_FIELD_CHARS
    assert f.text == "espa" * (tn.MAX_FIELD_CHARS // 4)
    assert elapsed < 0.5


def test_distinct_character_flood_is_bounded():
    flood = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 30_000))   # 30,000 distinct CJK characters
    t0 = time.perf_counter()
    f = tn.fold(flood)
    assert len(f.original) == tn.MAX_FIELD_CHARS
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.parametrize("text, folded, fold", [
    ("K\u0113nw\u00f8\u00f8d", "kenwood", Fold.DIACRITICS | Fold.HOMOGLYPH),   # macron; o with stroke: skeleton of its prototype
    ("A\u01a5\u01a5le", "apple", Fold.HOMOGLYPH),        # p with hook: its Unicode name says p
    ("n\ua791cafee", "nncafee", Fold.HOMOGLYPH),          # n with descender (not in confusables)
    ("\u0280\u1d04\u1d00", "rca", Fold.HOMOGLYPH),        # small capitals R, C, A
    ("\u014bikon", "nikon", Fold.HOMOGLYPH),              # eng: name says nothing, looks like n
    ("\u00e6on", "aeon", Fold.HOMOGLYPH),                 # ae ligature: two letters
    ("\u00df", "ss", Fold.NONE),                          # sharp s: case folding, no look-alike
    ("\u0416", "\u0436", Fold.NONE),                      # Cyrillic Zhe looks like no Latin letter
])
def test_latin_lookalikes_fold(text, folded, fold):
    f = tn.fold(text)
    assert f.text == folded
    assert f.span_flags(0, len(f.text)) == fold


@pytest.mark.parametrize("text, folded, fold, tokens", [
    ("\uff85\uff72\uff77", "ナイキ", Fold.COMPAT, ["ナイキ"]),                      # half-width katakana -> full width
    ("\uff78\uff9e\uff6f\uff81", "グッチ", Fold.COMPAT, ["グッチ"]),                 # half-width voiced mark composed, not dropped
    ("グッチ", "グッチ", Fold.NONE, ["グッチ"]),                                      # full-width voiced kana kept whole (NFKD would split it)
    ("ハ\u309aナ", "パナ", Fold.NONE, ["パナ"]),                                      # combining semi-voiced mark composed
    ("ソニ-", "ソニー", Fold.KANA, ["ソニー"]),                                       # dash at a katakana word's end: the long-vowel mark
    ("ソニ-ヘッドホン", "ソニ-ヘッドホン", Fold.NONE, ["ソニ", "ヘッドホン"]),          # dash between katakana words separates them
    ("ソニー製のイヤホン", "ソニー製のイヤホン", Fold.NONE, ["ソニー", "製の", "イヤホン"]),  # katakana runs apart from kanji/hiragana
    ("ナ・イ・キ", "ナ・イ・キ", Fold.NONE, ["ナ", "イ", "キ"]),                      # middle dot is no part of a token
    ("モデル", "モデル", Fold.NONE, ["モデル"]),                                      # a katakana word stays whole ("デル" inside)
    ("\uff2e\uff29\uff2b\uff25", "nike", None, ["nike"]),                             # full-width Latin
])
def test_japanese_fold_and_tokens(text, folded, fold, tokens):
    f = tn.fold(text)
    assert f.text == folded
    if fold is not None:
        assert f.span_flags(0, len(f.text)) == fold
    assert tn.TOKEN_RE.findall(f.text) == tokens
    assert f.surface(0, len(f.text)) == text


@pytest.mark.parametrize("text, mark, ok", [
    ("キャノン", "キヤノン", True),     # small ャ for full-size ヤ (the common misspelling of Canon)
    ("アツプル", "アップル", True),     # full-size ツ for small ッ
    ("ソニ", "ソニー", True),           # long-vowel mark dropped
    ("ナイキー", "ナイキ", True),       # long-vowel mark added
    ("ソニー", "ソニー", False),        # identical: no variant
    ("ソニア", "ソニー", False),        # another kana is another word
    ("パナソニック", "ソニー", False),   # containing is not writing
])
def test_kana_variant(text, mark, ok):
    assert tn.kana_variant(text, mark) is ok


@pytest.mark.parametrize("text, mark, ok", [
    ("sha5p", "sharp", True),           # 5 is the key above r
    ("s6mantec", "symantec", True),     # 6 is the key above y
    ("3harp", "sharp", True),           # s (0x73) and 3 (0x33) differ in one bit
    ("toshiba2", "toshiba", True),      # a digit appended
    ("whirlpo9ol", "whirlpool", True),  # 9 typed next to o, its neighbour
    ("sha9p", "sharp", False),          # 9 is nowhere near r
    ("to2shiba", "toshiba", False),     # 2 is near neither s nor o
    ("as8s", "asus", False),            # a digit for a letter of a 4-letter mark: a model code shape
    ("sh4rp", "sharp", False),          # 4 for a is leet (no neighbour of a), leet's business
    ("sha55p", "sharp", False),         # two digits
    ("sharp", "sharp", False),          # no digit
])
def test_digit_typo(text, mark, ok):
    assert tn.digit_typo_ok(text, mark) is ok


@pytest.mark.parametrize("text, mark, ok", [
    ("etgear", "netgear", True),        # first letter dropped
    ("ogitech", "logitech", True),      # first letter dropped
    ("asharp", "sharp", True),          # a, a key next to s, typed before it
    ("ssharp", "sharp", False),         # a doubled first letter keeps it: the plain one-edit rule reads it
    ("dharp", "sharp", True),           # d is next to s
    ("hsarp", "sharp", True),           # first two letters swapped
    ("3harp", "sharp", True),           # one-bit flip to a digit
    ("pantech", "xantech", False),      # p and x differ in one bit, but letter for letter that is another word
    ("qasio", "casio", False),          # q is nowhere near c
    ("shapr", "sharp", False),          # the edit is not on the first letter
])
def test_first_letter_typo(text, mark, ok):
    assert tn.first_letter_typo_ok(text, mark) is ok


@pytest.mark.parametrize("token, readings", [
    ("torntom", ["tomtom"]),             # rn reads as m
    ("nncafee", ["mcafee"]),             # nn reads as m
    ("vvhirlpool", ["whirlpool"]),       # vv reads as w
    ("clell", ["dell"]),                 # cl reads as d
    ("sony", []),                        # no pair
])
def test_lookalike_readings(token, readings):
    assert set(readings) <= set(tn.lookalike_readings(token))
    assert bool(tn.lookalike_readings(token)) is bool(readings)


def test_keyboard_neighbours_are_symmetric_and_include_the_digit_row():
    near = tn.KEYBOARD_NEIGHBOURS
    assert {"4", "5", "e", "t", "d", "f"} == near["r"]
    assert all(a in near[b] for a in near for b in near[a])


def test_ascii_runs_fold_as_each_character_would(monkeypatch):
    """ASCII runs between other characters are folded whole; the result, origins and fold bits
    included, is the character-by-character fold's (`FOLD_ASCII_RUNS` off), next to kana (a dash
    after katakana is the long-vowel mark, a voiced mark joins the kana before it), invisibles
    and marks."""
    rng = random.Random(11)
    alphabet = list("abcXYZ09 -~.!") + ["\u30bd", "\u30cb", "\u30fc", "\u3099", "\u309a", "\u309b", "\uff9e",
                                         "\uff76", "\u304b", "\u30a2", "\u30fb", "\u200b", "\u0301", "\u00e9",
                                         "\u0430", "\u03bf", "\uff21", "\u4e00", "\u2013", "\uff0d", "\u301c",
                                         "\u00df", "\ufb01", "\u2160"]
    texts = ["ソニ-", "ソニ--x", "SONY ソニ- TV", "ｶﾞ-ABC", "\u200bNike", "Nike\u200b", "é-Acme~", "ABCかﾞ", "ソ~ニ"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14))) for _ in range(30_000)]
    got = [tn.fold(t) for t in texts]
    monkeypatch.setattr(tn, "FOLD_ASCII_RUNS", False)
    for t, g in zip(texts, got):
        assert g == tn.fold(t), t     # text, origins and fold bits
