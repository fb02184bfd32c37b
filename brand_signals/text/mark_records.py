"""The word-mark index's small records: an enrolled mark, where one was found, and a verified
key before the compatibility check. Shared by `wordmarks` (the index) and `mark_context` (the
rules that read the words around a hit), so neither imports the other's internals."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from brand_signals.text.token_streams import TokenStream

# Marks (joined, without spaces) of at most this many characters are "short": exact token
# only, no typo matching; split letters only when they join into one isolated token.
SHORT_MARK_MAX = 3


@dataclass(frozen=True, slots=True)
class Mark:
    """One enrolled word mark in normal form."""

    brand_id: str
    text: str          # as enrolled: "Wilson Jones"
    norm: str          # folded tokens joined by single spaces: "wilson jones"

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(self.norm.split(" "))

    @property
    def joined(self) -> str:
        return self.norm.replace(" ", "")

    @property
    def short(self) -> bool:
        return len(self.norm) <= SHORT_MARK_MAX   # short marks are single tokens of <= 3


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Where one mark was found in one field (folded-text character span)."""

    mark_id: int
    start: int
    end: int
    flags: int
    compat: bool
    lead: bool        # in the brand position (first words of the field, or after "by")


class Hit(NamedTuple):
    """A verified key in a stream, before the compatibility check."""

    mark_id: int
    stream: TokenStream
    first: int          # token range in the stream, inclusive
    last: int
    start: int          # folded-text character span
    end: int
    flags: int
    lead: bool
