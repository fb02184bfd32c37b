"""Decode untrusted image bytes under one set of limits (`ImageLimits`), for listing photos and
for brand uploads alike: the format from the magic bytes and the pixel count from the header
before anything is decoded (a 100 k x 100 k PNG "bomb" is refused in microseconds), the
container checked (PNG chunk CRCs and IEND, the WebP RIFF length, the JPEG end marker), and
the pixels decoded with reduction to the size the analysis uses (`analysis_side`): JPEG with
DCT scaling (Pillow's draft mode), PNG strip by strip, so a huge image costs no more memory
than its analysis size. Only PNG, JPEG and WebP are accepted. Every refusal is an
`ImageDecodeError` (a ValueError) that names the check or the limit and never quotes the
bytes; the caller turns it into an `image_error` signal or refuses the upload."""
from __future__ import annotations

import enum
import io
import struct
import zlib
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import cv2
import numpy as np
from PIL import Image

# 10 MiB: a high-quality 24 MP product JPEG is 5-8 MB; logos and listing photos are smaller.
MAX_IMAGE_BYTES = 10 << 20
# 50 MP from the header: above the 48-50 MP of today's phone cameras, the largest photo a
# seller or brand uploads. What it costs is the analysis size (below), not this.
MAX_PIXELS = 50_000_000
# Encodings no decoder here can reduce while decoding (WebP; progressive or multi-scan JPEG,
# whose decoder keeps every DCT coefficient; interlaced PNG) are decoded at full size: 16 MP
# (a 4,900 x 3,300 photo) is ~64 MB of RGBA, or up to ~128 MB of JPEG coefficients.
MAX_FULL_DECODE_PIXELS = 16_000_000
# Longest side images are reduced to. The largest input a model takes is OCR's detector
# (models/ocr.py DET_LIMIT_SIDE, 960); its recogniser crops text lines from the image it is
# given, so twice that keeps their detail. The backbone uses 448 (QUERY_SIDE), SIFT geometry
# 640 (logo_geometry.QUERY_MAX_SIDE), PDQ 64. The dev logo photos (longest side <= 500) are
# never reduced. An RGB image at 1920 x 1920 is 11 MB.
ANALYSIS_SIDE = 1920
# Below this there is nothing to recognise (and OCR/feature extraction misbehave).
MIN_SIDE = 8
# Rows decoded at a time on the reduced PNG path: ~2 MB of raw rows per strip.
_STRIP_BYTES = 2 << 20
# Rows flattened onto the background at a time (bounds the float temporaries).
_FLATTEN_ROWS = 256


class ImageDecodeError(ValueError):
    """Bytes that are not an acceptable image; the message says why."""


class ImageFormat(enum.Enum):
    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"

    @property
    def content_type(self) -> str:
        return f"image/{self.value}"


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What any image may cost, checked before decoding; one set for uploads and listings."""

    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = MAX_PIXELS
    max_full_decode_pixels: int = MAX_FULL_DECODE_PIXELS
    analysis_side: int = ANALYSIS_SIDE

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_full_decode_pixels", "analysis_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"ImageLimits.{name} must be >= 1, got {getattr(self, name)}")


class ImageInfo(NamedTuple):
    format: ImageFormat
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


# -- format and header probing (no decoding) -------------------------------------------------

_OTHER_KINDS = (
    (b"GIF87a", "a GIF image"), (b"GIF89a", "a GIF image"), (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"%PDF", "a PDF document"),
    (b"\x00\x00\x01\x00", "an ICO image"), (b"PK\x03\x04", "a ZIP archive"),
)


def _describe_other(data: bytes) -> str:
    """What the bytes look like, in words of our own (never the bytes themselves)."""
    if not data:
        return "not an image: 0 bytes (empty)"
    for magic, what in _OTHER_KINDS:
        if data.startswith(magic):
            return what
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML document"
    if head.startswith(b"<?xml") or head.startswith(b"<svg"):
        return "XML/SVG"
    if len(data) < 16:
        return f"not an image: {len(data)} bytes"
    return f"unknown content of {len(data)} bytes"


def sniff_format(data: bytes) -> ImageFormat:
    """The format from the magic bytes (never the file name)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if data.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    raise ImageDecodeError(f"not a PNG, JPEG or WebP image: {_describe_other(data)}")


