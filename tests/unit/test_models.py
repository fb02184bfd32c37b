"""The model wrappers: backbone batching and thread caps, OCR on a rendered line, and the
checkpoint reader's refusals (the research logo head: test_research_logo_head.py)."""
from __future__ import annotations

import io
import pickle

import cv2
import numpy as np
import pytest

from models.embedder import FEATURE_DIM, FeatureExtractor, letterbox

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(threads=1, batch_size=2)


def test_letterbox_keeps_aspect_and_pads():
    canvas, scale = letterbox(np.zeros((100, 200, 3), np.uint8), 448)
    assert canvas.shape == (448, 448, 3) and scale == pytest.approx(2.24)
    assert (canvas[:224] == 0).all() and (canvas[225:] == 127).all()
    with pytest.raises(ValueError, match="H x W x 3"):
        letterbox(np.zeros((10, 10), np.uint8), 64)


def test_extractor_batches_and_counts_calls(extractor):
    imgs = [np.full((64, 96, 3), v, np.uint8) for v in (0, 80, 160, 240, 30)]
    calls = extractor.calls
    out = extractor.features(imgs)
    assert out.shape == (5, FEATURE_DIM, 2, 3) and extractor.calls == calls + 3    # batches of 2
    single = extractor.features(imgs[3:4])
    np.testing.assert_allclose(single[0], out[3], atol=1e-3)                       # batching changes nothing
    with pytest.raises(ValueError, match="one shape"):
        extractor.features([imgs[0], np.zeros((32, 32, 3), np.uint8)])


def test_ocr_reads_a_rendered_line():
    from models.ocr import TextReader

    img = np.full((80, 360, 3), 255, np.uint8)
    cv2.putText(img, "ZEROSCAN 42", (10, 55), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (0, 0, 0), 3)
    (lines,) = TextReader(threads=1).read([img])
    assert any("ZEROSCAN" in line.text.upper().replace(" ", "") for line in lines)


def test_ocr_upscaled_reading_reports_source_pixels():
    """A small photo is read a second time scaled up (3.2x here): the new reading of the same
    lettering is added, boxed in the photo's own pixels over the first reading's box."""
    from models.ocr import TextReader

    img = np.full((60, 300, 3), 255, np.uint8)
    cv2.putText(img, "ZEROSCAN 42", (5, 35), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1)
    (plain,) = TextReader(threads=1).read([img])
    (both,) = TextReader(threads=1, upscale=True).read([img])
    assert [line.text for line in both[:len(plain)]] == [line.text for line in plain] and plain
    added = both[len(plain):]
    assert added and len({line.text for line in both}) == len(both)
    px1, py1, px2, py2 = plain[0].box
    for line in added:
        x1, y1, x2, y2 = line.box
        assert x1 < px2 and px1 < x2 and y1 < py2 and py1 < y2       # over the same lettering
        assert -2 <= x1 < x2 <= 302 and -2 <= y1 < y2 <= 62
    assert TextReader(threads=1, upscale=True).read([np.zeros((0, 0, 3), np.uint8)]) == [[]]


def test_checkpoint_reader_refuses_foreign_globals():
    from models.export_efficientnet import _StateDictUnpickler

    payload = pickle.dumps(print)          # a global a state dict never contains
    up = _StateDictUnpickler(io.BytesIO(payload))
    up.storages = {}
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        up.load()
