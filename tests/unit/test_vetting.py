"""Vetting of owners' submissions with the real word frequencies (wordfreq): ordinary words and
phrases of the listing languages are shown to the operator, invented marks are not."""
from __future__ import annotations

import pytest

from brand_signals.vetting import ordinary_reason, wordfreq_zipf

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("mark, ordinary, reason", [
    ("Wireless Earbuds", True, "two common English words"),
    ("Phone Case", True, "two common English words"),
    ("Schwarz", True, "a common German word"),
    ("Veltrix", False, "an invented mark"),
    ("Acme Audio", False, "one word of it is rare"),
    ("Kestrel", False, "a word, but a rare one (Zipf 2.5)"),
])
def test_ordinary_words_and_phrases(mark, ordinary, reason):
    got = ordinary_reason(mark)
    assert (got is not None) == ordinary, (reason, got)


def test_frequency_is_the_highest_over_the_listing_languages():
    assert wordfreq_zipf("schwarz")[1] == "de" and wordfreq_zipf("earbuds") >= (3.0, "en")
