"""Seeded, realistic listing-update traffic for the throughput benchmark.

A catalogue of brands (brand-like pseudo-words, 4 marks per brand) and a stream of updates
whose mix follows a marketplace: most updates re-post unchanged content (price or stock
changes), some edit the text, a few are new listings. Images come from a shared pool, so the
same image recurs. About 1 % of listings present a brand from an unauthorized seller, a
quarter of them disguised (leet, homoglyph, split letters, typo).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

import orjson

from benchmarks.text_matching import MARKS_PER_BRAND, base_titles, disguise, make_marks

SEED = 20261128


@dataclass(frozen=True, slots=True)
class Mix:
    unchanged: float = 0.80
    edited: float = 0.15
    new: float = 0.05
    infringing: float = 0.01
    max_images: int = 5
    image_pool: int = 50_000
    # Of the unchanged re-posts, the share that changes nothing the contract carries (a stock
    # update or a refresh: only event_time is new); the others change the price, which the
    # listing then keeps. 0: every re-post draws a price of its own and the listing keeps its
    # first (the mix every figure before the Java-side fingerprint used, unchanged).
    identical: float = 0.0


def brand_records(n_marks: int, seed: int = SEED) -> list[dict]:
    """Contract JSON of the catalogue: n_marks word marks, 4 per brand."""
    marks = make_marks(n_marks, random.Random(seed))
    return [{"brand_id": f"b{i}", "name": marks[i], "trademarks": marks[i:i + MARKS_PER_BRAND],
             "authorized_sellers": [f"auth-b{i}"], "enforcement": "takedown", "version": 1}
            for i in range(0, len(marks), MARKS_PER_BRAND)]


class Traffic:
    """An endless, deterministic stream of listing updates (contract JSON bytes)."""

    def __init__(self, brands: list[dict], mix: Mix = Mix(), seed: int = SEED, t0_ms: int = 1_767_225_600_000):
        self.rng = random.Random(seed)
        self.mix = mix
        self.titles = base_titles()
        self.marks = [m for b in brands for m in b["trademarks"]]
        self.t0 = t0_ms
        self.live: list[dict] = []
        self.n = 0

    def _new(self) -> dict:
        rng = self.rng
        title = rng.choice(self.titles)
        if rng.random() < self.mix.infringing:
            mark = rng.choice(self.marks)
            title = (disguise(mark, rng) if rng.random() < 0.25 else mark) + " " + title
        k = rng.randint(0, self.mix.max_images)
        images = [{"uri": f"https://img.example/{i}.jpg", "sha256": f"{i:064x}"}
                  for i in (rng.randrange(self.mix.image_pool) for _ in range(k))]
        rec = {"listing_id": f"x{len(self.live)}", "seller_id": f"s-{rng.randrange(50_000)}", "title": title,
               "price": {"amount": round(rng.uniform(3, 300), 2), "currency": "USD"}, "images": images}
        self.live.append(rec)
        return rec

    def next(self) -> dict:
        r = self.rng.random()
        if not self.live or r < self.mix.new:
            return self._stamped(self._new())
        return self._stamped(self._update(self.rng.randrange(len(self.live)), r < self.mix.new + self.mix.edited))

    def _update(self, at: int, edited: bool) -> dict:
        """Listing `at`'s next record: its title edited, or not; its price as the mix says."""
        rng = self.rng
        rec = dict(self.live[at])
        if edited:
            words = rec["title"].split()
            words[rng.randrange(len(words))] = rng.choice(("New", "2024", "Pro", "Sale", "Black", "XL"))
            rec["title"] = " ".join(words)
            self.live[at] = rec
        if not self.mix.identical:
            rec["price"] = {"amount": round(rng.uniform(3, 300), 2), "currency": "USD"}
        elif edited or rng.random() >= self.mix.identical:
            # the listing's price is now the new one: a later identical re-post keeps it
            rec["price"] = {"amount": round(rng.uniform(3, 300), 2), "currency": "USD"}
            self.live[at] = rec
        return rec

    def _stamped(self, rec: dict) -> dict:
        self.n += 1
        return {**rec, "event_time": self.t0 + self.n}

    def spaced_wave(self) -> list[bytes]:
        """One update of each live listing, of the mix's kinds (edited or not, priced as the mix
        says), and as many new listings as the mix brings beside them, in a shuffled order: a
        marketplace's stream over an interval in which each listing is re-posted once. `lines`
        re-posts a few tens of thousands of listings within seconds, so a listing's next update
        comes before the job's verdict on its last; a marketplace's come hours apart."""
        live = len(self.live)
        reposted = self._reposted()
        kinds = [self.rng.random() * reposted < self.mix.edited for _ in range(live)]
        return self._wave(list(range(live)), kinds)

    def sampled_wave(self, k: int) -> list[bytes]:
        """`spaced_wave` over k live listings drawn at random (without repeats): a catalogue too
        large to re-post whole, with the wave's keys spread over all of the job's state."""
        reposted = self._reposted()
        picked = self.rng.sample(range(len(self.live)), min(k, len(self.live)))
        return self._wave(picked, {at: self.rng.random() * reposted < self.mix.edited for at in picked})

    def _reposted(self) -> float:
        if not self.live or self.mix.unchanged + self.mix.edited <= 0:
            raise ValueError("a wave re-posts live listings: warm the traffic first, with a mix that re-posts")
        return self.mix.unchanged + self.mix.edited

    def _wave(self, picked: list[int], edited) -> list[bytes]:
        """One update of each `picked` listing (`edited[at]`: its title edited) and as many new
        listings as the mix brings beside them, shuffled."""
        turns: list[int | None] = picked + [None] * round(len(picked) * self.mix.new / self._reposted())
        self.rng.shuffle(turns)
        return [orjson.dumps(self._stamped(self._new() if at is None else self._update(at, edited[at])))
                for at in turns]

    def first_records(self) -> list[bytes]:
        """Each live listing's record once, in creation order: a topic that gives a job all of
        them as new listings."""
        return [orjson.dumps(self._stamped(rec)) for rec in self.live]

    def lines(self, n: int) -> Iterator[bytes]:
        for _ in range(n):
            yield orjson.dumps(self.next())

    def warm(self, n_live: int) -> None:
        """Create n_live listings first, so re-posts have something to re-post."""
        while len(self.live) < n_live:
            self._new()


