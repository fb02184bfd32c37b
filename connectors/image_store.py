"""Images in and out of zeroscan: a content-addressed (sha256) store for brand logos and product
photos and the checks every image passes (fetching is connectors/image_fetch.py).

Every image is checked before it is kept, under the same limits as listing photos
(brand_signals.image_decode.ImageLimits: one header prober, one decoder): the format from its
magic bytes (PNG, JPEG, WebP), a byte cap, a pixel cap read from the header before any decoder
runs (decompression bombs), a full decode with reduction (corrupt or truncated files; a huge
image costs its analysis size, not its header's) and, when given, its sha256.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from brand_signals import image_decode
from brand_signals.image_decode import MAX_IMAGE_BYTES, MAX_PIXELS, ImageDecodeError, ImageFormat, ImageInfo, ImageLimits
from brand_signals.records import ImageRef
from connectors.atomic_file import write_atomically

__all__ = ["MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "ImageFormat", "ImageInfo", "ImageLimits", "ImageRejected",
           "ImageStore", "StoredImage", "FetchTimeouts", "check_image", "fetch", "probe", "sha256_hex"]

# The header pixel cap, shared with listing photos (image_decode.MAX_PIXELS says why).
MAX_IMAGE_PIXELS = MAX_PIXELS

SHA256_RE = re.compile(r"[0-9a-f]{64}")


class ImageRejected(ValueError):
    """An image that is not kept or not fetched; the message says why."""


ALLOWED_CONTENT_TYPES = frozenset(f.content_type for f in ImageFormat) | {"image/jpg"}


@dataclass(frozen=True, slots=True)
class StoredImage:
    sha256: str
    path: Path
    info: ImageInfo

    @property
    def uri(self) -> str:
        return self.path.as_uri()

    def ref(self) -> ImageRef:
        return ImageRef(self.uri, self.sha256)


# -- format and header probing: brand_signals.image_decode, its errors as ImageRejected -------

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


# -- the store -------------------------------------------------------------------------------

class ImageStore:
    """Checked images kept once each under `root/<sha[:2]>/<sha>`; files are written atomically."""

    def __init__(self, root: Path, limits: ImageLimits = ImageLimits()) -> None:
        self.root = Path(root).resolve()
        self.limits = limits

    @classmethod
    def at_state_dir(cls, state_dir: Path, limits: ImageLimits = ImageLimits()) -> "ImageStore":
        return cls(Path(state_dir) / "images", limits)

    def path_of(self, sha256: str) -> Path:
        if not SHA256_RE.fullmatch(sha256):
            raise ImageRejected(f"sha256 {sha256[:80]!r} is not 64 lower-case hex digits")
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def get(self, sha256: str) -> StoredImage:
        path = self.path_of(sha256)
        if not path.is_file():
            raise ImageRejected(f"image {sha256} is not in the store")
        return StoredImage(sha256, path, probe(path.read_bytes()))

    def put(self, data: bytes, expected_sha256: str | None = None) -> StoredImage:
        info = check_image(data, self.limits, expected_sha256)
        sha = sha256_hex(data)
        path = self.path_of(sha)
        if not path.is_file():
            write_atomically(path, data, 0o444)
        return StoredImage(sha, path, info)

    def ingest(self, ref: ImageRef, base_dir: Path | None) -> ImageRef:
        """Fetch an image reference (trusted operator input), keep it, and return the store's ref."""
        if ref.sha256 is not None and self.has(ref.sha256):
            return self.get(ref.sha256).ref()
        from connectors.image_fetch import fetch

        data = fetch(ref.uri, base_dir, ref.sha256, limits=self.limits)
        return self.put(data, ref.sha256).ref()

