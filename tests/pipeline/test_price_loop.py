"""Price-only re-posts stop on the Java side once the job's own scan said the listing's content
presents no brand (the price loop: pipelines/java RepostStop, pipelines.scanner_job
define_keyed_input). The keyed input step of the real job on the local mini-cluster, over
records given in order, the loop's verdicts (`quiet` records) among them where the job would
read them back; what reaches the scan is read from `keyed_in`. The whole loop through Kafka is
tested in tests/integration/test_price_loop_kafka.py."""
from __future__ import annotations

import pytest

from tests.pipeline.test_java_functions import price_free_specified
from tests.pipeline.test_unchanged import DAY, listing, reaching_scan

pytestmark = pytest.mark.pipeline

NOW = 1_767_225_600     # the harness's clock: one re-check period (DAY) for all records below


def price(amount: float) -> dict:
    return {"amount": amount, "currency": "USD"}


def verdict(rec: str, pos: int, lid: str = "x1", presents: bool = False) -> tuple[str, str]:
    """The loop's record for a scan of `rec` read at offset `pos`: quiet, or "-" (`presents`)."""
    pfp = price_free_specified(rec.encode(), 1 << 20)
    assert pfp is not None
    return "quiet", f"{'-' if presents else pfp + '/' + str(NOW // DAY)}\t{pos}\t{lid}"


def run(tmp_path, recs, **kw) -> list:
    return reaching_scan(tmp_path, recs, price_loop=True, **kw)


@pytest.mark.parametrize("slots", [1 << 20, 0])
def test_price_only_re_posts_stop_once_a_scan_said_the_content_is_quiet(tmp_path, slots):
    a = listing(t=1, price=price(10))
    edited = listing(t=5, title="Leather bag, brown", price=price(8))
    recs = [("listing", a),                                        # 1 scanned
            ("listing", listing(t=2, price=price(9.5))),           # 2 crosses: no verdict yet
            verdict(a, 1),                                         # 3 A's scan: quiet
            ("listing", listing(t=3, price=price(9))),             # 4 stops
            ("listing", listing(t=4, price=price(9))),             # 5 stops (and is identical)
            ("listing", edited),                                   # 6 new content: scanned
            ("listing", listing(t=6, title="Leather bag, brown", price=price(7))),  # 7 no verdict on it
            verdict(edited, 6),                                    # 8
            ("listing", listing(t=7, title="Leather bag, brown", price=price(6))),  # 9 stops
            verdict(edited, 7, presents=True),                     # 10 a later scan of the run presented a brand
            ("listing", listing(t=8, title="Leather bag, brown", price=price(5))),  # 11 revoked: scanned
            ("listing", listing(lid="x2", t=9, price=price(9)))]   # 12 another listing: its own verdicts
    assert run(tmp_path, recs, slots=slots) == [1, 2, 6, 7, 11, 12]


def test_a_verdict_older_than_the_run_or_after_feedback_does_not_stop(tmp_path):
    a = listing(t=1, price=price(10))
    recs = [("listing", a),                                        # 1
            ("listing", listing(t=2, title="Leather bag!", price=price(10))),   # 2 another content
            ("listing", listing(t=3, price=price(9))),             # 3 A's content again: a new run
            verdict(a, 1),                                         # 4 made before the run began
            ("listing", listing(t=4, price=price(8))),             # 5 crosses
            verdict(a, 3),                                         # 6 from the run's first record
            ("listing", listing(t=5, price=price(7))),             # 7 stops
            ("feedback", '{"listing_id":"x1","brand_id":"b1","kind":"removal"}'),   # 8 reaches the scan
            ("listing", listing(t=6, price=price(6))),             # 9 feedback ended the run
            ("listing", listing(t=7, price=price(5))),             # 10 the verdict (6) is older than it
            ("rescan", '{"listing_id":"x1","source":{"offset":10}}'),   # 11
            verdict(a, 10),                                        # 12 a verdict on 10: before the rescan
            ("listing", listing(t=8, price=price(4)))]             # 13 the rescan ended that run too
    assert run(tmp_path, recs) == [1, 2, 3, 5, 8, 9, 10, 11, 13]


def test_a_price_the_plain_form_does_not_cover_is_scanned(tmp_path):
    """A re-post whose price the contract refuses (or that is not in the one plain form read on
    the Java side) has no price-free fingerprint: it is compared whole, scanned, and refused by
    the scan; so is one that its new price takes over the record limit."""
    a = listing(t=1, price=price(10))
    d = "x" * ((1 << 20) - len(listing(t=1, price=price(10), description="").encode()))
    big = listing(t=1, price=price(10), description=d)
    assert len(big.encode()) == 1 << 20
    recs = [("listing", a), verdict(a, 1),
            ("listing", listing(t=2, price=price(9))),                                 # 3 stops
            ("listing", listing(t=3, price={"amount": -1, "currency": "USD"})),        # 4 refused by the contract
            ("listing", listing(t=4, price=price(9))),                                 # 5 a new run
            verdict(a, 5),
            ("listing", listing(t=5, price=price(8))),                                 # 7 stops
            ("listing", listing(t=6, price={"amount": "8", "currency": "USD"})),       # 8
            ("listing", listing(t=7, price=price(7))),                                 # 9
            ("listing", big),                                                          # 10 at the limit
            verdict(big, 10),
            ("listing", listing(t=2, price=price(11), description=d)),                 # 12 stops
            ("listing", listing(t=3, price=price(10.5), description=d))]               # 13 one byte over
    assert run(tmp_path, recs) == [1, 4, 5, 8, 9, 10, 13]


def test_verdicts_never_reach_the_scan_nor_end_an_identical_run(tmp_path):
    a = listing(t=1)
    recs = [("listing", a), verdict(a, 1), ("listing", listing(t=2)), verdict(a, 1, lid="x3"),
            ("quiet", "not a verdict"), ("listing", listing(t=3)), ("listing", listing(lid="x3", t=4))]
    for slots in (1 << 20, 0):
        assert run(tmp_path / str(slots), recs, slots=slots) == [1, 7]
    # Without the loop (file mode), verdicts would be nothing to the keyed step: a price change
    # is content.
    recs = [("listing", a), ("listing", listing(t=2, price=price(9)))]
    assert reaching_scan(tmp_path / "off", recs) == [1, 2]