def _latest_reposts(wave: list[bytes], edit) -> list[bytes]:
    """As many re-posts as `wave`, in its listings' order, each the latest record of its listing
    in `wave` as `edit(record, i)` leaves it."""
    ids = [orjson.loads(x)["listing_id"] for x in wave]
    latest = dict(zip(ids, wave))
    out = []
    for i, lid in enumerate(ids):
        rec = orjson.loads(latest[lid])
        edit(rec, i)
        out.append(orjson.dumps(rec))
    return out


def current_price_wave(wave: list[bytes], n: int = 0) -> list[bytes]:
    """As many re-posts as `wave`, in its listings' order, each the latest record of its listing
    in `wave` with a new price and event time: price-only updates of what each listing says now.
    (`wave` itself, re-priced record by record, replays its listings' edits too: most of its
    records change content back and forth.) `n` numbers waves of these: each has prices and
    event times of its own, so none repeats a record of another byte for byte."""
    def reprice(rec: dict, i: int) -> None:
        if isinstance(rec.get("price"), dict):
            rec["price"] = {**rec["price"], "amount": round(rec["price"]["amount"] * (0.5 + ((i + 331 * n) % 997) / 1994)
                                                            + 0.01 * n, 2)}
        rec["event_time"] += 30_000_000 * (n + 1) + i
    return _latest_reposts(wave, reprice)


def identical_wave(wave: list[bytes]) -> list[bytes]:
    """As many re-posts as `wave`, in its listings' order, each the latest record of its listing
    in `wave` with a new event time only (stock updates, refreshes): byte for byte what the
    listing's previous record said, but for event_time."""
    def refresh(rec: dict, i: int) -> None:
        rec["event_time"] += 20_000_000 + i
    return _latest_reposts(wave, refresh)
