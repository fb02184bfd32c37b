"""Images in and out of zeroscan: a content-addressed (sha256) store for brand logos and product
photos (the checks every image passes: connectors/image_checks.py; fetching:
connectors/image_fetch.py).

Every image is checked before it is kept, under the same limits as listing photos
(brand_signals.images.image_decode.ImageLimits: one header prober, one decoder): the format from its
magic bytes (PNG, JPEG, WebP), a byte cap, a pixel cap read from the header before any decoder
runs (decompression bombs), a full decode with reduction (corrupt or truncated files; a huge
image costs its analysis size, not its header's) and, when given, its sha256.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from brand_signals.images.image_decode import MAX_IMAGE_BYTES, ImageFormat, ImageInfo, ImageLimits
from brand_signals.records import ImageRef
from connectors.atomic_file import write_atomically
from connectors.image_checks import (
    ALLOWED_CONTENT_TYPES,
    MAX_IMAGE_PIXELS,
    SHA256_RE,
    ImageRejected,
    check_image,
    check_sha256,
    probe,
    sha256_hex,
    sniff_format,
)
from connectors.image_fetch import fetch

__all__ = ["ALLOWED_CONTENT_TYPES", "MAX_IMAGE_BYTES", "MAX_IMAGE_PIXELS", "SHA256_RE", "ImageFormat", "ImageInfo",
           "ImageLimits", "ImageRejected", "ImageStore", "StoredImage", "check_image", "check_sha256", "probe",
           "sha256_hex", "sniff_format"]

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
        data = fetch(ref.uri, base_dir, ref.sha256, limits=self.limits)
        return self.put(data, ref.sha256).ref()

