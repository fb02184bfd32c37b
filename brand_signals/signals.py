"""The signal interface: every source of evidence (word marks, images, feedback neighbours,
seller, price) is a `SignalSource`, built once per catalogue version into a `SignalIndex` that
is asked once per batch for the evidence of many listings. The scanner runs the sources its
configuration lists (`brand_signals.sources.load`), in that order; `decide` reads what each
kind of signal means from the `SignalType`s the sources declare.

The split follows ThreatExchange's SignalType / SignalTypeIndex: the source says what it
emits and how to build its index from the brands; the index answers queries and holds no
catalogue of its own beyond what it was built from.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Protocol, Sequence

from brand_signals.records import Evidence, Listing, SignalKind

if TYPE_CHECKING:
    from brand_signals.catalog import Catalog
    from brand_signals.feedback.fingerprints import Fingerprint
    from brand_signals.feedback.state import FeedbackState


class Role(enum.Enum):
    """What a kind of signal does in a decision (brand_signals.decide)."""

    PRESENTS = "presents"   # shows the brand: presentation signals are combined (noisy-OR)
    SUPPORTS = "supports"   # raises a presentation already found, never presents a brand alone
    NOTE = "note"           # scores nothing; under brand "" it travels with any decision (image errors)


@dataclass(frozen=True, slots=True)
class SignalType:
    """One kind of signal and its meaning. `kind` is anything with a string `.value` (the
    decision's `signals[].kind`): a `records.SignalKind`, or a plug-in's own enum member.
    `takes_down`: a presentation signal of this kind scoring at least decide.ENFORCE_SCORE takes
    the listing down whatever the brand's enforcement (a near-duplicate of a listing its owner
    removed)."""

    kind: enum.Enum
    role: Role
    takes_down: bool = False


class Stage(enum.Enum):
    """When a source runs in a scan."""

    # Depends only on the listing's content and the catalogue: memoised by content hash (an
    # unchanged re-post is not asked again), asked only for listings its `wants` accepts.
    CONTENT = "content"
    # Depends on what brand owners confirmed (the feedback state): asked on every scan with a
    # feedback state, for the listings that showed a brand or whose image digests are known, or
    # for all of them once removals were confirmed.
    LEARNED = "learned"
    # Facts about the brands found so far (price floor, seller standing): asked for the
    # listings with evidence, after the feedback loop's exemptions were applied.
    POLICY = "policy"


@dataclass(slots=True)
class Batch:
    """What a scan hands its sources besides the listings, one entry per listing of the call.

    In: `found`, the evidence of the earlier stages; `presented`, the brands the content
    evidence showed; `fingerprints` (feedback.NO_FINGERPRINT where none was needed) and
    `images`, the digests computed for each listing's images (LEARNED and POLICY stages).
    Out, from a CONTENT source: text it read beyond the listing's fields (`texts`: a memo
    entry is re-checked against changed word marks in it) and image digests it computed
    itself (`digests`: the feedback loop trusts only those), by position in the call."""

    catalog: "Catalog"
    feedback: "FeedbackState | None" = None
    base_dir: str | None = None
    found: Sequence[list[Evidence]] = ()
    presented: Sequence[frozenset[str]] = ()
    fingerprints: Sequence["Fingerprint"] = ()
    images: Sequence[frozenset[str] | None] = ()
    texts: dict[int, tuple[str, ...]] = field(default_factory=dict)
    digests: dict[int, frozenset[str]] = field(default_factory=dict)


class SignalIndex(Protocol):
    """A source built for one catalogue version."""

    def find(self, listings: Sequence[Listing], batch: Batch) -> list[list[Evidence]]:
        """Evidence per listing, in order (an empty list where it found nothing)."""
        ...

    def close(self) -> None: ...


class SignalSource(Protocol):
    """A kind of evidence: its name in the configuration, when it runs, what it emits."""

    name: str
    stage: Stage
    types: tuple[SignalType, ...]

    def wants(self, listing: Listing) -> bool:
        """Whether the listing can give this source anything (a CONTENT source is not built or
        asked for a batch none of whose listings it wants)."""
        ...

    def build(self, catalog: "Catalog", previous: SignalIndex | None) -> SignalIndex:
        """The index for `catalog`. Called once per catalogue version the source is asked at;
        `previous` (the index of an older version, or None) may be returned as it is, or
        updated, when what the source reads of the brands did not change."""
        ...


class Signals:
    """The meaning of every kind the configured sources emit, for `decide`."""

    def __init__(self, types: Iterable[SignalType]):
        self.by_kind: dict[enum.Enum, SignalType] = {}
        for t in types:
            known = self.by_kind.get(t.kind)
            if known is not None and known != t:
                raise ValueError(f"signal kind {t.kind.value!r} declared twice with different roles")
            self.by_kind[t.kind] = t
        self.presents = frozenset(k for k, t in self.by_kind.items() if t.role is Role.PRESENTS)
        self.supports = frozenset(k for k, t in self.by_kind.items() if t.role is Role.SUPPORTS)
        self.notes = frozenset(k for k, t in self.by_kind.items() if t.role is Role.NOTE)
        self.takedown = frozenset(k for k, t in self.by_kind.items() if t.takes_down)


# The built-in kinds, declared here (not in the sources, which import numpy, cv2, models) so
# that `decide` reads them without loading a source.
TRADEMARK_TEXT = SignalType(SignalKind.TRADEMARK_TEXT, Role.PRESENTS)
BRAND_FIELD = SignalType(SignalKind.BRAND_FIELD, Role.PRESENTS)
LOGO = SignalType(SignalKind.LOGO, Role.PRESENTS)
OCR_TEXT = SignalType(SignalKind.OCR_TEXT, Role.PRESENTS)
IMAGE_COPY = SignalType(SignalKind.IMAGE_COPY, Role.PRESENTS)
IMAGE_ERROR = SignalType(SignalKind.IMAGE_ERROR, Role.NOTE)
BRAND_REMOVAL = SignalType(SignalKind.BRAND_REMOVAL, Role.PRESENTS)
FEEDBACK_NEIGHBOR = SignalType(SignalKind.FEEDBACK_NEIGHBOR, Role.PRESENTS, takes_down=True)
PRICE = SignalType(SignalKind.PRICE, Role.SUPPORTS)
SELLER = SignalType(SignalKind.SELLER, Role.SUPPORTS)

BUILTIN = Signals((TRADEMARK_TEXT, BRAND_FIELD, LOGO, OCR_TEXT, IMAGE_COPY, IMAGE_ERROR, BRAND_REMOVAL,
                   FEEDBACK_NEIGHBOR, PRICE, SELLER))
