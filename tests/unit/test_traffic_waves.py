"""The bench's spaced wave: each live listing updated once, as the mix says, beside the new
listings the mix brings; the stream before it is the seeded stream every figure used."""
from __future__ import annotations

import collections
import hashlib

import orjson
import pytest

from benchmarks.traffic import Mix, Traffic, brand_records

pytestmark = pytest.mark.unit

# sha256 of the first 50,000 records after a warm-up of 2,000 listings, 1,000 marks, before the
# spaced wave was added (the stream's random draws must not move).
STREAM = {Mix(): "db1623021931a18973a9e97380d9cbc7f5658f00ae8a70c5b4aabb4dd317d49d",
          Mix(identical=0.5): "b13465d51e7bcf53defbc3f8430776f17aced28d9666fe055d8d10af0ac07b4c"}


@pytest.mark.parametrize("mix", list(STREAM), ids=["price-changes", "half-identical"])
def test_the_spaced_wave_updates_each_live_listing_once(mix):
    t = Traffic(brand_records(1000), mix)
    t.warm(2000)
    assert hashlib.sha256(b"".join(t.lines(50_000))).hexdigest() == STREAM[mix]
    before = {r["listing_id"]: r for r in t.live}
    wave = [orjson.loads(x) for x in t.spaced_wave()]
    ids = collections.Counter(r["listing_id"] for r in wave)
    assert set(before) <= set(ids) and max(ids.values()) == 1
    new = [r for r in wave if r["listing_id"] not in before]
    assert len(new) == round(len(before) * mix.new / (mix.unchanged + mix.edited))
    reposts = [r for r in wave if r["listing_id"] in before]
    edited = [r for r in reposts if r["title"] != before[r["listing_id"]]["title"]]
    assert 0.10 < len(edited) / len(reposts) < 0.22      # ~15 / 95 of them, a word changed
    for r in reposts:   # nothing else moves but the price
        was = before[r["listing_id"]]
        assert {k: v for k, v in r.items() if k not in ("title", "price", "event_time")} == \
            {k: v for k, v in was.items() if k not in ("title", "price")}
    same_price = sum(r["price"] == before[r["listing_id"]]["price"] for r in reposts) / len(reposts)
    assert same_price < 0.01 if not mix.identical else 0.3 < same_price < 0.5
    times = [r["event_time"] for r in wave]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_a_spaced_wave_needs_live_listings():
    with pytest.raises(ValueError, match="warm the traffic first"):
        Traffic(brand_records(100)).spaced_wave()


def test_a_sampled_wave_updates_k_live_listings_at_random_once_each():
    t = Traffic(brand_records(1000), Mix())
    t.warm(5000)
    first = [orjson.loads(x) for x in t.first_records()]
    assert [r["listing_id"] for r in first] == [r["listing_id"] for r in t.live]
    before = {r["listing_id"]: r for r in t.live}
    wave = [orjson.loads(x) for x in t.sampled_wave(1000)]
    ids = collections.Counter(r["listing_id"] for r in wave)
    assert max(ids.values()) == 1
    reposts = [r for r in wave if r["listing_id"] in before]
    assert len(reposts) == 1000
    assert len(wave) - len(reposts) == round(1000 * 0.05 / 0.95)
    # drawn over the whole catalogue, not its first listings
    positions = sorted(list(before).index(r["listing_id"]) for r in reposts)
    assert positions[0] < 500 and positions[-1] > 4500
    edited = [r for r in reposts if r["title"] != before[r["listing_id"]]["title"]]
    assert 0.10 < len(edited) / len(reposts) < 0.22
    times = [r["event_time"] for r in first + wave]
    assert times == sorted(times) and len(set(times)) == len(times)
    with pytest.raises(ValueError, match="warm the traffic first"):
        Traffic(brand_records(100)).sampled_wave(10)
