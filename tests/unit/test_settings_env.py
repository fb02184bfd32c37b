"""Every ZEROSCAN_* variable is read by Settings.from_env, checked at start with a clear error."""
from __future__ import annotations

import sys

import pytest

from zeroscan.settings import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("env, field, value", [
    ({}, "images", True),                                                       # default: on
    ({"ZEROSCAN_IMAGES": "off"}, "images", False),                              # text only
    ({"ZEROSCAN_IMAGE_OCR": "upscale"}, "image_ocr", "upscale"),
    ({}, "signals", ("wordmarks", "images", "feedback", "price", "seller")),    # the built-in sources
    ({"ZEROSCAN_SIGNALS": "wordmarks,price"}, "signals", ("wordmarks", "price")),
    ({}, "worker_python", sys.executable),
    ({"ZEROSCAN_WORKER_PYTHON": "/opt/py/bin/python3"}, "worker_python", "/opt/py/bin/python3"),
    ({"ZEROSCAN_FLINK_OPTS": "a.b=1; c=x=y"}, "flink_opts", (("a.b", "1"), ("c", "x=y"))),
    ({}, "parallelism", 1),
    ({"ZEROSCAN_PARALLELISM": "4"}, "parallelism", 4),
    ({"ZEROSCAN_TOKEN": "t0k"}, "token", "t0k"),
    ({}, "stop_timeout_s", 60),
    ({"ZEROSCAN_STOP_TIMEOUT_S": "0"}, "stop_timeout_s", 0),                  # stop by cancelling
    ({}, "unchanged_cache_slots", 1 << 20),
    ({"ZEROSCAN_UNCHANGED_CACHE_SLOTS": "0"}, "unchanged_cache_slots", 0),     # only the keyed step
    ({}, "price_loop", True),
    ({"ZEROSCAN_PRICE_LOOP": "off"}, "price_loop", False),                    # a price change is content
    ({}, "gc_young", 50_000),
    ({"ZEROSCAN_GC_YOUNG": "700"}, "gc_young", 700),                           # CPython's own
    ({"ZEROSCAN_GC_YOUNG": "50_000"}, "gc_young", 50_000),
])
def test_read_from_the_environment(monkeypatch, env, field, value):
    for k in ("ZEROSCAN_IMAGES", "ZEROSCAN_IMAGE_OCR", "ZEROSCAN_SIGNALS", "ZEROSCAN_WORKER_PYTHON",
              "ZEROSCAN_FLINK_OPTS", "ZEROSCAN_PARALLELISM", "ZEROSCAN_TOKEN", "ZEROSCAN_STOP_TIMEOUT_S",
              "ZEROSCAN_UNCHANGED_CACHE_SLOTS", "ZEROSCAN_PRICE_LOOP", "ZEROSCAN_GC_YOUNG"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert getattr(Settings.from_env(), field) == value


@pytest.mark.parametrize("name, value, why", [
    ("ZEROSCAN_IMAGES", "yes", "on or off"),                  # only on/off
    ("ZEROSCAN_SIGNALS", "wordmarks,logos", "unknown"),       # no such source
    ("ZEROSCAN_FLINK_OPTS", "novalue", "key=value"),          # not a pair
    ("ZEROSCAN_PARALLELISM", "0", "positive whole number"),
    ("ZEROSCAN_STOP_TIMEOUT_S", "-1", "whole number >= 0"),
    ("ZEROSCAN_PRICE_LOOP", "1", "on or off"),
    ("ZEROSCAN_UNCHANGED_CACHE_SLOTS", str((1 << 26) + 1), "at most 67108864"),   # 1.5 GiB
    ("ZEROSCAN_GC_YOUNG", "0", "positive whole number"),
    ("ZEROSCAN_GC_YOUNG", "-5", "positive whole number"),
    ("ZEROSCAN_GC_YOUNG", "50k", "positive whole number"),
    ("ZEROSCAN_GC_YOUNG", "1e6", "positive whole number"),
    ("ZEROSCAN_GC_YOUNG", "²", "positive whole number"),          # a digit, not an ASCII one
    ("ZEROSCAN_GC_YOUNG", "５００００", "positive whole number"),
    ("ZEROSCAN_GC_YOUNG", "10000001", "at most 10000000"),
])
def test_bad_values_are_refused(monkeypatch, name, value, why):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=why):
        Settings.from_env()


def test_the_token_is_kept_out_of_the_repr(monkeypatch):
    monkeypatch.setenv("ZEROSCAN_TOKEN", "s3cret-token")
    assert "s3cret-token" not in repr(Settings.from_env())
