"""Copies of brands' official product photos: PDQ hashes (Meta's perceptual hash, 256 bits)
in a FAISS binary index catch re-uploads, resizes and re-encodes; a global embedding (mean
of the backbone's cells) catches crops and light edits that break the hash."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import faiss
import numpy as np
import pdqhash

from models.embedder import normalise

# ThreatExchange's PDQ_CONFIDENT_MATCH_THRESHOLD (signal_type/pdq): Hamming distance <= 31 of
# 256 bits is the same picture.
PDQ_MATCH_DISTANCE = 31
# PDQ's quality score (0..100) under which the hash is unreliable (flat or tiny images);
# ThreatExchange ignores hashes under 50.
PDQ_MIN_QUALITY = 50
# Cosine of whole-image backbone embeddings from which a photo counts as an edited copy
# (crop, overlay, colour change). Not tuned on data (the dev set has no product images):
# two different synthetic photos of the unit tests already reach 0.94, a resized copy ~0.99.
EMBED_MATCH_COS = 0.97
# Signal scores: a hash match is the same picture (the brand's own photo), enforceable;
# an embedding match alone may be a genuinely similar product shot: review.
PDQ_SCORE = 0.9
EMBED_SCORE = 0.6


@dataclass(frozen=True, slots=True)
class CopyHit:
    brand_id: str
    image_uri: str
    distance: int | None       # PDQ Hamming distance (None when found by embedding only)
    similarity: float          # cosine of global embeddings


def pdq(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """(32-byte packed hash, quality)."""
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb))
    return np.packbits(bits.astype(np.uint8)), int(quality)


def global_embedding(features: np.ndarray, valid_hw: tuple[int, int]) -> np.ndarray:
    """Mean of the valid (non-padding) cells of a [1280, h, w] map, L2-normalised."""
    vh, vw = valid_hw
    return normalise(features[:, :vh, :vw].mean(axis=(1, 2)))


class ImageCopyIndex:
    def __init__(self, entries: Sequence[tuple[str, str]], hashes: np.ndarray, embeddings: np.ndarray):
        self._entries = tuple(entries)
        self._hashes = faiss.IndexBinaryFlat(256)
        self._embed = faiss.IndexFlatIP(embeddings.shape[1] if len(embeddings) else 1280)
        if len(self._entries):
            self._hashes.add(np.ascontiguousarray(hashes, np.uint8))
            self._embed.add(np.ascontiguousarray(embeddings, np.float32))

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, packed_hash: np.ndarray, quality: int, embedding: np.ndarray) -> list[CopyHit]:
        if not self._entries:
            return []
        k = min(4, len(self._entries))
        found: dict[int, CopyHit] = {}
        if quality >= PDQ_MIN_QUALITY:
            dist, rows = self._hashes.search(packed_hash[None], k)
            for d, r in zip(dist[0], rows[0]):
                if r >= 0 and d <= PDQ_MATCH_DISTANCE:
                    b, uri = self._entries[r]
                    found[int(r)] = CopyHit(b, uri, int(d), 0.0)
        sims, rows = self._embed.search(embedding[None].astype(np.float32), k)
        for s, r in zip(sims[0], rows[0]):
            if r < 0:
                continue
            b, uri = self._entries[r]
            if int(r) in found:
                found[int(r)] = CopyHit(b, uri, found[int(r)].distance, float(s))
            elif s >= EMBED_MATCH_COS:
                found[int(r)] = CopyHit(b, uri, None, float(s))
        return list(found.values())