def probe(data: bytes) -> ImageInfo:
    """Format and dimensions from the header alone."""
    fmt = sniff_format(data)
    try:
        w, h = {ImageFormat.PNG: _png_size, ImageFormat.JPEG: _jpeg_size, ImageFormat.WEBP: _webp_size}[fmt](data)
    except (struct.error, IndexError):
        raise ImageDecodeError(f"{fmt.name} header is truncated") from None
    if w <= 0 or h <= 0:
        raise ImageDecodeError(f"{fmt.name} header gives an empty size {w}x{h}")
    return ImageInfo(fmt, w, h)


def _png_size(data: bytes) -> tuple[int, int]:
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise ImageDecodeError("PNG does not start with an IHDR chunk")
    return struct.unpack(">II", data[16:24])


# SOFn markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, offset of its length field) for each segment up to the first scan (SOS)."""
    i = 2
    while True:
        if data[i] != 0xFF:
            raise ImageDecodeError(f"JPEG marker expected at byte {i}")
        while data[i] == 0xFF:  # fill bytes
            i += 1
        marker = data[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0xD9:
            raise ImageDecodeError("JPEG has no frame header (SOF) before its image data")
        yield marker, i
        if marker == 0xDA:
            return
        (seg_len,) = struct.unpack(">H", data[i:i + 2])
        if seg_len < 2:
            raise ImageDecodeError(f"JPEG segment at byte {i} has a bad length {seg_len}")
        i += seg_len


def _jpeg_size(data: bytes) -> tuple[int, int]:
    for marker, i in _jpeg_segments(data):
        if marker == 0xDA:
            break
        if marker in _JPEG_SOF:
            h, w = struct.unpack(">HH", data[i + 3:i + 7])
            return w, h
    raise ImageDecodeError("JPEG has no frame header (SOF) before its image data")


def _jpeg_buffered(data: bytes) -> bool:
    """True when libjpeg keeps the whole image's coefficients (DCT scaling saves no memory):
    progressive, or more than one scan (the first scan has fewer components than the frame)."""
    components = 0
    try:
        for marker, i in _jpeg_segments(data):
            if marker in _JPEG_SOF:
                if marker in _JPEG_PROGRESSIVE:
                    return True
                components = data[i + 7]
            elif marker == 0xDA:
                # in entropy-coded data FF is stuffed, so FF DA / FF D9 are markers; data after
                # the end marker (an appended gain map or thumbnail) is not decoded
                end = data.find(b"\xff\xd9", i)
                return data[i + 2] < components or data.find(b"\xff\xda", i, end if end >= 0 else len(data)) >= 0
    except (struct.error, IndexError):
        raise ImageDecodeError("JPEG is truncated before its image data") from None
    raise ImageDecodeError("JPEG has no image data")  # pragma: no cover - _jpeg_segments ends at SOS


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: 24-bit canvas size minus one
        if len(data) < 30:
            raise IndexError
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L":  # lossless: signature 0x2f, then 14-bit width-1 and height-1
        if data[20] != 0x2F:
            raise ImageDecodeError("WebP lossless stream has a bad signature")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":  # lossy: 3-byte frame tag, start code 9d 01 2a, 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            raise ImageDecodeError("WebP lossy stream has a bad start code")
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    raise ImageDecodeError("WebP has an unknown first chunk")


def check_header(data: bytes, limits: ImageLimits = ImageLimits()) -> ImageInfo:
    """The byte cap, the format and the pixel cap: everything that needs no decoding."""
    if len(data) > limits.max_bytes:
        raise ImageDecodeError(f"image is {len(data)} bytes, above the {limits.max_bytes}-byte limit")
    info = probe(data)
    if info.pixels > limits.max_pixels:
        raise ImageDecodeError(f"{info.format.name} is {info.width}x{info.height} = {info.pixels} pixels, which "
                               f"exceeds the cap of {limits.max_pixels} (the pixel limit; refused before decoding)")
    if info.width < MIN_SIDE or info.height < MIN_SIDE:
        raise ImageDecodeError(f"{info.format.name} of {info.width}x{info.height} pixels is too small "
                               f"(min side {MIN_SIDE})")
    return info


# -- PNG container ---------------------------------------------------------------------------

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# A colour type and depth with the same bytes per pixel (what the row filters use) whose decoded
# samples are the raw bytes again, per bytes-per-pixel: grey, RGB or RGBA in 8 or 16 bits.
_RAW_TYPE = {1: (0, 8), 2: (0, 16), 3: (2, 8), 4: (6, 8), 6: (2, 16), 8: (6, 16)}


@dataclass(frozen=True, slots=True)
class _Png:
    width: int
    height: int
    depth: int
    colour: int
    interlaced: bool
    chunks: tuple[tuple[bytes, bytes], ...]      # PLTE and tRNS, as they came
    idat: tuple[memoryview, ...]

    @property
    def row_bytes(self) -> int:
        return (self.width * _PNG_CHANNELS[self.colour] * self.depth + 7) // 8

    @property
    def pixel_bytes(self) -> int:
        return max(1, _PNG_CHANNELS[self.colour] * self.depth // 8)


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(ctype)))


