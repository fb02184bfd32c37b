"""Decode untrusted image bytes with caps: the format and pixel count are read from the header
before anything is decoded (a 100 k x 100 k PNG "bomb" is refused in microseconds), truncated
files are refused, and only PNG, JPEG and WebP are accepted. Every refusal is an
`ImageDecodeError` (a ValueError) with the reason, which the caller turns into an
`image_error` signal."""
from __future__ import annotations

import struct

import cv2
import numpy as np

# Listing photos and logos are a few MB at most; 25 MB leaves room for 24 MP JPEGs.
MAX_IMAGE_BYTES = 25 * 1024 * 1024
# 50 MP: above any camera a seller uses; a decoded 50 MP RGB image is 150 MB.
MAX_PIXELS = 50_000_000
# Below this there is nothing to recognise (and OCR/feature extraction misbehave).
MIN_SIDE = 8

_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


class ImageDecodeError(ValueError):
    """Bytes that are not an acceptable image; the message says why."""


def probe(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header alone."""
    if len(data) < 16:
        raise ImageDecodeError(f"not an image: {len(data)} bytes")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if data[12:16] != b"IHDR" or len(data) < 24:
            raise ImageDecodeError("PNG without IHDR header")
        w, h = struct.unpack(">II", data[16:24])
        return "png", w, h
    if data[:3] == b"\xff\xd8\xff":
        return ("jpeg",) + _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ("webp",) + _webp_size(data)
    raise ImageDecodeError(f"not a PNG, JPEG or WebP image (starts with {data[:8]!r})")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageDecodeError(f"JPEG: bad marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:              # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _JPEG_SOF:
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        if marker == 0xDA:
            raise ImageDecodeError("JPEG: scan data before any frame header")
        i += 2 + length
    raise ImageDecodeError("JPEG: no frame header (truncated?)")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(data) >= 30:
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    raise ImageDecodeError("WebP: unknown or truncated header")


def _check_complete(fmt: str, data: bytes) -> None:
    if fmt == "jpeg":
        # In entropy-coded data 0xFF is stuffed (FF 00), so FF D9 is only ever the end marker;
        # allow a little trailing padding after it.
        if b"\xff\xd9" not in data[-64:]:
            raise ImageDecodeError("JPEG truncated: no end-of-image marker")
    elif fmt == "png":
        if b"IEND" not in data[-64:]:
            raise ImageDecodeError("PNG truncated: no IEND chunk")
    elif fmt == "webp":
        (size,) = struct.unpack("<I", data[4:8])
        if size + 8 > len(data):
            raise ImageDecodeError(f"WebP truncated: RIFF says {size + 8} bytes, got {len(data)}")


def decode_rgb(data: bytes, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_IMAGE_BYTES,
               background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """H x W x 3 uint8 RGB; transparency is flattened onto `background`."""
    if len(data) > max_bytes:
        raise ImageDecodeError(f"image of {len(data)} bytes exceeds the cap of {max_bytes}")
    fmt, w, h = probe(data)
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageDecodeError(f"{fmt} of {w}x{h} pixels is too small (min side {MIN_SIDE})")
    if w * h > max_pixels:
        raise ImageDecodeError(f"{fmt} of {w}x{h} = {w * h} pixels exceeds the cap of {max_pixels}")
    _check_complete(fmt, data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageDecodeError(f"{fmt} could not be decoded")
    if img.shape[0] != h or img.shape[1] != w:
        raise ImageDecodeError(f"{fmt} decoded to {img.shape[1]}x{img.shape[0]}, header said {w}x{h}")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageDecodeError(f"{fmt} with unsupported sample type {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        bg = np.array(background[::-1], np.float32)
        bgr = img[:, :, :3].astype(np.float32) * alpha + bg * (1 - alpha)
        return cv2.cvtColor(bgr.astype(np.uint8), cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
