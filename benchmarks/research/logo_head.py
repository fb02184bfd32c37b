"""The learned logo-region embedding: a linear head over EfficientNet-Lite0 feature cells,
trained by `benchmarks/research/train_logo_head.py` across brands (brand-agnostic: a new brand only needs
its logo files). Shared by training and runtime: how reference logos are rendered, which
windows of the feature grid are candidate regions, and how a window becomes an embedding.

A window's embedding is the mean of its cells' projected features, L2-normalised. The head
is linear, so cells are projected once and windows pooled with an integral image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from brand_signals.images.logo_geometry import tight_crop
from models.embedder import STRIDE

DEFAULT_HEAD = Path(__file__).resolve().parent / "logo_head.npz"
# Reference renderings: the logo drawn over a square of n x n cells, centred in a canvas of
# REF_SIDE (7 x 7 cells), pooled over exactly that window, like a photo region.
REF_SIDE = 224
REF_CELLS = (2, 3, 5)
# Candidate windows: every position of every (w, h) cell shape up to WINDOW_MAX cells a side
# whose aspect ratio is at most WINDOW_MAX_ASPECT (wide word-logos, tall bottles).
WINDOW_MAX = 6
WINDOW_MAX_ASPECT = 3


@dataclass(frozen=True, slots=True)
class LogoHead:
    weight: np.ndarray        # [1280 + 1, D]: projection, last row the bias
    background: np.ndarray    # [D], unit norm: the "no logo" prototype
    scale: float              # softmax temperature the head was trained with
    meta: dict

    @classmethod
    def load(cls, path: Path | str = DEFAULT_HEAD) -> "LogoHead":
        with np.load(path, allow_pickle=False) as z:
            meta = {k[5:]: z[k].tolist() for k in z.files if k.startswith("meta_")}
            return cls(z["weight"].astype(np.float32), z["background"].astype(np.float32),
                       float(z["scale"]), meta)

    def save(self, path: Path | str) -> None:
        np.savez_compressed(path, weight=self.weight.astype(np.float16).astype(np.float32),
                            background=self.background, scale=np.float32(self.scale),
                            **{f"meta_{k}": np.asarray(v) for k, v in self.meta.items()})

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    def project(self, pooled: np.ndarray) -> np.ndarray:
        """[K, 1280] pooled backbone features -> [K, D] (not normalised)."""
        return pooled @ self.weight[:-1] + self.weight[-1]

    def project_cells(self, features: np.ndarray) -> np.ndarray:
        """[1280, h, w] backbone map -> [h, w, D] projected cells (the bias commutes with
        mean pooling, so pooled projected cells == projected pooled features)."""
        c, h, w = features.shape
        return self.project(features.reshape(c, h * w).T).reshape(h, w, -1)


def reference_renders(rgb: np.ndarray) -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    """Renderings of one reference logo: (canvas REF_SIDE^2 RGB, window x, y, w, h in cells).

    The logo (tightly cropped) is fitted into an n x n cell square over a canvas of its own
    background colour, for every n in REF_CELLS, in colour and in greyscale."""
    logo = tight_crop(rgb)
    corners = np.median(np.concatenate([rgb[:2, :2].reshape(-1, 3), rgb[-2:, -2:].reshape(-1, 3)]), axis=0)
    grey = cv2.cvtColor(cv2.cvtColor(logo, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    grid = REF_SIDE // STRIDE
    out = []
    for variant in (logo, grey):
        bg = corners if variant is logo else np.full(3, corners.mean())
        for n in REF_CELLS:
            canvas = np.empty((REF_SIDE, REF_SIDE, 3), np.uint8)
            canvas[:] = bg.astype(np.uint8)
            side = n * STRIDE
            h, w = variant.shape[:2]
            s = side / max(h, w)
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            c0 = (grid - n) // 2
            x0 = c0 * STRIDE + (side - nw) // 2
            y0 = c0 * STRIDE + (side - nh) // 2
            canvas[y0:y0 + nh, x0:x0 + nw] = cv2.resize(variant, (nw, nh), interpolation=cv2.INTER_AREA)
            out.append((canvas, (c0, c0, n, n)))
    return out


def window_shapes() -> list[tuple[int, int]]:
    return [(w, h) for w in range(1, WINDOW_MAX + 1) for h in range(1, WINDOW_MAX + 1)
            if max(w, h) <= WINDOW_MAX_ASPECT * min(w, h)]


def windows(h: int, w: int, valid_h: int | None = None, valid_w: int | None = None) -> np.ndarray:
    """[K, 4] int32 windows (x, y, w, h in cells) inside the grid's valid (non-padding) part."""
    vh = h if valid_h is None else max(1, min(h, valid_h))
    vw = w if valid_w is None else max(1, min(w, valid_w))
    out = []
    for ww, hh in window_shapes():
        if ww > vw or hh > vh:
            continue
        ys, xs = np.mgrid[0:vh - hh + 1, 0:vw - ww + 1]
        k = xs.size
        out.append(np.stack([xs.ravel(), ys.ravel(), np.full(k, ww), np.full(k, hh)], axis=1))
    return np.concatenate(out).astype(np.int32) if out else np.zeros((0, 4), np.int32)


def pool_windows(cells: np.ndarray, wins: np.ndarray) -> np.ndarray:
    """Mean of `cells` [h, w, C] over each window [K, 4] -> [K, C] (integral image)."""
    h, w, c = cells.shape
    ii = np.zeros((h + 1, w + 1, c), np.float32)
    ii[1:, 1:] = cells.cumsum(0).cumsum(1)
    x, y, ww, hh = wins[:, 0], wins[:, 1], wins[:, 2], wins[:, 3]
    s = ii[y + hh, x + ww] - ii[y, x + ww] - ii[y + hh, x] + ii[y, x]
    return s / (ww * hh)[:, None].astype(np.float32)
