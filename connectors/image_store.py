"""Images in and out of zeroscan: a content-addressed (sha256) store for brand logos and product
photos and the checks every image passes (fetching is connectors/image_fetch.py).

Every image is checked before it is kept: the format from its magic bytes (PNG, JPEG, WebP),
a byte cap, a pixel cap read from the header before any decoder runs (decompression bombs), a
full decode (corrupt or truncated files) and, when given, its sha256.
Header probing is our own (a few fixed offsets per format, no allocation); the full decode is
Pillow's, which, unlike OpenCV's imdecode, refuses truncated JPEGs instead of padding them grey.
"""
from __future__ import annotations

import enum
import hashlib
import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from brand_signals.records import ImageRef
from connectors.atomic_file import write_atomically

# 10 MiB: a high-quality 24 MP product JPEG is 5-8 MB; logos are far smaller.
MAX_IMAGE_BYTES = 10 << 20
# 25 MP: above a 24 MP (6000x4000) camera photo, the largest product image we expect; decoding
# costs at most ~100 MB at 4 bytes per pixel. Pillow's own bomb limit (~89 MP) is far looser.
MAX_IMAGE_PIXELS = 25_000_000

SHA256_RE = re.compile(r"[0-9a-f]{64}")


class ImageRejected(ValueError):
    """An image that is not kept or not fetched; the message says why."""


class ImageFormat(enum.Enum):
    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"

    @property
    def content_type(self) -> str:
        return f"image/{self.value}"


_PIL_FORMAT = {ImageFormat.PNG: "PNG", ImageFormat.JPEG: "JPEG", ImageFormat.WEBP: "WEBP"}
ALLOWED_CONTENT_TYPES = frozenset(f.content_type for f in ImageFormat) | {"image/jpg"}


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = MAX_IMAGE_PIXELS


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: ImageFormat
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


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


# -- format and header probing (no decoding) -------------------------------------------------

_OTHER_KINDS = (
    (b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"), (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"%PDF", "a PDF document"),
    (b"\x00\x00\x01\x00", "an ICO image"), (b"PK\x03\x04", "a ZIP archive"),
)


def _describe_other(data: bytes) -> str:
    for magic, what in _OTHER_KINDS:
        if data.startswith(magic):
            return what
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML document"
    if head.startswith(b"<?xml") or head.startswith(b"<svg"):
        return "XML/SVG"
    if not data:
        return "empty"
    return "unknown content"  # never quoted: the bytes may be a local file's or a host's secrets


def sniff_format(data: bytes) -> ImageFormat:
    """The format from the magic bytes (never the file name)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if data.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    raise ImageRejected(f"not a PNG, JPEG or WebP image: {_describe_other(data)}")


def probe(data: bytes) -> ImageInfo:
    """Format and dimensions from the header alone."""
    fmt = sniff_format(data)
    try:
        w, h = {ImageFormat.PNG: _png_size, ImageFormat.JPEG: _jpeg_size, ImageFormat.WEBP: _webp_size}[fmt](data)
    except (struct.error, IndexError):
        raise ImageRejected(f"{fmt.name} header is truncated") from None
    if w <= 0 or h <= 0:
        raise ImageRejected(f"{fmt.name} header gives an empty size {w}x{h}")
    return ImageInfo(fmt, w, h)


def _png_size(data: bytes) -> tuple[int, int]:
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise ImageRejected("PNG does not start with an IHDR chunk")
    return struct.unpack(">II", data[16:24])


# SOFn markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    while True:
        if data[i] != 0xFF:
            raise ImageRejected(f"JPEG marker expected at byte {i}")
        while data[i] == 0xFF:  # fill bytes
            i += 1
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            raise ImageRejected("JPEG has no frame header (SOF) before its image data")
        (seg_len,) = struct.unpack(">H", data[i:i + 2])
        if marker in _JPEG_SOF:
            h, w = struct.unpack(">HH", data[i + 3:i + 7])
            return w, h
        if seg_len < 2:
            raise ImageRejected(f"JPEG segment at byte {i} has a bad length {seg_len}")
        i += seg_len


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: 24-bit canvas size minus one
        if len(data) < 30:
            raise IndexError
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L":  # lossless: signature 0x2f, then 14-bit width-1 and height-1
        if data[20] != 0x2F:
            raise ImageRejected("WebP lossless stream has a bad signature")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":  # lossy: 3-byte frame tag, start code 9d 01 2a, 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            raise ImageRejected("WebP lossy stream has a bad start code")
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    raise ImageRejected(f"WebP has an unknown first chunk {chunk!r}")


_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _decode(data: bytes, info: ImageInfo) -> None:
    """Decode the whole image once; anything the decoder refuses is refused here. Decoders stop
    once they have the pixels, so the container's own end is checked too (PNG's IEND chunk, the
    RIFF length of WebP); JPEG has no such end and no checksum, Pillow refuses it when short."""
    if info.format is ImageFormat.PNG and data.rfind(_PNG_IEND) < 0:
        raise ImageRejected("PNG is truncated: no IEND chunk")
    if info.format is ImageFormat.WEBP and int.from_bytes(data[4:8], "little") + 8 > len(data):
        raise ImageRejected(f"WEBP is truncated: RIFF says {int.from_bytes(data[4:8], 'little') + 8} bytes, "
                            f"got {len(data)}")
    try:
        with Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[info.format]]) as im:
            if im.size != (info.width, info.height):
                raise ImageRejected(f"{info.format.name} header says {info.width}x{info.height}, "
                                    f"decoder sees {im.size[0]}x{im.size[1]}")
            im.load()
    except ImageRejected:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise ImageRejected(f"{info.format.name} is corrupt or truncated: {e}") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_sha256(data: bytes, expected: str | None) -> str:
    got = sha256_hex(data)
    if expected is not None:
        if not SHA256_RE.fullmatch(expected):
            raise ImageRejected(f"expected sha256 {expected[:80]!r} is not 64 lower-case hex digits")
        if got != expected:
            raise ImageRejected(f"sha256 mismatch: expected {expected}, content is {got}")
    return got


def check_image(data: bytes, limits: ImageLimits = ImageLimits(), expected_sha256: str | None = None) -> ImageInfo:
    """All the checks, cheapest first; raises ImageRejected, returns format and size."""
    if len(data) > limits.max_bytes:
        raise ImageRejected(f"image is {len(data)} bytes, above the {limits.max_bytes}-byte limit")
    check_sha256(data, expected_sha256)
    info = probe(data)
    if info.pixels > limits.max_pixels:
        raise ImageRejected(f"{info.format.name} is {info.width}x{info.height} = {info.pixels} pixels, above the "
                            f"{limits.max_pixels}-pixel limit (refused before decoding)")
    _decode(data, info)
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


# -- fetching: connectors/image_fetch.py (kept importable from here) -------------------------

def __getattr__(name: str):
    if name in ("fetch", "FetchTimeouts"):
        from connectors import image_fetch
        return getattr(image_fetch, name)
    raise AttributeError(name)
