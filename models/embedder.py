"""ONNX wrapper around the exported EfficientNet-Lite0 backbone: letterboxes RGB images to a
square side, runs them in batches with capped threads and returns the 1280-channel feature
maps (stride 32) that `brand_signals.images` pools into global embeddings (image copies)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import onnxruntime as ort

from models.device import providers

DEFAULT_MODEL = Path(__file__).resolve().parent / "efficientnet_lite0.onnx"
# Stride of the backbone's last feature map (five stride-2 stages).
STRIDE = 32
# Letterbox fill: 127 becomes 0 after the model's (x - 127) / 128, i.e. "no signal".
PAD_VALUE = 127
FEATURE_DIM = 1280
# Query photos are letterboxed to this side: a 14 x 14 grid of 32-px cells. Measured 19 ms
# per image on one thread; FlickrLogos boxes are mostly >= 32 px at this scale.
QUERY_SIDE = 448


def letterbox(rgb: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """`rgb` scaled so its longest side is `side` and padded (bottom/right) to side x side;
    returns the canvas and the scale factor (canvas pixels per source pixel)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"letterbox expects an H x W x 3 image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas = np.full((side, side, 3), PAD_VALUE, np.uint8)
    canvas[:nh, :nw] = cv2.resize(rgb, (nw, nh), interpolation=interp)
    return canvas, scale


class FeatureExtractor:
    """Batches same-size RGB uint8 images through the backbone; `calls` counts model runs."""

    def __init__(self, model_path: Path | str = DEFAULT_MODEL, threads: int = 1, batch_size: int = 8,
                 device: str = "cpu"):
        """`device`: "cpu" or "cuda" (onnxruntime's CUDA provider, models/device.py)."""
        if threads < 1 or batch_size < 1:
            raise ValueError(f"threads and batch_size must be >= 1, got {threads}, {batch_size}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(model_path), sess_options=opts,
                                             providers=providers(device))
        self.device = device
        self.batch_size = batch_size
        self.calls = 0

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """[N, 1280, ceil(H/32), ceil(W/32)] float32 for N images of one shape H x W x 3."""
        if not images:
            return np.zeros((0, FEATURE_DIM, 0, 0), np.float32)
        shape = images[0].shape
        if any(im.shape != shape for im in images):
            raise ValueError("FeatureExtractor.features needs images of one shape (letterbox them)")
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = np.stack(images[i:i + self.batch_size]).astype(np.float32).transpose(0, 3, 1, 2)
            out.append(self._session.run(["features"], {"images": np.ascontiguousarray(batch)})[0])
            self.calls += 1
        return np.concatenate(out)


def normalise(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


def valid_cells(image_h: int, image_w: int, side: int = QUERY_SIDE) -> tuple[int, int]:
    """Cells of a letterboxed grid that hold image pixels (not padding), rows and columns."""
    s = side / max(image_h, image_w)
    return (max(1, int(np.ceil(image_h * s / STRIDE))), max(1, int(np.ceil(image_w * s / STRIDE))))
