"""The hostile corpus (benchmarks/hostile.py), small: 500 hostile records of every class mixed
into ordinary traffic, through the real job (images on, Kafka mode) on the session broker.
Every record ends as a decision, a pass or a dead letter with its reason; the job never
restarts; checkpoints complete; listings whose images are local paths, internal addresses or
slow hosts still get their decision, with an image_error signal naming the egress rule."""
from __future__ import annotations

import pytest

from benchmarks.hostile import SHORT_FETCH, WORKER_RSS_BOUND_MIB, run_corpus

pytestmark = pytest.mark.integration


def test_hostile_corpus_small(kafka_settings, tmp_path):
    res = run_corpus(kafka_settings, tmp_path / "hostile", n_hostile=500, n_ordinary=250, fetch=SHORT_FETCH,
                     timeout_s=600, under_limit_bombs=1)
    assert res["dead_letters_match_refused_records"], res
    checkpoints = {k: res[k] for k in ("job_restarts", "checkpoints_completed", "checkpoints_failed",
                                       "checkpoint_triggers_refused_at_start", "checkpoint_failure_messages",
                                       "checkpoints_failed_counting", "max_checkpoint_s", "max_batch_s")}
    assert res["job_restarts"] == 0 and res["checkpoints_failed"] == 0 and res["checkpoints_completed"] > 0, \
        checkpoints
    assert res["job_probe"]["rest_api_answered"] and res["max_batch_s"] > 0, res   # measured, from the job
    assert res["flagged_hostile_listings_without_decision"] == 0, res
    assert res["peak_rss_mib"] <= WORKER_RSS_BOUND_MIB, res
    rules = res["image_errors_on_decisions"]
    for rule in ("local-path", "scheme", "internal-address", "credentials"):
        assert rules.get(rule, 0) > 0, rules
