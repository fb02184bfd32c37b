"""OCR wrapper: RapidOCR (PP-OCRv4 det/rec ONNX weights shipped inside the
`rapidocr-onnxruntime` wheel, Apache-2.0; run as models/ocr_graphs.py rewrites them) with
capped threads and bounded input size."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from models.device import CUDA_PROVIDER, providers
from models.ocr_graphs import WHEEL_GRAPHS, ocr_models, wheel_graph

# PLATFORM.md: with limit_type "max" and side 960 wide images stop taking ~2 s; listing photos
# are at most a few hundred pixels more than that.
DET_LIMIT_SIDE = 960
# RapidOCR's own default recognition confidence floor; lower readings are mostly noise.
MIN_TEXT_SCORE = 0.5
# The text-angle classifier is not run: it takes stylised logo lettering for upside-down text
# and turns it over ("YAHOO!" read as "OOHA", "iOOHYI"). Measured on the dev logo photos
# (1,109, benchmarks/eval_logos_offline.py): OCR alone recall 0.419 -> 0.466 at precision
# 0.966 -> 0.972, and 47 ms instead of ~85 ms per photo. Upside-down text is not read.
USE_ANGLE_CLASSIFIER = False
# Optional second reading of small photos scaled up so their longest side is UPSCALE_SIDE
# (the detector misses small lettering): dev logo photos (longest side 240-500 px), OCR recall
# 0.466 -> 0.513 at precision 0.970, ~200 ms more per photo under UPSCALE_SIDE /
# UPSCALE_MIN_FACTOR pixels; the work is bounded by UPSCALE_SIDE whatever the photo. Both
# readings' lines are kept (the second often reads a logo the first misread: "Goog!" then
# "Google"), only exact repeats are dropped. Off unless asked for.
UPSCALE_SIDE = 960
UPSCALE_MIN_FACTOR = 1.3
# Text lines per recognition call (RapidOCR's default, padded to the widest of them). One at a
# time wrote the same dev logo decisions, field for field (benchmarks/eval_logos_offline.py,
# 1,109 photos), but its time did not hold: 17 % less OCR time in one early run, then 0.99, then
# 1.01 and 0.97 of this setting's in two rounds of `benchmarks/ab_images.py`; so it stays at 6.
# One call across a batch's photos was slower (wider padding) and moved readings.
REC_BATCH = 6
# Recognition input: RapidOCR pads every batch of lines to at least 320 pixels wide at height
# 48 (PaddleOCR's training shape), so a short word is mostly padding. Measured narrower (each
# batch padded only to its widest line, 48 or 160 alike): the dev logo photos' OCR 89.7 ->
# 70.5 ms per photo and the whole image scan 162 -> 142 ms, but 59 of 300 photos read other
# text and the dev logo evaluation lost 3 true positives and 1 false positive (472 / 14 ->
# 469 / 13): not kept.
REC_IMAGE_SHAPE = (3, 48, 320)
# The detector's input normalisation ((x / 255 - mean) / std, RapidOCR's own), given as float32
# arrays: RapidOCR keeps them as it gets them, and its default lists made it compute in float64
# (3.8 ms of a photo's ~90 ms OCR on the dev photos). The same input to the model within one
# float32 rounding: the same lines, boxes and scores on the 96 dev photos, OCR 1.02x cheaper.
DET_MEAN = np.full(3, 0.5, np.float32)
DET_STD = np.full(3, 0.5, np.float32)


@dataclass(frozen=True, slots=True)
class TextLine:
    text: str
    score: float
    box: tuple[float, float, float, float]   # x1, y1, x2, y2 in the image's pixels


class TextReader:
    """`read(images)` -> the text lines of each RGB uint8 image; `calls` counts images read.
    With `upscale`, photos smaller than UPSCALE_SIDE / UPSCALE_MIN_FACTOR are read a second
    time scaled up and the lines of both readings are returned (boxes in source pixels)."""

    def __init__(self, threads: int = 1, det_limit_side: int = DET_LIMIT_SIDE, upscale: bool = False,
                 device: str = "cpu", graphs: str | tuple[Path, Path] = "rewritten"):
        """`device`: "cpu" or "cuda" (both OCR models on onnxruntime's CUDA provider).
        `graphs`: "rewritten" (models.ocr_graphs: the same models, hard-swish in two nodes
        instead of four and the scalar affine steps folded into the convolutions; made once
        into the cache folder), "wheel" (the wheel's own files), or the (detection,
        recognition) files themselves (benchmarks comparing versions of the graphs)."""
        if not isinstance(graphs, tuple) and graphs not in ("rewritten", "wheel"):
            raise ValueError(f"graphs must be 'rewritten', 'wheel' or (detection, recognition) files, got {graphs!r}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        threads = min(threads, os.cpu_count() or 1)
        from rapidocr_onnxruntime import RapidOCR

        cuda = providers(device)[0] == CUDA_PROVIDER     # raises where CUDA was asked for and is missing
        if isinstance(graphs, tuple):
            det, rec = (Path(p) for p in graphs)
        elif graphs == "rewritten":
            det, rec = ocr_models()
        else:
            det, rec = (wheel_graph(n) for n in WHEEL_GRAPHS)
        self.graphs = (det, rec)
        self._ocr = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1,
                             det_use_cuda=cuda, rec_use_cuda=cuda, cls_use_cuda=cuda, rec_batch_num=REC_BATCH,
                             rec_img_shape=list(REC_IMAGE_SHAPE), det_model_path=str(det), rec_model_path=str(rec),
                             det_limit_type="max", det_limit_side_len=det_limit_side, det_mean=DET_MEAN, det_std=DET_STD,
                             text_score=MIN_TEXT_SCORE, use_cls=USE_ANGLE_CLASSIFIER, print_verbose=False)
        self.upscale = upscale
        self.device = device
        self.calls = 0

    def read(self, images: Sequence[np.ndarray]) -> list[list[TextLine]]:
        out = []
        for rgb in images:
            self.calls += 1
            lines = self._read(rgb, 1.0)
            h, w = rgb.shape[:2]
            if self.upscale and 0 < max(h, w) * UPSCALE_MIN_FACTOR <= UPSCALE_SIDE:
                factor = UPSCALE_SIDE / max(h, w)
                big = cv2.resize(rgb, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_CUBIC)
                seen = {line.text for line in lines}
                lines += [line for line in self._read(big, factor) if line.text not in seen]
            out.append(lines)
        return out

    def _read(self, rgb: np.ndarray, factor: float) -> list[TextLine]:
        if not rgb.size:
            return []          # RapidOCR divides by the image's size
        # RapidOCR takes OpenCV's BGR order for arrays.
        result, _ = self._ocr(np.ascontiguousarray(rgb[:, :, ::-1]))
        lines = []
        for quad, text, score in result or ():
            q = np.asarray(quad, np.float32) / factor
            lines.append(TextLine(str(text), float(score), (float(q[:, 0].min()), float(q[:, 1].min()),
                                                            float(q[:, 0].max()), float(q[:, 1].max()))))
        return lines
