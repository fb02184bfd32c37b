"""The glued stream's shortcut for ASCII text (no token walk when no tied pieces join into a
key) gives what the walk gives, on a table and on seeded random titles."""
from __future__ import annotations

import random

import pytest

from brand_signals.text import textnorm as tn
from brand_signals.text.token_streams import MAX_GLUED_PIECES, TokenStream, _glued_walk, glued_stream

assert MAX_GLUED_PIECES == 3   # the table's four-piece case

pytestmark = pytest.mark.unit

KEYS = frozenset({"toshiba", "mcafee", "dlink", "tripplite", "swingline", "wd40", "ab"})


def _both(text: str):
    folded = tn.fold(text).text
    toks = tn.TOKEN_RE.findall(folded)
    fast = glued_stream(folded, TokenStream(toks, 0, folded), KEYS.__contains__)
    walk = _glued_walk(folded, TokenStream(toks, 0, folded), KEYS.__contains__)

    def shape(s):
        return None if s is None else (s.tokens, s.hay, list(s.spans()), s._tflags)
    return shape(fast), shape(walk)


@pytest.mark.parametrize("text, joined", [
    ("To-shiba Satellite laptop", "toshiba"),
    ("mc-afee antivirus 2024", "mcafee"),
    ("T-osh-iba charger", "toshiba"),           # three pieces
    ("Tr-ip-pl-ite cable", None),               # four pieces: more than MAX_GLUED_PIECES (3)
    ("D.Link router, WD-40 spray", "dlink"),
    ("USB-C 3.5mm cable, 2-way", None),         # ties that join no key
    ("To--shiba", None),                        # two characters apart: not tied
    ("To - shiba", None),
    ("a-b x_y", "ab"),
    ("ソニ-", None),                             # not ASCII: the walk alone
])
def test_glued_stream_table(text, joined):
    fast, walk = _both(text)
    assert fast == walk
    if joined:
        assert fast is not None and joined in fast[0]
    else:
        assert fast is None


def test_glued_shortcut_agrees_with_the_walk_on_seeded_titles():
    rng = random.Random(13)
    words = sorted(KEYS) + ["usb", "c", "3", "5mm", "wi", "fi", "pro", "x", "to", "shiba", "mc", "afee"]
    seps = list("-._*/~'") + [" ", " ", "--", " - ", "..", ", ", "("]
    joined = 0
    for _ in range(3000):
        parts = []
        for _ in range(rng.randint(1, 8)):
            w = rng.choice(words)
            if len(w) > 2 and rng.random() < 0.5:
                c = rng.randint(1, len(w) - 1)
                w = w[:c] + rng.choice(seps) + w[c:]
            parts.append(w if rng.random() < 0.8 else w.upper())
        text = "".join(p + rng.choice(seps) for p in parts)
        fast, walk = _both(text)
        assert fast == walk, text
        joined += walk is not None
    assert 300 < joined < 2700   # both outcomes well covered