def _parse_png(data: bytes) -> _Png:
    """Walk the chunks: every CRC checked, IEND required, IDAT kept as views (no copy)."""
    view = memoryview(data)
    pos, ihdr, keep, idat = 8, None, [], []
    while True:
        if pos + 12 > len(data):
            raise ImageDecodeError("PNG is truncated (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise ImageDecodeError("PNG is truncated (no IEND chunk)")
        body = view[pos + 8:end - 4]
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(body, zlib.crc32(ctype)) != crc:
            raise ImageDecodeError("PNG is corrupt: a chunk fails its CRC check")
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype in (b"PLTE", b"tRNS"):
            keep.append((ctype, bytes(body)))
        elif ctype == b"IEND":
            break
        pos = end
    if ihdr is None or not idat:
        raise ImageDecodeError("PNG is corrupt: no IHDR or no IDAT chunk")
    w, h, depth, colour, compression, filt, interlace = ihdr
    if colour not in _PNG_DEPTHS or depth not in _PNG_DEPTHS[colour] or compression or filt or interlace > 1:
        raise ImageDecodeError(f"PNG is corrupt: bad IHDR (colour type {colour}, depth {depth})")
    return _Png(w, h, depth, colour, interlace == 1, tuple(keep), tuple(idat))


class _Inflater:
    """The IDAT stream inflated on demand, never more than asked for (zlib bombs stay small)."""

    _FEED = 64 << 10

    def __init__(self, parts: tuple[memoryview, ...]):
        self._z = zlib.decompressobj()
        self._parts = (p[i:i + self._FEED] for p in parts for i in range(0, len(p), self._FEED))
        self._tail: bytes | memoryview = b""

    def read(self, n: int) -> bytes:
        out = bytearray()
        try:
            while len(out) < n and not self._z.eof:
                if not self._tail:
                    nxt = next(self._parts, None)
                    if nxt is None:
                        break
                    self._tail = nxt
                out += self._z.decompress(self._tail, n - len(out))
                self._tail = self._z.unconsumed_tail
        except zlib.error:
            raise ImageDecodeError("PNG is corrupt: its image data does not inflate") from None
        if len(out) < n:
            raise ImageDecodeError("PNG is truncated: its image data ends before its last row")
        return bytes(out)


def _png_bytes(width: int, height: int, depth: int, colour: int, rows: bytes,
               chunks: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"".join([_PNG_SIG, _png_chunk(b"IHDR", ihdr), *(_png_chunk(t, b) for t, b in chunks),
                     _png_chunk(b"IDAT", zlib.compress(rows, 0)), _png_chunk(b"IEND", b"")])


def _imdecode(data: bytes, what: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageDecodeError(f"{what} is corrupt: the decoder refused it")
    return img


def _png_strips(png: _Png, rows: int) -> Iterator[np.ndarray]:
    """The image `rows` rows at a time, as OpenCV decodes it whole (BGR/BGRA/grey, 8 or 16 bit).

    Each strip's filtered rows become a small PNG of their own. PNG's row filters refer only to
    the row above, so the strip is prefixed with the previous strip's last row, unfiltered:
    decoded as a type with the same bytes per pixel whose samples are the raw bytes (grey/RGB/
    RGBA, 8/16 bit) that gives the strip's raw rows; those, stored unfiltered under the real
    header and palette, decode to the strip's pixels."""
    rb, bpp = png.row_bytes, png.pixel_bytes
    raw_colour, raw_depth = _RAW_TYPE[bpp]
    raw_w = rb // bpp
    # 8/16-bit grey, RGB or RGBA without a colour key: the raw decoding is the image itself
    direct = (raw_colour, raw_depth) == (png.colour, png.depth) and all(t != b"tRNS" for t, _ in png.chunks)
    inflate = _Inflater(png.idat)
    seed: bytes | None = None
    for y in range(0, png.height, rows):
        n = min(rows, png.height - y)
        filtered = inflate.read(n * (rb + 1))
        if filtered[::rb + 1].translate(None, b"\x00\x01\x02\x03\x04"):
            raise ImageDecodeError("PNG is corrupt: a row has an unknown filter type")
        prefix = b"" if seed is None else b"\x00" + seed
        img = _imdecode(_png_bytes(raw_w, n + (seed is not None), raw_depth, raw_colour, prefix + filtered), "PNG")
        img = img[-n:]
        seed = _raw_rows(img[-1:], raw_depth).tobytes()
        if direct:
            yield img
            continue
        unfiltered = np.zeros((n, rb + 1), np.uint8)
        unfiltered[:, 1:] = _raw_rows(img, raw_depth).reshape(n, rb)
        yield _imdecode(_png_bytes(png.width, n, png.depth, png.colour, unfiltered.tobytes(), png.chunks), "PNG")


def _raw_rows(img: np.ndarray, depth: int) -> np.ndarray:
    """OpenCV's decoding of a grey/RGB/RGBA PNG back to the file's sample bytes."""
    if img.ndim == 3:
        img = img[..., [2, 1, 0, 3][:img.shape[2]]]          # BGR(A) back to file order
    return np.ascontiguousarray(img.astype(">u2") if depth == 16 else img).view(np.uint8)


# -- pixels --------------------------------------------------------------------------------

def _to_rgb(img: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """OpenCV's BGR/BGRA/grey, 8 or 16 bit, to RGB uint8; transparency flattened onto `background`."""
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageDecodeError(f"image with unsupported sample type {img.dtype}")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        out = np.empty(img.shape[:2] + (3,), np.uint8)
        bg = np.array(background[::-1], np.float32)
        for y in range(0, img.shape[0], _FLATTEN_ROWS):
            part = img[y:y + _FLATTEN_ROWS]
            alpha = part[:, :, 3:4].astype(np.float32) / 255.0
            bgr = part[:, :, :3].astype(np.float32) * alpha + bg * (1 - alpha)
            out[y:y + _FLATTEN_ROWS] = cv2.cvtColor(bgr.astype(np.uint8), cv2.COLOR_BGR2RGB)
        return out
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def reduced_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(w, h) with the longest side at most `side`, aspect kept."""
    if max(width, height) <= side:
        return width, height
    s = side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


class _Reducer:
    """Strips of an image (top to bottom, full width) reduced to `out` = (w, h) with area
    averaging, keeping at most one intermediate of out_w x (< 2 out_h) pixels."""

    def __init__(self, width: int, height: int, out: tuple[int, int]):
        self.out = out
        self.step = max(1, height // out[1])            # source rows per intermediate row
        self._parts: list[np.ndarray] = []
        self._pending: np.ndarray | None = None          # rows left over from the last strip

    def add(self, rgb: np.ndarray) -> None:
        if self._pending is not None:
            rgb = np.concatenate([self._pending, rgb])
            self._pending = None
        whole = rgb.shape[0] // self.step * self.step
        if whole < rgb.shape[0]:
            self._pending = rgb[whole:].copy()
        if whole:
            self._parts.append(cv2.resize(rgb[:whole], (self.out[0], whole // self.step), interpolation=cv2.INTER_AREA))

    def result(self) -> np.ndarray:
        if self._pending is not None:
            self._parts.append(cv2.resize(self._pending, (self.out[0], 1), interpolation=cv2.INTER_AREA))
        mid = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        if mid.shape[:2] == (self.out[1], self.out[0]):
            return mid
        return cv2.resize(mid, self.out, interpolation=cv2.INTER_AREA)


def _reduce_whole(rgb: np.ndarray, out: tuple[int, int]) -> np.ndarray:
    if rgb.shape[:2] == (out[1], out[0]):
        return rgb
    r = _Reducer(rgb.shape[1], rgb.shape[0], out)
    for y in range(0, rgb.shape[0], _FLATTEN_ROWS * 4):
        r.add(rgb[y:y + _FLATTEN_ROWS * 4])
    return r.result()


def _full_size_allowed(info: ImageInfo, limits: ImageLimits, why: str) -> None:
    if info.pixels > limits.max_full_decode_pixels:
        raise ImageDecodeError(f"{why} of {info.width}x{info.height} = {info.pixels} pixels exceeds the cap of "
                               f"{limits.max_full_decode_pixels} for images decoded at full size "
                               f"(max_full_decode_pixels)")


def _decode_png(data: bytes, info: ImageInfo, limits: ImageLimits, out: tuple[int, int],
                background: tuple[int, int, int]) -> np.ndarray:
    png = _parse_png(data)
    if out == (info.width, info.height) or png.interlaced:
        if png.interlaced:
            _full_size_allowed(info, limits, "interlaced PNG")
        img = _imdecode(data, "PNG")
        if img.shape[:2] != (info.height, info.width):
            raise ImageDecodeError(f"PNG decoded to {img.shape[1]}x{img.shape[0]}, header said {info.width}x{info.height}")
        return _reduce_whole(_to_rgb(img, background), out)
    reducer = _Reducer(info.width, info.height, out)
    rows = max(1, _STRIP_BYTES // max(1, png.row_bytes))
    for strip in _png_strips(png, rows):
        reducer.add(_to_rgb(strip, background))
    return reducer.result()


def _decode_jpeg(data: bytes, info: ImageInfo, limits: ImageLimits, out: tuple[int, int]) -> np.ndarray:
    # In entropy-coded data 0xFF is stuffed (FF 00), so FF D9 is only ever the end marker;
    # allow a little trailing padding after it.
    if b"\xff\xd9" not in data[-64:]:
        raise ImageDecodeError("JPEG is truncated: no end-of-image marker")
    if _jpeg_buffered(data):
        _full_size_allowed(info, limits, "progressive or multi-scan JPEG")
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as im:
            if im.size != (info.width, info.height):
                raise ImageDecodeError(f"JPEG header says {info.width}x{info.height}, decoder sees "
                                       f"{im.size[0]}x{im.size[1]}")
            if out != im.size:
                im.draft(im.mode, out)                   # DCT scaling: 1/2, 1/4 or 1/8, never below `out`
            im.load()
            rgb = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except ImageDecodeError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError):
        raise ImageDecodeError("JPEG is corrupt or truncated: the decoder refused it") from None
    return _reduce_whole(rgb, out)


def _decode_webp(data: bytes, info: ImageInfo, limits: ImageLimits, out: tuple[int, int],
                 background: tuple[int, int, int]) -> np.ndarray:
    if int.from_bytes(data[4:8], "little") + 8 > len(data):
        raise ImageDecodeError(f"WEBP is truncated: RIFF says {int.from_bytes(data[4:8], 'little') + 8} bytes, "
                               f"got {len(data)}")
    if out != (info.width, info.height):
        _full_size_allowed(info, limits, "WebP")     # no decoder here scales WebP while decoding
    img = _imdecode(data, "WebP")
    if img.shape[:2] != (info.height, info.width):
        raise ImageDecodeError(f"WebP decoded to {img.shape[1]}x{img.shape[0]}, header said {info.width}x{info.height}")
    return _reduce_whole(_to_rgb(img, background), out)


def decode(data: bytes, limits: ImageLimits = ImageLimits(),
           background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """H x W x 3 uint8 RGB with the longest side at most `limits.analysis_side` (smaller images
    unchanged); transparency is flattened onto `background`. Raises ImageDecodeError."""
    info = check_header(data, limits)
    out = reduced_size(info.width, info.height, limits.analysis_side)
    if info.format is ImageFormat.PNG:
        return _decode_png(data, info, limits, out, background)
    if info.format is ImageFormat.JPEG:
        return _decode_jpeg(data, info, limits, out)
    return _decode_webp(data, info, limits, out, background)


def decode_rgb(data: bytes, limits: ImageLimits = ImageLimits(),
               background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """`decode` (the name the callers use)."""
    return decode(data, limits, background)
