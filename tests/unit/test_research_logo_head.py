"""The research logo head (benchmarks/research/, off in the job): window pooling against a plain
mean, the head's save/load and projection, and its FAISS index against an exact oracle."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from benchmarks.research.logo_head import LogoHead, pool_windows, reference_renders, windows
from models.embedder import FEATURE_DIM, FeatureExtractor, normalise

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(threads=1, batch_size=2)


def test_pool_windows_matches_a_plain_mean():
    rng = np.random.default_rng(0)
    cells = rng.normal(size=(5, 7, 3)).astype(np.float32)
    wins = windows(5, 7)
    pooled = pool_windows(cells, wins)
    for (x, y, w, h), got in zip(wins[::17], pooled[::17]):
        np.testing.assert_allclose(got, cells[y:y + h, x:x + w].reshape(-1, 3).mean(0), atol=1e-5)
    assert len(windows(14, 14, 3, 14)) < len(wins) * 10      # padding rows give no windows
    assert windows(14, 14, 3, 14)[:, 1].max() + 1 <= 3


def test_head_roundtrip_and_projection_commutes_with_pooling(tmp_path):
    rng = np.random.default_rng(1)
    head = LogoHead(rng.normal(size=(FEATURE_DIM + 1, 8)).astype(np.float32),
                    normalise(rng.normal(size=8)).astype(np.float32), 16.0, {"held_out": np.array(["x"])})
    head.save(tmp_path / "h.npz")
    back = LogoHead.load(tmp_path / "h.npz")
    assert back.meta["held_out"] == ["x"] and back.dim == 8
    fm = rng.normal(size=(FEATURE_DIM, 4, 4)).astype(np.float32)
    wins = windows(4, 4)
    a = pool_windows(back.project_cells(fm), wins)
    b = back.project(pool_windows(fm.transpose(1, 2, 0), wins))
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)


def test_logo_index_search_equals_exact_oracle(extractor):
    from benchmarks.research.logos import LogoIndex

    rng = np.random.default_rng(2)
    logos = []
    for i in range(3):
        img = np.full((128, 128, 3), 255, np.uint8)
        cv2.circle(img, (64, 64), 20 + 15 * i, tuple(int(c) for c in rng.integers(0, 200, 3)), -1)
        logos.append((f"b{i}", f"l{i}.png", img))
    index = LogoIndex.build(logos, extractor, LogoHead.load())
    assert len(index) == 3 * len(reference_renders(logos[0][2]))
    canvas = np.full((448, 448, 3), 127, np.uint8)
    canvas[100:228, 100:228] = logos[1][2]
    fm = extractor.features([canvas])[0]
    wins, emb = index.window_embeddings(fm, (448, 448))
    sims, rows = index._index.search(emb, 5)
    exact = emb @ np.stack([index._index.reconstruct(i) for i in range(len(index))]).T
    np.testing.assert_allclose(sims, -np.sort(-exact, axis=1)[:, :5], atol=1e-4)
