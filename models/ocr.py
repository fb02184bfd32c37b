"""OCR wrapper: RapidOCR (PP-OCRv4 det/cls/rec ONNX weights shipped inside the
`rapidocr-onnxruntime` wheel, Apache-2.0) with capped threads and bounded input size."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# PLATFORM.md: with limit_type "max" and side 960 wide images stop taking ~2 s; listing photos
# are at most a few hundred pixels more than that.
DET_LIMIT_SIDE = 960
# RapidOCR's own default recognition confidence floor; lower readings are mostly noise.
MIN_TEXT_SCORE = 0.5


@dataclass(frozen=True, slots=True)
class TextLine:
    text: str
    score: float
    box: tuple[float, float, float, float]   # x1, y1, x2, y2 in the image's pixels


class TextReader:
    """`read(images)` -> the text lines of each RGB uint8 image; `calls` counts images read."""

    def __init__(self, threads: int = 1, det_limit_side: int = DET_LIMIT_SIDE):
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        threads = min(threads, os.cpu_count() or 1)
        from rapidocr_onnxruntime import RapidOCR

        self._ocr = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1,
                             det_limit_type="max", det_limit_side_len=det_limit_side,
                             text_score=MIN_TEXT_SCORE, print_verbose=False)
        self.calls = 0

    def read(self, images: Sequence[np.ndarray]) -> list[list[TextLine]]:
        out = []
        for rgb in images:
            self.calls += 1
            # RapidOCR takes OpenCV's BGR order for arrays.
            result, _ = self._ocr(np.ascontiguousarray(rgb[:, :, ::-1]))
            lines = []
            for quad, text, score in result or ():
                q = np.asarray(quad, np.float32)
                lines.append(TextLine(str(text), float(score), (float(q[:, 0].min()), float(q[:, 1].min()),
                                                                float(q[:, 0].max()), float(q[:, 1].max()))))
            out.append(lines)
        return out
