"""The checks every image passes before zeroscan keeps or scans it (brand images at
registration, listing photos when fetched), under the same limits as listing photos
(brand_signals.images.image_decode.ImageLimits: one header prober, one decoder): the format from its
magic bytes (PNG, JPEG, WebP), a byte cap, a pixel cap read from the header before any decoder
runs (decompression bombs), a full decode with reduction and, when given, its sha256. Used by
the image store and the fetcher, which import nothing of each other's but this."""
from __future__ import annotations

import hashlib
import re

from brand_signals.images import image_decode
from brand_signals.images.image_decode import MAX_PIXELS, ImageDecodeError, ImageFormat, ImageInfo, ImageLimits

# The header pixel cap, shared with listing photos (image_decode.MAX_PIXELS says why).
MAX_IMAGE_PIXELS = MAX_PIXELS

SHA256_RE = re.compile(r"[0-9a-f]{64}")


class ImageRejected(ValueError):
    """An image that is not kept or not fetched; the message says why."""


ALLOWED_CONTENT_TYPES = frozenset(f.content_type for f in ImageFormat) | {"image/jpg"}


# -- format and header probing: brand_signals.images.image_decode, its errors as ImageRejected -------

def sniff_format(data: bytes) -> ImageFormat:
    """The format from the magic bytes (never the file name)."""
    try:
        return image_decode.sniff_format(data)
    except ImageDecodeError as e:
        raise ImageRejected(str(e)) from None


def probe(data: bytes) -> ImageInfo:
    """Format and dimensions from the header alone."""
    try:
        return image_decode.probe(data)
    except ImageDecodeError as e:
        raise ImageRejected(str(e)) from None


def _decode(data: bytes, info: ImageInfo, limits: ImageLimits) -> None:
    """Decode the whole image once (with reduction); anything the decoder refuses is refused."""
    try:
        image_decode.decode(data, limits)
    except ImageDecodeError as e:
        raise ImageRejected(str(e)) from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_sha256(data: bytes, expected: str | None) -> str:
    got = sha256_hex(data)
    if expected is not None:
        if not SHA256_RE.fullmatch(expected):
            raise ImageRejected("expected sha256 is not 64 lower-case hex digits")
        if got != expected:
            raise ImageRejected(f"sha256 mismatch: the content's sha256 is {got}, not the one expected")
    return got


def check_image(data: bytes, limits: ImageLimits = ImageLimits(), expected_sha256: str | None = None) -> ImageInfo:
    """All the checks, cheapest first; raises ImageRejected, returns format and size."""
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"image is {len(data)} bytes, above the {limits.max_bytes}-byte limit")
    check_sha256(data, expected_sha256)
    try:
        info = image_decode.check_header(data, limits)
    except ImageDecodeError as e:
        raise ImageRejected(str(e)) from None
    _decode(data, info, limits)
    return info
