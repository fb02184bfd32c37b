"""Logo matching: every enrolled logo is rendered a few ways (sizes, colour and greyscale),
embedded with the learned region head and put in a FAISS inner-product index; a listing
photo's candidate windows (all positions and shapes on the backbone's 14 x 14 grid) are
embedded the same way and searched. A window's confidence that it shows brand B is a softmax
over its nearest renderings and the head's "background" prototype, so a window that looks
like nothing in particular stays low whatever its nearest neighbour.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from benchmarks.research.logo_head import DEFAULT_HEAD, LogoHead, pool_windows, reference_renders, windows
from models.embedder import QUERY_SIDE, STRIDE, FeatureExtractor, normalise, valid_cells

# Nearest renderings per window entering the softmax; the rest of the catalogue contributes
# exp(scale * cos) with cos well below the k-th and is ignored (an upper bound on p).
TOP_K = 16
# Windows whose best brand probability is under this are not reported at all (keeps the
# per-image output small; far below any threshold that makes a signal).
MIN_REPORT_PROB = 0.3
# The softmax is relative to the catalogue: with few brands any window that is not
# "background" reaches p ~ 1. A window must also be this close (cosine) to a rendering.
# Unit-test images: a pasted logo's window 0.86-0.91, the best window of a plain photo
# 0.83-0.84; dev photos overlap far more (see the module's report in eval_logos_offline).
MIN_SIMILARITY = 0.88


@dataclass(frozen=True, slots=True)
class LogoEntry:
    brand_id: str
    logo_uri: str


@dataclass(frozen=True, slots=True)
class LogoHit:
    brand_id: str
    logo_uri: str
    probability: float            # softmax over nearest renderings + background
    similarity: float             # cosine to the best rendering
    box: tuple[int, int, int, int]   # x1, y1, x2, y2 in the photo's pixels


class LogoIndex:
    """Immutable once built; `match` is pure given a feature map."""

    def __init__(self, head: LogoHead, entries: Sequence[LogoEntry], embeddings: np.ndarray):
        if len(entries) != len(embeddings):
            raise ValueError(f"{len(entries)} entries but {len(embeddings)} embeddings")
        self.head = head
        self._entries = tuple(entries)
        self._index = faiss.IndexFlatIP(head.dim)
        if len(embeddings):
            self._index.add(np.ascontiguousarray(embeddings, np.float32))

    @classmethod
    def build(cls, logos: Sequence[tuple[str, str, np.ndarray]], extractor: FeatureExtractor,
              head: LogoHead) -> "LogoIndex":
        """`logos`: (brand_id, logo uri, RGB image) for every enrolled logo file."""
        entries, canvases, wins = [], [], []
        for brand_id, uri, rgb in logos:
            for canvas, win in reference_renders(rgb):
                entries.append(LogoEntry(brand_id, uri))
                canvases.append(canvas)
                wins.append(win)
        if not canvases:
            return cls(head, [], np.zeros((0, head.dim), np.float32))
        feats = extractor.features(canvases)
        pooled = np.stack([pool_windows(f.transpose(1, 2, 0), np.int32([w]))[0] for f, w in zip(feats, wins)])
        return cls(head, entries, normalise(head.project(pooled)))

    def __len__(self) -> int:
        return len(self._entries)

    def window_embeddings(self, features: np.ndarray, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        cells = self.head.project_cells(features)
        vh, vw = valid_cells(*image_hw, side=QUERY_SIDE)
        wins = windows(cells.shape[0], cells.shape[1], vh, vw)
        return wins, normalise(pool_windows(cells, wins))

    def match(self, features: np.ndarray, image_hw: tuple[int, int]) -> list[LogoHit]:
        """Best window per brand (probability >= MIN_REPORT_PROB) for one photo, given its
        backbone map computed on the QUERY_SIDE letterbox; strongest first."""
        if not self._entries:
            return []
        wins, emb = self.window_embeddings(features, image_hw)
        k = min(TOP_K, len(self._entries))
        sims, rows = self._index.search(emb, k)
        scale = self.head.scale
        bg = emb @ self.head.background
        top = sims.max(1, keepdims=True)
        ex = np.exp(scale * (sims - top))
        denom = ex.sum(1) + np.exp(scale * (bg - top[:, 0]))
        best: dict[str, tuple[float, float, int, int]] = {}
        for wi in np.nonzero(ex[:, 0] / denom >= MIN_REPORT_PROB / 4)[0]:
            per_brand: dict[str, float] = {}
            for j in range(k):
                b = self._entries[rows[wi, j]].brand_id
                per_brand[b] = per_brand.get(b, 0.0) + ex[wi, j]
            for b, mass in per_brand.items():
                p = float(mass / denom[wi])
                j = next(j for j in range(k) if self._entries[rows[wi, j]].brand_id == b)
                sim = float(sims[wi, j])
                if p >= MIN_REPORT_PROB and sim >= MIN_SIMILARITY and (b not in best or sim > best[b][1]):
                    best[b] = (p, sim, int(rows[wi, j]), int(wi))
        scale_px = max(image_hw) / QUERY_SIDE
        hits = []
        for b, (p, sim, row, wi) in best.items():
            x, y, w, h = (int(v) for v in wins[wi])
            box = (int(x * STRIDE * scale_px), int(y * STRIDE * scale_px),
                   min(image_hw[1], int((x + w) * STRIDE * scale_px)), min(image_hw[0], int((y + h) * STRIDE * scale_px)))
            hits.append(LogoHit(b, self._entries[row].logo_uri, p, sim, box))
        return sorted(hits, key=lambda h: -h.probability)


# --- scores (decide.py: >= 0.8 enforce, >= 0.5 review) ------------------------------------
# The learned head (benchmarks/research/logo_head.py) is off unless a `LearnedHead` is passed to ImageSignals.build: cross-fitted on
# the dev logo photos (two heads, each brand scored by the head that never saw it), at the
# thresholds below it found none of the 809 logo photos; without logos.MIN_SIMILARITY it
# flagged 1,079 of 1,109 photos at precision 0.06 (benchmarks/research/eval_logo_head_cv.py). It cost
# ~42 ms per new image. It is kept for research
# (benchmarks/eval_logos_offline.py --head). When on, the window probability p (softmax over
# nearest renderings + background) becomes a score through these points, under
# decide.REVIEW_SCORE, so a head hit only adds to other evidence.
LOGO_ENFORCE_PROB = 0.97
LOGO_REVIEW_PROB = 0.9
LOGO_ENFORCE_SCORE = 0.45
LOGO_REVIEW_SCORE = 0.3


def logo_score(p: float) -> float:
    if p >= LOGO_ENFORCE_PROB:
        return LOGO_ENFORCE_SCORE
    if p >= LOGO_REVIEW_PROB:
        return LOGO_REVIEW_SCORE
    return 0.0


@dataclass(frozen=True)
class LearnedHead:
    """The head as an ImageSignals plug-in (image_signals.LogoHeadPlugin): research only,
    `ImageSignals.build(..., head=LearnedHead.load(path))`."""

    head: LogoHead
    fingerprint: bytes

    @classmethod
    def load(cls, path: Path | None = None) -> "LearnedHead":
        path = Path(path) if path is not None else DEFAULT_HEAD
        return cls(LogoHead.load(path), hashlib.sha256(path.read_bytes()).digest())

    def index(self, logos, extractor: FeatureExtractor) -> LogoIndex:
        return LogoIndex.build(logos, extractor, self.head)

    def score(self, probability: float) -> float:
        return logo_score(probability)
